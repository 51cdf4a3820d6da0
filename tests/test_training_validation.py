"""Predictive validation on published tuned-stack runs, parametrised over the very data ``planner validate``
prints (``scaling_planner/validation/data/tuned_stack.yaml``): Korthikanti 2022, PTD-P, vTrain, MT-NLG on A100;
Megatron-Core, Llama 3 and NeMo on H100 (bf16 and fp8); Megatron-Bridge on Blackwell.

Nothing here feeds a measured TFLOP/s: the hardware profiles and the universal constants of
``simulate.efficiency`` predict every case. A ``strict`` case must land within its group's tolerance; a
``miss`` is a known miss with what was checked recorded in the data, and the test asserts that it still
misses (``xfail(strict=True)``), so a change that fixes it shows up and the data gets relabelled.
"""

import numpy as np
import pytest

from scaling_planner.hardware.profiles import get_profile
from scaling_planner.simulate import efficiency as eff
from scaling_planner.simulate.architecture import get_arch
from scaling_planner.simulate.memory import RECOMPUTE_FULL, RECOMPUTE_SELECTIVE
from scaling_planner.simulate.training.step import step_time
from scaling_planner.validation import tuned

CASES = tuned.all_cases()


def _params():
    out = []
    for c in CASES:
        if c.status == "unsupported":
            continue
        marks = [pytest.mark.xfail(strict=True, reason=c.reason)] if c.status == "miss" else []
        out.append(pytest.param(c, marks=marks, id=f"{c.group}:{c.name}"))
    return out


@pytest.mark.parametrize("case", _params())
def test_tuned_stack_case_within_its_tolerance(case):
    r = tuned.predict(case)
    assert r.predicted is not None and r.predicted > 0
    assert abs(r.error) <= case.tolerance, f"{case.name}: {r.error:+.1%} ({r.layout})"


def test_every_group_has_a_source_and_scored_cases():
    groups = tuned.load_groups()
    ids = {g.id for g in groups}
    assert {"korthikanti2022", "ptdp2021", "vtrain2024", "mtnlg2022", "megatron-core-h100", "llama3-405b-h100",
            "nemo-24.07-h100-fp8", "megatron-bridge-25.11-blackwell-fp8"} <= ids
    for g in groups:
        assert g.source and any(c.status in tuned.SCORED for c in g.cases)
        for c in g.cases:
            assert c.status == "strict" or c.reason, f"{g.id}/{c.name}: a miss or unsupported case says why"


def test_hopper_and_newer_cases_cover_bf16_and_fp8():
    hopper = [c for c in CASES if c.spec["profile"] in ("h100-sxm", "b200", "gb200") and c.status in tuned.SCORED]
    assert {c.spec.get("precision", "bf16") for c in hopper} == {"bf16", "fp8"}
    assert len(hopper) >= 20


def test_korthikanti_table5_mean_within_5pct():
    errs = [tuned.predict(c).error for c in CASES if c.group == "korthikanti2022"]
    assert np.mean(np.abs(errs)) < 0.05


@pytest.fixture(scope="module")
def a100():
    return eff.DeviceRates(get_profile("a100-sxm-80gb"))


def _korthikanti(a100, name, t, p, v, B, b, recompute, sp):
    st = step_time(get_arch(name), a100, s=2048, b=b, t=t, p=p, d=1, e=1, v=v, m=B // b, recompute=recompute,
                   zero=0, sp=sp, dp_overlap=0.0, flash_attention=False)
    return float(st["total"])


def test_selective_recompute_saving_matches_paper(a100):
    """Table 5: SP + selective saves 22-27 % of the iteration over full recompute (ours: 24-28 %)."""
    by_model = {}
    for c in CASES:
        if c.group == "korthikanti2022":
            by_model.setdefault(c.spec["arch"], {})[c.spec["recompute"]] = c
    for name, pair in by_model.items():
        full, sel = pair["full"], pair["selective"]
        s = full.spec
        ratio = (_korthikanti(a100, name, s["tp"], s["pp"], s["interleave"], s["global_batch"], s["micro_batch"],
                              RECOMPUTE_SELECTIVE, True)
                 / _korthikanti(a100, name, s["tp"], s["pp"], s["interleave"], s["global_batch"], s["micro_batch"],
                                RECOMPUTE_FULL, False))
        assert ratio == pytest.approx(sel.measured / full.measured, abs=0.06)


