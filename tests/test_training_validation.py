"""Predictive validation on published A100 runs (reference §6 and §11), from the profile and the model.

Nothing here feeds a measured TFLOP/s: the a100-sxm-80gb profile (312 TFLOP/s dense bf16, 2,039 GB/s
HBM, NVLink 300 GB/s, 25 GB/s InfiniBand per GPU, matmul fraction prior 0.8) and the universal
constants of ``simulate.efficiency`` predict every step time.
"""

import numpy as np
import pytest

from scaling_planner.hardware.profiles import get_profile
from scaling_planner.simulate import efficiency as eff
from scaling_planner.simulate.architecture import get_arch
from scaling_planner.simulate.memory import RECOMPUTE_FULL, RECOMPUTE_SELECTIVE
from scaling_planner.simulate.training import step_time


@pytest.fixture(scope="module")
def a100():
    return eff.DeviceRates(get_profile("a100-sxm-80gb"))


# Korthikanti et al. 2022 Table 3 + Table 5: model, TP, PP, interleave, global batch, micro-batch,
# measured s/iter full recompute (TP all-reduce), measured SP + selective
TABLE5 = [
    ("megatron-22b", 8, 1, 1, 4, 4, 1.42, 1.10),
    ("megatron-175b", 8, 8, 3, 64, 1, 18.13, 13.75),
    ("megatron-530b", 8, 35, 3, 280, 1, 49.05, 37.83),
    ("megatron-1t", 8, 64, 1, 512, 1, 94.42, 71.49),
]


def _korthikanti(a100, name, t, p, v, B, b, recompute, sp):
    arch = get_arch(name)
    st = step_time(arch, a100, s=2048, b=b, t=t, p=p, d=1, e=1, v=v, m=B // b, recompute=recompute,
                   zero=0, sp=sp, dp_overlap=0.0, flash_attention=False)
    return float(st["total"])


def _table5_errors(a100):
    errs = []
    for name, t, p, v, B, b, full, sel in TABLE5:
        errs.append((_korthikanti(a100, name, t, p, v, B, b, RECOMPUTE_FULL, False) - full) / full)
        errs.append((_korthikanti(a100, name, t, p, v, B, b, RECOMPUTE_SELECTIVE, True) - sel) / sel)
    return np.array(errs)


@pytest.mark.parametrize("case", TABLE5, ids=[c[0] for c in TABLE5])
def test_korthikanti_table5_each_within_10pct(a100, case):
    name, t, p, v, B, b, full, sel = case
    assert _korthikanti(a100, name, t, p, v, B, b, RECOMPUTE_FULL, False) == pytest.approx(full, rel=0.10)
    assert _korthikanti(a100, name, t, p, v, B, b, RECOMPUTE_SELECTIVE, True) == pytest.approx(sel, rel=0.10)


def test_korthikanti_table5_mean_within_5pct(a100):
    assert np.mean(np.abs(_table5_errors(a100))) < 0.05


def test_selective_recompute_saving_matches_paper(a100):
    """Table 5: SP + selective saves 22-27 % of the iteration over full recompute (ours: 24-28 %)."""
    for name, t, p, v, B, b, full, sel in TABLE5:
        ratio = (_korthikanti(a100, name, t, p, v, B, b, RECOMPUTE_SELECTIVE, True)
                 / _korthikanti(a100, name, t, p, v, B, b, RECOMPUTE_FULL, False))
        assert ratio == pytest.approx(sel / full, abs=0.06)


def _ptdp_flops(arch, B, s=2048):
    """Narayanan et al. 2021 eq. 3 (hardware FLOPs with full recompute), as the paper counts them."""
    L, h, V = arch.n_layers, arch.d_model, arch.vocab_size
    return 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))


# PTD-P (Narayanan et al. 2021): GPUs, TP, PP, global batch, measured TFLOP/s per GPU. Plain 1F1B
# (v = 1): the measured drop with DP at fixed batch (153 -> 141, 171 -> 159) is the (p-1)/m bubble of
# the non-interleaved schedule; interleaving would predict half of it.
PTDP = [
    ("megatron-175b", 384, 8, 12, 1536, 153), ("megatron-175b", 768, 8, 12, 1536, 149),
    ("megatron-175b", 1536, 8, 12, 1536, 141), ("megatron-530b", 560, 8, 35, 2240, 171),
    ("megatron-530b", 1120, 8, 35, 2240, 167), ("megatron-530b", 2240, 8, 35, 2240, 159),
]


