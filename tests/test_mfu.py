"""MFU meter: the FLOPs formula, torch's own FLOP counter on a real GPT step, the meter's arithmetic,
and NVML sampling with pynvml faked at its boundary.

What torch 2.13's ``FlopCounterMode`` counts (``torch/utils/flop_counter.py``), worked out here and
checked exactly below:

* ``mm``/``addmm``/``bmm``: ``2 m n k`` (bias adds, LayerNorm, GELU, softmax, the optimizer: nothing).
  A ``Linear`` of ``p`` weights costs ``2 p`` per token forward and ``4 p`` backward (input and weight
  gradients): ``6 p``. So the linear layers and the tied head give exactly ``6 (12 L d^2 + V d)``.
* SDPA through the *math* backend decomposes into two ``bmm`` forward (QK^T, PV) and four in the
  backward, over the *full* T x T matrix (the causal mask is an additive -inf, nothing is skipped):
  exactly ``12 L H Q T`` per token -- torch does not halve for the causal mask.
* SDPA through the default CPU kernel (``_scaled_dot_product_flash_attention_for_cpu``) has no
  registered formula: torch counts it as 0. Mapped to torch's own SDPA formulas
  (``sdpa_flop_count``, ``sdpa_backward_flop_count``), the backward includes recomputing the score
  matrix (flash attention keeps no P): ``2 + 5 = 7`` bmm-units, ``14 L H Q T``, i.e. hardware FLOPs.
  MFU excludes recompute, so the meter's numerator is ``12 L H Q T``.

The formula ``6 N + 12 L H Q T`` with N = non-embedding + head parameters also counts the LayerNorm
weights (``4 d`` per layer + ``2 d``) as if they were matmul weights: it exceeds torch's exact count
by ``6 x (LayerNorm params)`` per token, under 1% for these shapes. Tolerance below: 1%.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from scaling_planner.base.errors import InputError, MeasurementError
from scaling_planner.hardware.profiles import get_profile
from scaling_planner.measure.mfu import MfuMeter
from scaling_planner.simulate.flops import (
    FLOPS_CONVENTION,
    FLOPS_CONVENTION_CAUSAL,
    flops_convention,
    model_flops_per_token,
)
from scaling_planner.train import GPT, Corpus, GPTConfig

aten = torch.ops.aten


# ---- the formula -------------------------------------------------------------------------------

def test_formula_by_hand():
    # N = 1e6, L = 4, H = 8, Q = 32, T = 128: 6e6 + 12*4*8*32*128 = 6e6 + 1_572_864
    assert model_flops_per_token(1e6, 4, 8, 32, 128) == 7_572_864
    assert model_flops_per_token(1e6, 4, 8, 32, 128, causal_halving=True) == 6_000_000 + 786_432
    # nanoGPT's GPT-2 small: N = 124,337,664 (all params minus wpe, tied wte counted), 12 layers,
    # 12 heads of 64, T = 1024 -> 6N + 12*12*12*64*1024
    assert model_flops_per_token(124_337_664, 12, 12, 64, 1024) == 6 * 124_337_664 + 113_246_208


def test_convention_strings_name_the_choice():
    assert flops_convention() == FLOPS_CONVENTION and "not halved" in FLOPS_CONVENTION
    assert flops_convention(True) == FLOPS_CONVENTION_CAUSAL and "halved for the causal" in FLOPS_CONVENTION_CAUSAL


def test_gpt_config_flops_use_params_with_head():
    cfg = GPTConfig(vocab_size=256, seq_len=64, n_layer=3, n_head=4, d_model=96)
    n = 3 * (12 * 96**2 + 4 * 96) + 2 * 96 + 256 * 96
    assert cfg.params_for_flops() == n
    assert cfg.flops_per_token() == 6 * n + 12 * 3 * 4 * 24 * 64
    assert cfg.flops_per_token(causal_halving=True) == 6 * n + 6 * 3 * 4 * 24 * 64


@pytest.mark.parametrize("field,args", [
    ("n_params", (0, 1, 1, 1, 1)), ("n_params", (float("nan"), 1, 1, 1, 1)), ("n_layers", (1, 1.5, 1, 1, 1)),
    ("n_heads", (1, 1, -2, 1, 1)), ("head_dim", (1, 1, 1, "x", 1)), ("seq_len", (1, 1, 1, 1, True)),
])
def test_formula_rejects_bad_input(field, args):
    with pytest.raises(InputError) as exc:
        model_flops_per_token(*args)
    assert exc.value.field == field


# ---- torch's own FLOP counter on a real fwd+bwd ---------------------------------------------------

CFG = GPTConfig(vocab_size=256, seq_len=32, n_layer=2, n_head=4, d_model=64)
BATCH = 4


def _torch_flops(model, x, y, *, backend=None, mapping=None) -> tuple[int, dict]:
    fc = FlopCounterMode(display=False, custom_mapping=mapping or {})
    ctx = sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()
    with ctx, fc:
        _, loss = model(x, y)
        loss.backward()
    return fc.get_total_flops(), {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}


@pytest.fixture(scope="module")
def gpt_batch():
    torch.manual_seed(0)
    model = GPT(CFG)
    x, y = Corpus.load().batch(BATCH, CFG.seq_len, torch.Generator().manual_seed(0))
    return model, x, y


def _closed_forms(cfg: GPTConfig):
    L, H, Q, T, d, V = cfg.n_layer, cfg.n_head, cfg.head_dim, cfg.seq_len, cfg.d_model, cfg.vocab_size
    linear = 6 * (12 * L * d * d + V * d)          # Linear weights + tied head, fwd+bwd
    attention = 12 * L * H * Q * T                  # two bmm fwd, four bwd, full T x T
    layernorm_params = 4 * d * L + 2 * d
    return linear, attention, layernorm_params


def test_torch_counts_math_sdpa_exactly_as_6n_plus_12lhqt(gpt_batch):
    model, x, y = gpt_batch
    tokens = BATCH * CFG.seq_len
    linear, attention, ln = _closed_forms(CFG)
    total, by_op = _torch_flops(model, x, y, backend=SDPBackend.MATH)
    assert by_op["aten.mm"] == linear * tokens
    assert by_op["aten.bmm"] == attention * tokens  # no causal halving in torch's count
    assert total == (linear + attention) * tokens
    # the formula (N includes LayerNorm weights) vs torch: differs by exactly 6 x LayerNorm params
    formula = CFG.flops_per_token() * tokens
    assert formula - total == 6 * ln * tokens
    assert abs(formula / total - 1) < 0.01
    # Megatron's causal halving removes 6 LHQT per token from what torch counts
    assert total - CFG.flops_per_token(causal_halving=True) * tokens == (6 * CFG.n_layer * CFG.n_head
                                                                         * CFG.head_dim * CFG.seq_len - 6 * ln) * tokens


def test_torch_flash_cpu_kernel_counts_recompute(gpt_batch):
    """The default CPU SDPA kernel: unregistered (0) in torch 2.13; with torch's own SDPA formulas the
    backward recomputes the scores: 14 LHQT, 2 LHQT above the model FLOPs the meter uses."""
    model, x, y = gpt_batch
    tokens = BATCH * CFG.seq_len
    linear, attention, _ = _closed_forms(CFG)
    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *a, out_shape=None, **kw: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda g, q, k, v, *a, out_shape=None, **kw: sdpa_backward_flop_count(g, q, k, v),
    }
    total, by_op = _torch_flops(model, x, y, mapping=mapping)
    fwd = by_op["aten._scaled_dot_product_flash_attention_for_cpu"]
    bwd = by_op["aten._scaled_dot_product_flash_attention_for_cpu_backward"]
    assert fwd == attention // 6 * 2 * tokens and bwd == attention // 6 * 5 * tokens
    assert total == (linear + attention * 14 // 12) * tokens
    assert total > CFG.flops_per_token() * tokens  # hardware FLOPs (with recompute) > model FLOPs


# ---- the meter on a real training loop -------------------------------------------------------------

def test_meter_on_real_cpu_training_loop_matches_torch_count():
    """A real GPT trained with AdamW on CPU; torch's FlopCounterMode counts every timed step (math SDPA,
    the meter's warm-up step outside the counter). Torch's FLOPs / the meter's timed window must equal
    the meter's achieved FLOP/s within 1% (the LayerNorm term), and the report's arithmetic must hold."""
    cfg = GPTConfig(vocab_size=256, seq_len=32, n_layer=2, n_head=2, d_model=32)
    torch.manual_seed(1)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    corpus, gen = Corpus.load(), torch.Generator().manual_seed(1)
    batch, steps = 8, 6
    tokens_per_step = batch * cfg.seq_len

    def train_step():
        x, y = corpus.batch(batch, cfg.seq_len, gen)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    with sdpa_kernel([SDPBackend.MATH]):
        t_outer = time.perf_counter()
        with MfuMeter(cfg.flops_per_token(), device="cpu", dtype="fp32") as meter:
            train_step()
            meter.step(tokens_per_step)  # warm-up: not timed, not counted
            with counter:
                for _ in range(steps - 1):
                    train_step()
                    meter.step(tokens_per_step)
        outer_s = time.perf_counter() - t_outer
    rep = meter.report()

    assert rep.steps == steps - 1 and rep.tokens == (steps - 1) * tokens_per_step
    assert 0 < rep.elapsed_s <= outer_s
    assert rep.tokens_per_s == pytest.approx(rep.tokens / rep.elapsed_s, rel=1e-12)
    assert rep.achieved_flops_per_s == pytest.approx(rep.tokens_per_s * cfg.flops_per_token(), rel=1e-12)
    torch_rate = counter.get_total_flops() / rep.elapsed_s
    assert abs(rep.achieved_flops_per_s / torch_rate - 1) < 0.01
    cpu = get_profile("cpu")
    assert rep.profile == "cpu" and rep.peak_flops_per_s == cpu.peak_flops_per_s("fp32")
    assert "NOMINAL" in rep.peak_source
    assert rep.mfu == pytest.approx(rep.achieved_flops_per_s / cpu.peak_flops_per_s("fp32"), rel=1e-12)
    assert 0 < rep.mfu < 1.5
    assert rep.flops_convention == FLOPS_CONVENTION and rep.nvml_samples == 0 and rep.power_w_mean is None


class FakeClock:
    def __init__(self, times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def test_meter_arithmetic_with_fake_clock():
    # construction t=0, start t=0.2, steps end at 1.0 (warm-up), 1.5, 2.0, 3.0
    clock = FakeClock([0.0, 0.2, 1.0, 1.5, 2.0, 3.0])
    meter = MfuMeter(1e6, peak_flops_per_s=1e9, peak_source="measured matmul probe", clock=clock)
    meter.start()
    for tokens in (999, 100, 100, 100):
        meter.step(tokens)
    rep = meter.report()
    assert (rep.steps, rep.tokens, rep.elapsed_s) == (3, 300, 2.0)
    assert rep.tokens_per_s == 150.0
    assert rep.achieved_flops_per_s == 1.5e8
    assert rep.mfu == 0.15 and rep.peak_source == "measured matmul probe"
    assert rep.profile == "cpu"  # the device's profile is still named for the calibration record


def test_meter_without_warmup_times_from_start():
    clock = FakeClock([0.0, 10.0, 12.0, 14.0])
    meter = MfuMeter(2.0, warmup_steps=0, peak_flops_per_s=1.0, clock=clock).start()
    meter.step(3)
    meter.step(5)
    rep = meter.report()
    assert (rep.steps, rep.tokens, rep.elapsed_s, rep.tokens_per_s) == (2, 8, 4.0, 2.0)
    assert rep.mfu == 4.0  # 2 FLOPs/token x 2 tokens/s over a peak of 1 FLOP/s


def test_meter_peak_from_named_profile_and_dtype():
    clock = FakeClock([0.0, 1.0, 3.0])
    meter = MfuMeter(1e9, profile="h100-sxm", device="cpu", dtype="bf16", clock=clock)
    meter.step(1000)
    meter.step(4000)
    rep = meter.report()
    peak = get_profile("h100-sxm").peak_flops_per_s("bf16")
    assert rep.profile == "h100-sxm" and rep.peak_flops_per_s == peak and "h100-sxm" in rep.peak_source
    assert rep.mfu == pytest.approx(1e9 * 2000 / peak)


def test_meter_without_timed_steps_is_a_measurement_error():
    meter = MfuMeter(1e6, warmup_steps=2)
    meter.step(10)
    meter.step(10)
    with pytest.raises(MeasurementError, match="timed step"):
        meter.report()


@pytest.mark.parametrize("kwargs,field", [
    ({"flops_per_token": 0}, "flops_per_token"),
    ({"flops_per_token": 1.0, "device": "tpu:0"}, "device"),
    ({"flops_per_token": 1.0, "warmup_steps": -1}, "warmup_steps"),
    ({"flops_per_token": 1.0, "dtype": "fp8"}, "dtype"),  # the cpu profile has no fp8 peak
    ({"flops_per_token": 1.0, "peak_flops_per_s": -5.0}, "peak_flops_per_s"),
    ({"flops_per_token": 1.0, "nvml_index": "0"}, "nvml_index"),
    ({"flops_per_token": 1.0, "profile": "no-such-gpu"}, "profile"),
])
def test_meter_rejects_bad_input(kwargs, field):
    with pytest.raises(InputError) as exc:
        MfuMeter(**kwargs)
    assert exc.value.field == field


def test_meter_step_rejects_bad_tokens():
    meter = MfuMeter(1.0)
    with pytest.raises(InputError) as exc:
        meter.step(0)
    assert exc.value.field == "tokens"


# ---- NVML sampling, pynvml faked at its boundary -----------------------------------------------------

def _fake_pynvml(monkeypatch, power_mw=312_000, util_pct=87):
    pynvml = pytest.importorskip("pynvml")
    pytest.importorskip("scaling_planner.measure.nvml", reason="measure/nvml.py (NvmlSampler) not present")

    class Util:
        gpu, memory = util_pct, 40

    def not_supported(*args):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: f"gpu{i}")
    monkeypatch.setattr(pynvml, "nvmlGpmQueryDeviceSupport", not_supported)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", lambda h: power_mw)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", lambda h: Util())


def test_meter_samples_nvml_over_the_timed_window(monkeypatch):
    _fake_pynvml(monkeypatch)
    with MfuMeter(1e6, nvml_index=0, sample_interval_s=0.01, peak_flops_per_s=1e9) as meter:
        for _ in range(4):
            time.sleep(0.02)
            meter.step(64)
    rep = meter.report()
    assert rep.power_w_mean == pytest.approx(312.0)
    assert rep.utilization_gpu_pct_mean == pytest.approx(87.0)
    assert rep.tensor_active_pct_mean is None  # GPM not supported by the fake
    assert rep.nvml_samples >= 2
    assert meter.nvml_summary["reason"] is None


def test_meter_runs_without_the_nvml_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "scaling_planner.measure.nvml", None)  # import -> ImportError
    with MfuMeter(1e6, nvml_index=0, peak_flops_per_s=1e9) as meter:
        meter.step(10)
        time.sleep(0.001)
        meter.step(10)
    rep = meter.report()
    assert rep.nvml_samples == 0 and rep.power_w_mean is None
    assert "no NVML sampler" in meter.nvml_summary["reason"]
    assert math.isfinite(rep.mfu)