def _ptdp_flops(arch, B, s=2048):
    """Narayanan et al. 2021 eq. 3 (hardware FLOPs with full recompute), as the paper counts them."""
    L, h, V = arch.n_layers, arch.d_model, arch.vocab_size
    return 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))


def test_ptdp_days_for_300b_tokens():
    """175B on 384 GPUs: 84 days for 300B tokens (paper), from the predicted throughput."""
    case = next(c for c in CASES if c.group == "ptdp2021" and c.name == "175B on 384")
    x = tuned.predict(case).predicted * 1e12
    days = 8 * 300e9 * get_arch("megatron-175b").params() / (384 * x) / 86400
    assert days == pytest.approx(84, rel=0.10)


MTNLG = [(c.spec["gpus"], c.measured) for c in CASES if c.group == "mtnlg2022"]


def _mtnlg_s(a100, n, engine="deepspeed"):
    d = n // 280
    st = step_time(get_arch("megatron-530b"), a100, s=2048, b=1, t=8, p=35, d=d, e=1, v=1, m=1920 // d,
                   recompute=RECOMPUTE_FULL, zero=1, sp=False, dp_overlap=0.0, flash_attention=False,
                   pipeline_engine=engine)
    return float(st["total"])


def test_mtnlg_reported_tflops_count_recompute():
    """The paper's 126/121/113 TFLOP/s are hardware FLOPs: eq. 3 of Narayanan et al. (96 B s L h^2 ...,
    recompute included) over the measured iteration times gives 125.7/120.4/113.5, while model FLOPs
    (72 B s L h^2 ...) would give 94/90/85. So the iteration time, which the data compares, is the
    unambiguous quantity; comparing a predicted MFU with 126/312 would be off by the recompute share."""
    arch = get_arch("megatron-530b")
    for (n, seconds), tflops in zip(MTNLG, (126, 121, 113), strict=True):
        assert _ptdp_flops(arch, 1920) / (n * seconds) / 1e12 == pytest.approx(tflops, rel=0.01)