def _ptdp_tflops(a100, name, n, t, p, B):
    arch = get_arch(name)
    d = n // (t * p)
    st = step_time(arch, a100, s=2048, b=1, t=t, p=p, d=d, e=1, v=1, m=B // d, recompute=RECOMPUTE_FULL,
                   zero=0, sp=False, dp_overlap=0.0, flash_attention=False)
    return _ptdp_flops(arch, B) / float(st["total"]) / n / 1e12


@pytest.mark.parametrize("case", PTDP, ids=[f"{c[0]}-{c[1]}" for c in PTDP])
def test_ptdp_throughput_within_10pct(a100, case):
    name, n, t, p, B, measured = case
    assert _ptdp_tflops(a100, name, n, t, p, B) == pytest.approx(measured, rel=0.10)


def test_ptdp_days_for_300b_tokens(a100):
    """175B on 384 GPUs: 84 days for 300B tokens (paper), from the predicted throughput."""
    arch = get_arch("megatron-175b")
    x = _ptdp_tflops(a100, "megatron-175b", 384, 8, 12, 1536) * 1e12
    days = 8 * 300e9 * arch.params() / (384 * x) / 86400
    assert days == pytest.approx(84, rel=0.10)


# MT-NLG (Smith et al. 2022, arXiv:2201.11990, §2.4): 530B (105 x 20480, 128 heads, s 2048), TP 8 x PP 35
# on 280/350/420 DGX A100-80GB of Selene (DP 8/10/12, 8 x 200 Gb/s HDR per node), global batch 1920,
# micro-batch 1 (m = 240/192/160), full recompute, ZeRO-1, DeepSpeed's pipeline engine (plain 1F1B) with
# Megatron's tensor slicing. Measured s/iteration and the TFLOP/s per GPU the paper derives from them.
MTNLG = [(2240, 60.1, 126), (2800, 50.2, 121), (3360, 44.4, 113)]


def _mtnlg_s(a100, n, engine="deepspeed"):
    d = n // 280
    st = step_time(get_arch("megatron-530b"), a100, s=2048, b=1, t=8, p=35, d=d, e=1, v=1, m=1920 // d,
                   recompute=RECOMPUTE_FULL, zero=1, sp=False, dp_overlap=0.0, flash_attention=False,
                   pipeline_engine=engine)
    return float(st["total"])


def test_mtnlg_reported_tflops_count_recompute():
    """The paper's 126/121/113 TFLOP/s are hardware FLOPs: eq. 3 of Narayanan et al. (96 B s L h^2 ...,
    recompute included) over the measured iteration times gives 125.7/120.4/113.5, while model FLOPs
    (72 B s L h^2 ...) would give 94/90/85. So the iteration time, which the tests compare, is the
    unambiguous quantity; comparing a predicted MFU with 126/312 would be off by the recompute share."""
    arch = get_arch("megatron-530b")
    for n, seconds, tflops in MTNLG:
        assert _ptdp_flops(arch, 1920) / (n * seconds) / 1e12 == pytest.approx(tflops, rel=0.01)


MTNLG_RESIDUAL = (
    "DeepSpeed engine predicts 50.3/41.6/35.8 s, -16/-17/-19 %: measured (T - fixed)/(m + p - 1) is "
    "217/220/226 ms per micro-batch per stage against 182 ms modelled (Megatron engine 165 ms + 8.3 ms of "
    "whole-gradient p2p + 8.6 ms of gradient accumulation); the same model on the same Selene nodes ran "
    "168-179 ms on Megatron-LM's engine (Korthikanti Table 5, PTD-P), which the model reproduces within 2-8 %. The "
    "remaining 36-44 ms (20-24 %) has no sourced mechanism: see test_mtnlg_iteration_time_within_10pct")


