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


# MT-NLG (Smith et al. 2022 §2.4): 530B, TP 8, PP 35, global batch 1920, DeepSpeed pipeline (1F1B)
MTNLG = [(2240, 60.1), (2800, 50.2), (3360, 44.4)]


@pytest.mark.xfail(strict=True, reason=(
    "predicted 23-26 % faster: MT-NLG's DeepSpeed+Megatron stack ran 0.22 s per micro-batch per stage, "
    "25 % slower than Megatron's own PTD-P/Korthikanti runs of the same model on the same Selene nodes "
    "(0.17-0.18 s); no hardware or layout term in the model explains it"))
@pytest.mark.parametrize("n,measured", MTNLG)
def test_mtnlg_iteration_time_within_10pct(a100, n, measured):
    arch = get_arch("megatron-530b")
    d = n // 280
    st = step_time(arch, a100, s=2048, b=1, t=8, p=35, d=d, e=1, v=1, m=1920 // d, recompute=RECOMPUTE_FULL,
                   zero=1, sp=False, dp_overlap=0.0, flash_attention=False)
    assert float(st["total"]) == pytest.approx(measured, rel=0.10)


def test_mtnlg_scaling_shape(a100):
    """The relative speed-up 2240 -> 3360 GPUs (1.35x measured) is predicted within 5 %."""
    arch = get_arch("megatron-530b")
    times = []
    for n, _ in MTNLG:
        d = n // 280
        st = step_time(arch, a100, s=2048, b=1, t=8, p=35, d=d, e=1, v=1, m=1920 // d,
                       recompute=RECOMPUTE_FULL, zero=1, sp=False, dp_overlap=0.0, flash_attention=False)
        times.append(float(st["total"]))
    assert times[0] / times[2] == pytest.approx(60.1 / 44.4, rel=0.05)
