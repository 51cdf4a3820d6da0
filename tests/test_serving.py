"""Per-iteration serving model: KV cache, roofline prefill/decode, FasterTransformer 13B validation.

Validation anchor (reference/performance_models.md §6, llm-analysis examples/fastertransformer): a
13B GPT (40 layers, d 5120, 40 heads, FFN 20480, vocab 50272, tied embeddings) under
FasterTransformer on one A100-SXM-40GB, 512-token context, batch 1: prefill 63.17 ms, decode 22.0 ms
per token (kipp.ly). The model uses only the profile's priors and the stated defaults; the issue
asks for 15 % on one device. TP=2 (45.45 / 13.5 ms) is reported with a looser band because TP
launch/communication overheads are known to be under-modelled by analytical tools (llm-analysis is
-27 % / -24 % there).
"""

from __future__ import annotations

import numpy as np
import pytest

from scaling_planner.base.errors import InfeasibleError, InputError
from scaling_planner.hardware.profiles import get_profile
from scaling_planner.simulate.architecture import Architecture, get_arch
from scaling_planner.simulate.serving.iteration import (
    build_model,
    compute_dtype,
    experts_touched,
    kv_cache_bytes_per_token,
    smallest_fitting_tp,
)

FT13B = Architecture(
    name="ft-13b", n_layers=40, d_model=5120, n_heads=40, n_kv_heads=40, head_dim=128, ffn_hidden=20480,
    ffn_kind="gelu", vocab_size=50272, seq_len=2048, tied_embeddings=True, attention="mha",
    source="llm-analysis model_configs/test-13b.json (kipp.ly FasterTransformer benchmark)",
)

# Qwen3-32B (HF config): head_dim 128 while d_model / n_heads = 5120 / 64 = 80.
QWEN3_32B = Architecture(
    name="qwen3-32b", n_layers=64, d_model=5120, n_heads=64, n_kv_heads=8, head_dim=128, ffn_hidden=25600,
    ffn_kind="swiglu", vocab_size=151936, seq_len=4096, attention="gqa",
)


# --- KV cache ---------------------------------------------------------------------------------------

def test_kv_llama3_70b_gqa():
    # 2 (K,V) x 80 layers x 8 KV heads x 128 x 2 bytes = 327,680 B = 320 KiB per token (vLLM reports
    # 0.3125 MiB/token); the MHA mistake (64 heads) would give 8x that.
    a = get_arch("llama3-70b")
    assert kv_cache_bytes_per_token(a, 2.0) == 327_680
    assert kv_cache_bytes_per_token(a, 1.0) == 163_840  # fp8 cache
    assert kv_cache_bytes_per_token(a, 2.0, tp=8) == 40_960  # one KV head per rank
    # beyond 8 ranks the KV head is replicated, not split
    assert kv_cache_bytes_per_token(a, 2.0, tp=16) == 40_960


def test_kv_head_dim_not_width_over_heads():
    # 2 x 64 x 8 x 128 x 2 = 262,144 B; using d_model/n_heads = 80 would give 163,840 B.
    assert QWEN3_32B.head_dim != QWEN3_32B.d_model // QWEN3_32B.n_heads
    assert kv_cache_bytes_per_token(QWEN3_32B, 2.0) == 262_144


def test_kv_mla_caches_latent():
    a = get_arch("deepseek-v3")
    # 61 layers x (512 + 64) x 2 bytes = 70,272 B, the same on every TP rank
    assert kv_cache_bytes_per_token(a, 2.0) == 61 * 576 * 2
    assert kv_cache_bytes_per_token(a, 2.0, tp=8) == 61 * 576 * 2