@pytest.mark.xfail(strict=True, reason=MTNLG_RESIDUAL)
@pytest.mark.parametrize("n,measured", [c[:2] for c in MTNLG])
def test_mtnlg_iteration_time_within_10pct(a100, n, measured):
    """Checked and modelled (numbers for 2240 GPUs):

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
    assert _mtnlg_s(a100, n) == pytest.approx(measured, rel=0.10)


def test_mtnlg_deepspeed_engine_residual_stays_documented(a100):
    """Guard on the documented residual: with the DeepSpeed engine every case is 12-22 % fast, and the
    engine's sourced terms (p2p, accumulation) close 7-8 points of the Megatron engine's 24-27 %."""
    for n, measured, _ in MTNLG:
        err_ds = _mtnlg_s(a100, n) / measured - 1
        err_mg = _mtnlg_s(a100, n, "megatron") / measured - 1
        assert -0.22 < err_ds < -0.12
        assert 0.05 < err_ds - err_mg < 0.10


def test_mtnlg_scaling_shape(a100):
    """The relative speed-up 2240 -> 3360 GPUs (1.35x measured) is predicted within 5 %."""
    times = [_mtnlg_s(a100, n) for n, _, _ in MTNLG]
    assert times[0] / times[2] == pytest.approx(60.1 / 44.4, rel=0.05)


# vTrain (Bang et al., MICRO'24) ground truth, VIA-Research/vTrain data/ground_truth_multi.csv: Megatron-DeepSpeed
# (PyTorch 2.0.1, 2023), GPT-3 175B (96 x 12288, 96 heads, s 2048), 512 A100, global batch 1536, activation
# checkpointing on. Columns: TP, DP, PP, micro-batch, measured s/iteration. Their configs give 8 GPUs and
# 800 Gb/s of InfiniBand per node (12.5 GB/s per GPU), not the A100's memory size: the 80 GB profile is used.
VTRAIN_175B = [
    (4, 8, 16, 2, 54.2559), (4, 8, 16, 3, 55.2360), (4, 4, 32, 2, 53.9096), (4, 4, 32, 2, 53.9379),
    (4, 4, 32, 3, 56.2972), (2, 8, 32, 2, 57.4112), (4, 8, 16, 4, 57.7200), (8, 8, 8, 2, 55.1096),
    (8, 8, 8, 3, 56.1765), (8, 4, 16, 2, 56.3158), (4, 4, 32, 4, 59.3332), (8, 8, 8, 4, 58.2403),
    (8, 4, 16, 3, 55.6775), (8, 4, 16, 4, 57.5043), (8, 2, 32, 2, 58.5554), (8, 2, 32, 3, 57.3244),
    (2, 8, 32, 3, 64.2963), (8, 4, 16, 6, 60.5192), (4, 4, 32, 6, 66.6325), (8, 2, 32, 4, 59.1475),
    (8, 2, 32, 6, 62.6368),
]


def _vtrain_errors(engine):
    rates = eff.DeviceRates(get_profile("a100-sxm-80gb"))
    rates.inter_bytes_per_s = 12.5e9
    arch = get_arch("megatron-175b")
    errs = []
    for t, d, p, b, measured in VTRAIN_175B:
        st = step_time(arch, rates, s=2048, b=b, t=t, p=p, d=d, e=1, v=1, m=1536 // d // b, recompute=RECOMPUTE_FULL,
                       zero=1, sp=False, dp_overlap=0.0, flash_attention=False, pipeline_engine=engine)
        errs.append(float(st["total"]) / measured - 1)
    return np.array(errs)


def test_vtrain_megatron_deepspeed_175b_within_10pct():
    """21 measured Megatron-DeepSpeed runs of 175B on 512 A100 (another cluster, another year, 2-8 x 8-32
    layouts, micro-batch 2-6): the Megatron engine predicts each within 10 % (+0.3 to +7.2 %) and their
    mean within 5 %. The 2021 DeepSpeed engine (whole gradients, unfused accumulation) is slower than
    every one of them (+6.6 to +21.8 %): the MT-NLG shortfall above is not this stack's in general."""
    errs = _vtrain_errors("megatron")
    assert np.all(np.abs(errs) < 0.10)
    assert abs(errs.mean()) < 0.05
    assert np.all(_vtrain_errors("deepspeed") > errs)