def test_mtnlg_residual_is_documented(a100):
    """What was checked about MT-NLG's known miss (its cases in the data are ``miss``; numbers for 2240 GPUs):

    * quantity: the TFLOP/s are hardware FLOPs (test above), iteration time is compared directly;
    * bubble: (p-1)/m = 34/240, 34/192, 34/160 of plain 1F1B, 6.2 s; DeepSpeed's TrainSchedule with its
      blocking sends, simulated event by event, costs the same (m + p - 1) micro-batch times as
      Megatron's 1F1B (+0.6 %), so its schedule is no cause; no interleaving (DeepSpeed has none);
    * pipeline p2p (``pipeline_engine="deepspeed"``, DeepSpeed v0.5.3 source): four blocking
      transfers per micro-batch, activations split over TP (0.50 ms each + 0.42 ms NVLink all-gather)
      but gradients whole (3.96 ms each over one 25 GB/s HDR NIC): 9.3 ms vs Megatron's 1.0 ms;
    * gradient accumulation: autograd adds each micro-batch's 16-bit gradients into ``param.grad``
      (6 B x 2.0e9 parameters per GPU = 8.6 ms); Megatron fuses it into the weight-gradient GEMM;
    * DP reduction after the flush (ZeRO-1 reduce-scatter + all-gather over DP 8, inter-node): 0.5 s;
    * GEMM efficiency: QKV/proj/FC1/FC2/logits at b=1 (2048 x 7680 x 20480 ...) reach 0.78-0.80 of the
      312 TFLOP/s peak, the same shapes as Korthikanti's 530B run that the model predicts within 1-5 %;
      layernorm/softmax/dropout/GELU traffic 1.2 ms of a 13.5 ms layer forward, also shared with it.

    Residual: 36-44 ms per micro-batch per stage (+20-24 %) with nothing sourced to put there.
    One observation, not a source: a straight-line fit T = 0.196 s x m + 13.0 s has a fixed part of
    ~66 micro-batch times, not the 1F1B 34; a micro-batch of 2 (m = 120/96/80) would give exactly that
    shape and -9/-8/-9 % with the DeepSpeed engine. The evidence says 1, not 2: Megatron-LM's own
    530B scripts (``examples/sc21/run_table_1.sh``, TP 8 x PP 35, ``MBS=1``; NVIDIA's 35-node
    gpt3-530b Slurm script, ``--micro-batch-size 1``) and BigScience's reconstruction of the MT-NLG
    configuration (``MICRO_BATCH_SIZE=1``) all use 1, so the test keeps 1.

    Also checked and ruled out (2026-11-23):

    * the schedule: ``tests/test_pipeline_schedule.py`` runs DeepSpeed's TrainSchedule instruction
      by instruction with blocking rendezvous transfers and lands within 0.5 % of the closed form;
    * host synchronisation: the engine's ``tput_timer.start()`` per forward would synchronise the
      device only after ``stop()`` has run twice, and the pipeline engine never calls ``stop()``;
    * bf16: DeepSpeed v0.5.3 has no bf16 at all (MT-NLG, trained in bf16, ran an unreleased
      branch). Public bf16 + pipeline support (DeepSpeed #1801, April 2022) accumulates micro-batch
      gradients in fp32 (about 12 B per parameter instead of 6), which would add ~7 ms per
      micro-batch (3 points) if MT-NLG's branch did the same -- unsourced for MT-NLG, not modelled;
    * a100-sxm-40gb instead of 80gb (slower HBM): -13/-14/-16 %, and the paper says 80 GB.

    Independent evidence that the stack is not 20 % slower in general (2026-11-23,
    ``test_vtrain_megatron_deepspeed_175b_within_10pct`` below): vTrain's published ground truth (Bang et al., MICRO'24,
    VIA-Research/vTrain ``data/ground_truth_multi.csv``) has 21 measured Megatron-DeepSpeed runs of
    GPT-3 175B on 512 A100 (PyTorch 2.0.1, 2023; TP 2-8 x PP 8-32, micro-batch 2-6, batch 1536,
    53.9-66.6 s). With its stated 800 Gb/s per node, the Megatron engine predicts them +0.3 to +7.2 %
    (mean +4.3 %) and the v0.5.3 DeepSpeed engine +6.6 to +21.8 % -- both slow, not fast. The
    same model is -16 to -19 % on MT-NLG alone, so its residual is specific to that 2021 run (its
    unreleased bf16 branch), not to Megatron-DeepSpeed, and no public source describes it.
    """
    for n, measured in MTNLG:
        assert _mtnlg_s(a100, n) / measured - 1 < -0.10


def test_mtnlg_deepspeed_engine_residual_stays_documented(a100):
    """Guard on the documented residual: with the DeepSpeed engine every case is 12-22 % fast, and the
    engine's sourced terms (p2p, accumulation) close 7-8 points of the Megatron engine's 24-27 %."""
    for n, measured in MTNLG:
        err_ds = _mtnlg_s(a100, n) / measured - 1
        err_mg = _mtnlg_s(a100, n, "megatron") / measured - 1
        assert -0.22 < err_ds < -0.12
        assert 0.05 < err_ds - err_mg < 0.10


def test_mtnlg_scaling_shape(a100):
    """The relative speed-up 2240 -> 3360 GPUs (1.35x measured) is predicted within 5 %."""
    times = [_mtnlg_s(a100, n) for n, _ in MTNLG]
    assert times[0] / times[2] == pytest.approx(MTNLG[0][1] / MTNLG[2][1], rel=0.05)


def test_vtrain_deepspeed_engine_is_slower_than_every_run():
    """vTrain's 21 Megatron-DeepSpeed runs (2023 software): the Megatron engine predicts each within 10 % (the
    parametrised cases), their mean within 5 %, and the 2021 DeepSpeed engine (whole gradients, unfused
    accumulation) is slower than every one of them: MT-NLG's shortfall is not this stack's in general."""
    cases = [c for c in CASES if c.group == "vtrain2024"]
    errs = np.array([tuned.predict(c).error for c in cases])
    assert abs(errs.mean()) < 0.05
    for c, err in zip(cases, errs, strict=True):
        ds = tuned.TunedCase(**{**c.__dict__, "spec": {**c.spec, "pipeline_engine": "deepspeed"}})
        assert tuned.predict(ds).error > err