def test_max_batch_from_free_memory():
    m = build_model(get_arch("llama3-70b"), get_profile("h100-sxm"), tp=4)
    # 0.9 x 80 GiB per device minus 70.6e9 x 2 / 4 bytes of weights, over 81,920 B/token per device
    free = 0.9 * 80 * 2**30 - get_arch("llama3-70b").params() * 2 / 4
    assert m.kv_capacity_tokens == pytest.approx(free / 81_920, rel=1e-12)
    seq = 4096
    assert m.max_batch(seq, max_batch=10_000) == int((free / 81_920) // 16) // (seq // 16)


# --- FasterTransformer 13B ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def a100():
    return get_profile("a100-sxm-40gb")


def _ft(a100, tp):
    m = build_model(FT13B, a100, tp=tp)
    prefill = float(m.prefill_time_s(512))
    # 10 generated tokens after a 512-token prompt: contexts 513..521, mean step
    decode = float(np.mean(m.decode_step_time_s(1, 512 + np.arange(1, 10))))
    return prefill, decode


def test_fastertransformer_13b_one_gpu(a100):
    prefill, decode = _ft(a100, 1)
    assert prefill == pytest.approx(63.17e-3, rel=0.15)
    assert decode == pytest.approx(22.0e-3, rel=0.15)


def test_fastertransformer_13b_two_gpus_band(a100):
    # Known weakness shared with llm-analysis: TP=2 prefill is under-predicted (~ -29 %).
    prefill, decode = _ft(a100, 2)
    assert prefill == pytest.approx(45.45e-3, rel=0.35)
    assert decode == pytest.approx(13.5e-3, rel=0.15)


def test_decode_is_memory_bound_at_batch_one_and_compute_bound_at_large_batch(a100):
    m = build_model(FT13B, a100)
    t1 = float(m.decode_step_time_s(1, 512))
    # weights 25.7 GB over 0.8 x 1555 GB/s = 20.6 ms dominate batch 1
    assert t1 == pytest.approx(FT13B.params() * 2 / (0.8 * 1555e9), rel=0.12)
    # a batch of 1024 one-token contexts is compute bound: 2 N b / (0.8 x 312 TFLOP/s)
    tb = float(m.iteration_time_s(1024, 1024))
    assert tb > 2 * FT13B.matmul_params_per_token() * 1024 / (0.8 * 312e12)


def test_prefill_scales_with_tokens(a100):
    m = build_model(FT13B, a100)
    t = m.prefill_time_s(np.array([512, 1024, 2048]))
    assert np.all(np.diff(t) > 0)
    # compute-bound: doubling the prompt roughly doubles the time (plus the quadratic attention)
    assert 1.9 < t[2] / t[1] < 2.3


# --- precision, TP, MoE -----------------------------------------------------------------------------------

def test_precision_changes_weights_and_compute_dtype():
    h100, a100 = get_profile("h100-sxm"), get_profile("a100-sxm-40gb")
    a = get_arch("llama3-8b")
    assert compute_dtype(h100, "fp8") == "fp8"
    assert compute_dtype(a100, "fp8") == "bf16"  # weight-only on Ampere
    assert compute_dtype(h100, "int4") == "bf16"  # W4A16
    m16 = build_model(a, h100, precision="bf16")
    m4 = build_model(a, h100, precision="int4")
    m8 = build_model(a, h100, precision="fp8")
    assert m4.weight_bytes_per_device == pytest.approx(m16.weight_bytes_per_device / 4)
    assert m8.kv_precision == "fp8" and m8.kv_bytes_per_token == m16.kv_bytes_per_token / 2
    assert m4.kv_precision == "bf16"
    # batch-1 decode is weight-streaming bound: int4 is much faster
    assert float(m4.decode_step_time_s(1, 1000)) < 0.45 * float(m16.decode_step_time_s(1, 1000))
    assert m8.flops_per_s == pytest.approx(2 * m16.flops_per_s)


def test_bad_precision():
    with pytest.raises(InputError, match="precision"):
        build_model(get_arch("llama3-8b"), get_profile("h100-sxm"), precision="fp4")


def test_tensor_parallel_needed_and_collective_cost():
    h100 = get_profile("h100-sxm")
    a = get_arch("llama3-70b")
    # 141 GB = 131 GiB of bf16 weights: more than 0.9 x 80 GiB, less than 2 x 72 GiB
    assert smallest_fitting_tp(a, h100, 2048) == 2
    assert smallest_fitting_tp(a, h100, 2048, precision="fp8") == 1  # 65.8 GiB
    m1 = build_model(get_arch("llama3-8b"), h100, tp=1)
    m2 = build_model(get_arch("llama3-8b"), h100, tp=2)
    assert float(m1.tp_comm_time_s(1)) == 0.0
    # two all-reduces per layer, each at least the link latency
    assert float(m2.tp_comm_time_s(1)) >= 2 * 32 * 8e-6


def test_model_that_fits_nothing():
    big = get_arch("llama3-405b")
    with pytest.raises(InfeasibleError, match="does not fit"):
        smallest_fitting_tp(big, get_profile("a10g"), 4096, max_tp=8)


def test_moe_reads_only_routed_experts():
    m = build_model(get_arch("mixtral-8x7b"), get_profile("h100-sxm"), tp=2)
    assert experts_touched(8, 2, 1) == pytest.approx(2.0)
    assert float(experts_touched(8, 2, 64)) == pytest.approx(8.0, rel=1e-6)
    w1 = float(m.weights_read_bytes(1))
    w64 = float(m.weights_read_bytes(64))
    assert w1 < 0.45 * w64  # batch 1 reads 2 of 8 experts
    assert w64 == pytest.approx(m.weight_bytes_per_device, rel=0.02)


# --- capacity ---------------------------------------------------------------------------------------------

from scaling_planner.simulate.serving.capacity import fixed_estimate, serving_capacity  # noqa: E402
from scaling_planner.simulate.serving.eventsim import simulate  # noqa: E402
from scaling_planner.simulate.serving.load import analytic_batch_at, analytic_curve  # noqa: E402
from scaling_planner.simulate.serving.workload import poisson_workload  # noqa: E402


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
def test_analytic_and_simulation_agree_at_moderate_load(fraction):
    # The fixed point (mean batch, mean TPOT) against the event simulation at 30-70 % of the
    # saturation load; the issue asks for 10 %. (Measured: 2-3 %.)
    m = build_model(get_arch("llama3-8b"), get_profile("h100-sxm"))
    bmax = m.max_batch(1024 + 256)
    lam = fraction * float(analytic_curve(m, 1024, 256, bmax)[0])
    B, tpot = analytic_batch_at(m, 1024, 256, lam, bmax)
    s = simulate(m, poisson_workload(lam, 4000, 1024, 256, seed=1)).summary()
    assert s["mean_batch"] == pytest.approx(B, rel=0.10)
    assert s["tpot_s"]["mean"] == pytest.approx(tpot, rel=0.10)


def test_capacity_plan_llama3_70b():
    plan = serving_capacity(get_arch("llama3-70b"), get_profile("h100-sxm"), tokens_per_day=1e10)
    # 1e10 tokens/day of 1024 + 256 tokens = 90.4 queries/s mean, 180.8 at the 2x peak
    assert plan.demand.mean_qps == pytest.approx(1e10 / 86400 / 1280)
    assert plan.devices == plan.replicas * plan.tensor_parallel
    assert plan.replicas * plan.max_qps_per_replica >= plan.demand.peak_qps
    assert (plan.replicas - 1) * plan.max_qps_per_replica < plan.demand.peak_qps
    # simulated p99 at the planned load meets the SLO
    assert plan.latency_at_peak.ttft_s.p99 <= 2.0 and plan.latency_at_peak.tpot_s.p99 <= 0.2
    # simulated and analytic capacities of the chosen degree agree within 10 %
    chosen = next(o for o in plan.options if o.tensor_parallel == plan.tensor_parallel)
    assert chosen.simulated_max_qps == pytest.approx(chosen.analytic_max_qps, rel=0.10)
    assert plan.cost_usd_per_day == pytest.approx(plan.devices * 4.916 * 24)
    assert plan.cost_usd_per_million_tokens == pytest.approx(plan.cost_usd_per_day / 1e4)
    assert plan.energy_kwh_per_day > 0 and plan.energy_j_per_token > 0


def test_tighter_slo_needs_more_devices():
    a, p = get_arch("llama3-8b"), get_profile("h100-sxm")
    loose = serving_capacity(a, p, qps=50, p99_tpot_s=0.2, simulate=False)
    tight = serving_capacity(a, p, qps=50, p99_tpot_s=0.012, simulate=False)
    assert tight.devices > loose.devices


def test_unmeetable_slo_reports_best_latency():
    with pytest.raises(InfeasibleError, match=r"best reachable at no load: TTFT .* TPOT"):
        serving_capacity(get_arch("llama3-70b"), get_profile("h100-sxm"), qps=1, p99_tpot_s=1e-4)


def test_bad_demand():
    a, p = get_arch("llama3-8b"), get_profile("h100-sxm")
    with pytest.raises(InputError, match="tokens_per_day"):
        serving_capacity(a, p, tokens_per_day=-1)
    with pytest.raises(InputError, match="qps"):
        serving_capacity(a, p, qps=0)
    with pytest.raises(InputError, match="demand"):
        serving_capacity(a, p, qps=1, tokens_per_day=1e9)


def test_reasoning_budget_multiplies_decode_cost():
    a, p = get_arch("llama3-8b"), get_profile("h100-sxm")
    plan = serving_capacity(a, p, qps=20, thinking_tokens=1024, samples=4, single_sample_accuracy=0.3,
                            simulate=False)
    ttc = plan.test_time_compute
    assert ttc.decode_multiplier == pytest.approx(4 * (256 + 1024) / 256)
    assert ttc.devices_with > ttc.devices_without
    assert ttc.extra_cost_usd_per_day > 0
    assert ttc.pass_at_k == pytest.approx(1 - 0.7**4)


def test_fixed_estimate_matches_iteration_model():
    a, p = get_arch("llama3-8b"), get_profile("h100-sxm")
    est = fixed_estimate(a, p, gpus=1, batch_size=8, prompt_tokens=512, output_tokens=128)
    m = build_model(a, p)
    assert est.ttft_s == pytest.approx(float(m.prefill_time_s(512, 8)))
    assert est.throughput_output_tokens_per_s == pytest.approx(8 * 128 / (est.ttft_s + 127 * est.tpot_s))
    assert est.throughput_total_tokens_per_s_per_device == est.throughput_total_tokens_per_s
    with pytest.raises(InfeasibleError, match="GiB more than"):
        fixed_estimate(get_arch("llama3-70b"), p, gpus=1, batch_size=1, prompt_tokens=512, output_tokens=128)


# --- CLI ------------------------------------------------------------------------------------------------------

import json  # noqa: E402

from scaling_planner.cli import main  # noqa: E402


def test_cli_contract_json(capsys):
    code = main(["serve", "--arch", "llama3-70b", "--gpu", "h100-sxm", "--tokens-per-day", "1e10", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["devices"] == data["replicas"] * data["tensor_parallel"] > 0
    assert data["assumptions"]["hbm_fraction"] == 0.8


@pytest.mark.parametrize("argv, code, needle", [
    (["--params", "7e9", "--gpu", "h100-sxm", "--tokens-per-day", "-1"], 2, "tokens_per_day"),
    (["--params", "7e9", "--gpu", "h100-sxm", "--qps", "0"], 2, "qps"),
    (["--params", "7e9", "--gpu", "h100-sxm"], 2, "demand"),
    (["--arch", "llama3-70b", "--gpu", "h100-sxm", "--qps", "3", "--p99-tpot", "0.001"], 3, "best reachable"),
    (["--arch", "llama3-405b", "--gpu", "a10g", "--gpus", "1", "--batch-size", "1"], 3, "GiB more than"),
    (["--params", "7e9", "--gpu", "no-such-gpu", "--qps", "1"], 2, "no-such-gpu"),
])
def test_cli_bad_input_one_line(capsys, argv, code, needle):
    with_exit = None
    try:
        rc = main(["serve", *argv])
    except SystemExit as exc:  # argparse type errors exit from the parser
        with_exit = exc.code
        rc = with_exit
    out, err = capsys.readouterr()
    assert rc == code
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_cli_fixed_configuration(capsys):
    code = main(["serve", "--arch", "llama3-8b", "--gpu", "h100-sxm", "--gpus", "1", "--batch-size", "4",
                 "--prompt-tokens", "512", "--output-tokens", "64", "--precision", "fp8", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["precision"] == "fp8" and data["tpot_s"] > 0
    assert data["throughput_total_tokens_per_s_per_device"] == data["throughput_total_tokens_per_s"]
