"""Training simulator: grid, step-time structure, search, result contract, CLI."""

import json

import numpy as np
import pytest

from scaling_planner.base.errors import InfeasibleError, InputError
from scaling_planner.cli import main
from scaling_planner.hardware.profiles import get_profile
from scaling_planner.simulate import efficiency as eff
from scaling_planner.simulate.architecture import get_arch, shape_for_params
from scaling_planner.simulate.training.estimate import simulate_training
from scaling_planner.simulate.training.search import evaluate_grid, layout_grid
from scaling_planner.simulate.training.step import step_time


@pytest.fixture(scope="module")
def h100():
    return get_profile("h100-sxm")


def test_gemm_efficiency_rises_with_size_and_saturates(h100):
    r = eff.DeviceRates(h100)
    sizes = [64, 256, 1024, 4096, 16384]
    e = [float(eff.gemm_efficiency(r, n, n, n)) for n in sizes]
    assert e == sorted(e)
    assert e[0] < 0.05 and e[-1] == pytest.approx(h100.achievable_matmul_fraction, rel=0.01)


def test_measured_matmul_rate_replaces_prior(h100):
    r = eff.DeviceRates(h100, achievable_flops_per_s=500e12)
    assert r.achievable_fraction == pytest.approx(500 / 989.5)
    assert "measured" in r.source


def test_grid_layouts_multiply_to_g():
    arch = get_arch("llama3-70b")
    g = layout_grid(arch, 512)
    assert np.all(g["t"] * g["p"] * g["d"] == 512)
    assert np.all(arch.n_heads % g["t"] == 0)
    assert set(np.unique(g["recompute"])) == {0, 1, 2} and set(np.unique(g["zero"])) == {0, 1, 2, 3}


def test_moe_grid_has_expert_parallelism():
    g = layout_grid(get_arch("mixtral-8x7b"), 64)
    assert set(np.unique(g["e"])) == {1, 2, 4, 8}
    assert np.all(g["d"] % g["e"] == 0)


def test_bubble_shrinks_with_interleaving(h100):
    arch, r = get_arch("llama3-70b"), eff.DeviceRates(h100)
    kw = dict(s=8192, b=1, t=8, p=8, d=4, e=1, m=32, recompute=1, zero=1, sp=True)
    one = step_time(arch, r, v=1, **kw)
    two = step_time(arch, r, v=2, **kw)
    assert float(two["bubble"]) == pytest.approx(float(one["bubble"]) / 2, rel=0.05)


def test_recompute_costs_time_and_full_costs_most(h100):
    arch, r = get_arch("llama3-8b"), eff.DeviceRates(h100)
    kw = dict(s=8192, b=1, t=1, p=1, d=8, e=1, v=1, m=16, zero=1, sp=False)
    times = [float(step_time(arch, r, recompute=c, **kw)["total"]) for c in (0, 1, 2)]
    assert times[0] <= times[1] < times[2]


def test_vectorised_grid_equals_per_candidate_calls(h100):
    arch, r = get_arch("llama3-70b"), eff.DeviceRates(h100)
    g = layout_grid(arch, 256)
    res = evaluate_grid(arch, r, g)
    for i in np.random.default_rng(0).choice(g["t"].size, 25, replace=False):
        one = {k: v[i] for k, v in g.items()}
        single = evaluate_grid(arch, r, one)
        assert float(single["step"]["total"]) == pytest.approx(res["step"]["total"][i])
        assert float(single["mem"]["total"]) == pytest.approx(res["mem"]["total"][i])


def test_simulate_contract_fields_and_consistency(h100):
    r = simulate_training(get_arch("llama3-8b"), 1e12, h100, 64)
    d = json.loads(r.model_dump_json())
    for key in ("gpu_hours", "wall_clock_days", "mfu", "cost_usd", "energy_kwh"):
        assert d["training"][key] > 0
    assert d["model"]["params"] == pytest.approx(8.03e9, rel=0.01) and d["model"]["tokens"] == 1e12
    assert d["search"]["candidates"] >= d["search"]["feasible"] > 0
    t = r.training
    # end to end below steady state below the tuned stack; HFU >= MFU of the same step
    assert 0 < t.mfu < t.mfu_steady_state <= t.hfu < 1 and t.mfu_steady_state < t.mfu_tuned < 1
    assert r.compute_flops == pytest.approx(get_arch("llama3-8b").megatron_flops_per_token() * 1e12)
    # wall-clock (P50) = ideal / goodput x end-to-end factor; GPU-hours = G x wall-clock
    assert t.wall_clock_days * 86400 == pytest.approx(t.ideal_time_s / t.goodput * t.end_to_end_factor, rel=1e-6)
    assert t.gpu_hours == pytest.approx(64 * t.wall_clock_days * 24, rel=1e-6)
    assert t.mfu == pytest.approx(r.compute_flops / (t.gpu_hours * 3600 * 989.5e12), rel=1e-6)
    # the band brackets the P50 by the same factors for time, GPU-hours and cost
    for key in ("wall_clock_days", "gpu_hours", "cost_usd"):
        p10, p50, p90 = (getattr(t, f"{key}_p10"), getattr(t, key), getattr(t, f"{key}_p90"))
        assert p10 < p50 < p90
        assert p10 / p50 == pytest.approx(t.gpu_hours_p10 / t.gpu_hours) and p90 / p50 == pytest.approx(
            t.gpu_hours_p90 / t.gpu_hours)
    assert t.gpu_hours > t.gpu_hours_tuned and t.cost_usd > t.cost_usd_tuned
    assert t.memory_gib.total <= t.memory_gib.capacity
    # the steady-state step's parts add up (stack traffic included)
    tb = t.time_breakdown_s.model_dump()
    parts = sum(v for k, v in tb.items() if k not in ("total", "dp_comm_hidden"))
    assert parts == pytest.approx(tb["total"], rel=1e-9) and tb["stack_elementwise"] > 0
    assert t.efficiency.source == "realised" and t.efficiency_source.startswith("prior: 24 published")


def test_tuned_efficiency_is_the_step_model(h100):
    r = simulate_training(get_arch("llama3-8b"), 1e12, h100, 64, efficiency="tuned")
    t = r.training
    assert t.end_to_end_factor == 1.0 and t.time_breakdown_s.stack_elementwise == 0.0
    assert t.mfu_steady_state == pytest.approx(t.mfu_tuned)
    assert t.gpu_hours == pytest.approx(t.gpu_hours_tuned) and t.efficiency_source.startswith("tuned")
    # the best tuned layout is no slower per token than any runner-up
    best = t.step_time_s / t.layout.global_batch_tokens
    assert all(best <= x.step_time_s / x.layout.global_batch_tokens + 1e-15 for x in r.search.next_best)
    with pytest.raises(InputError, match="efficiency"):
        simulate_training(get_arch("llama3-8b"), 1e12, h100, 64, efficiency="fast")


def test_measured_mfu_replaces_model_and_says_so(h100):
    base = simulate_training(get_arch("llama3-8b"), 1e12, h100, 64, efficiency="tuned")
    r = simulate_training(get_arch("llama3-8b"), 1e12, h100, 64, measured_mfu=0.3)
    t = r.training
    assert t.mfu_steady_state == pytest.approx(0.3) and t.efficiency.source == "measured"
    assert t.efficiency_source.startswith("measured: MFU 0.300 (--measured-mfu)")
    assert t.step_time_s == pytest.approx(base.training.step_time_s * base.training.mfu_steady_state / 0.3)
    assert t.end_to_end_factor == 1.0 and t.mfu == pytest.approx(0.3 * t.goodput)


def test_price_override(h100):
    r = simulate_training(get_arch("llama3-8b"), 1e12, h100, 64, price_usd_per_device_hour=2.0)
    assert r.training.cost_usd == pytest.approx(r.training.gpu_hours * 2.0, rel=1e-6)


def test_infeasible_says_by_how_much(h100):
    with pytest.raises(InfeasibleError, match="GiB over"):
        simulate_training(shape_for_params(2e12), 1e12, h100, 8)


def test_bad_inputs(h100):
    with pytest.raises(InputError):
        simulate_training(get_arch("llama3-8b"), 0, h100, 64)
    with pytest.raises(InputError):
        simulate_training(get_arch("llama3-8b"), 1e12, h100, 12)


def test_moe_search_uses_ep(h100):
    r = simulate_training(get_arch("mixtral-8x7b"), 1e12, h100, 64)
    assert r.training.layout.ep > 1


def test_405b_on_16k_h100(h100):
    r = simulate_training(get_arch("llama3-405b"), 15.6e12, h100, 16384)
    # Meta reports 38-43 % BF16 MFU for its tuned stack (Llama 3 paper Table 4)
    assert 0.3 < r.training.mfu_tuned < 0.55
    assert r.training.layout.tp * r.training.layout.pp > 1


def test_cli_json_contract(capsys):
    code = main(["simulate", "--params", "7e9", "--tokens", "1e12", "--gpu", "h100-sxm", "--gpus", "64", "--json"])
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    assert {"compute_flops", "model", "training", "search"} <= set(d)
    assert d["search"]["candidates"] > 0 and d["training"]["wall_clock_days"] > 0


def test_cli_table_and_exit_codes(capsys):
    assert main(["simulate", "--arch", "llama3-8b", "--tokens", "1T", "--gpu", "h100-sxm", "--gpus", "16"]) == 0
    out = capsys.readouterr().out
    assert "Best layout" in out and "MFU" in out and "Next best" in out
    assert main(["simulate", "--params", "7e9", "--tokens", "1e12", "--gpu", "nope", "--gpus", "8"]) == 2
    assert main(["simulate", "--params", "5e12", "--tokens", "1e12", "--gpu", "h100-sxm", "--gpus", "8"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 2
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--params", "0", "--tokens", "1e12", "--gpu", "h100-sxm", "--gpus", "8"])
    assert exc.value.code == 2


# DeepSpeed's pipeline engine (v0.5.3): blocking p2p with whole gradients, unfused gradient accumulation


def test_deepspeed_engine_adds_exactly_its_p2p_and_accumulation(h100):
    """Per micro-batch the DeepSpeed engine adds two whole-gradient transfers, the TP all-gather of the
    received activation and one 16-bit gradient accumulation pass; the pipeline pays them m + p - 1 times."""
    from scaling_planner.simulate.memory import stage_param_counts
    from scaling_planner.simulate.training.step import GRAD_ACCUMULATE_BYTES, PARAM_TENSORS_PER_LAYER

    arch, r = get_arch("llama3-70b"), eff.DeviceRates(h100)
    s, b, t, p, d, m = 8192, 1, 8, 8, 4, 32
    kw = dict(s=s, b=b, t=t, p=p, d=d, e=1, v=1, m=m, recompute=2, zero=1, sp=True, dp_overlap=0.0)
    mg = step_time(arch, r, **kw)
    ds = step_time(arch, r, pipeline_engine="deepspeed", **kw)
    act = s * b * arch.d_model * 2.0
    p2p_extra = 2 * float(eff.p2p_time_s(r, act, True)) + float(eff.gather_time_s(r, act, t, False))
    params = sum(float(x) for x in stage_param_counts(arch, t, p, 1))
    kernels = arch.n_layers / p * PARAM_TENSORS_PER_LAYER
    accumulate = float(eff.memory_time_s(r, GRAD_ACCUMULATE_BYTES * params, kernels))
    expected = (m + p - 1) * (p2p_extra + accumulate)
    assert float(ds["total"] - mg["total"]) == pytest.approx(expected, rel=1e-9)
    assert float(ds["grad_accumulation"]) == pytest.approx(m * accumulate)
    # the extra is a few per cent of the step, not a fudge factor
    assert 0.01 < expected / float(mg["total"]) < 0.15


def test_deepspeed_engine_hides_no_gradient_reduction(h100):
    arch, r = get_arch("llama3-70b"), eff.DeviceRates(h100)
    kw = dict(s=8192, b=1, t=8, p=8, d=4, e=1, v=1, m=32, recompute=1, zero=1, sp=True, dp_overlap=0.8)
    assert float(step_time(arch, r, **kw)["dp_comm_hidden"]) > 0
    ds = step_time(arch, r, pipeline_engine="deepspeed", **kw)
    assert float(ds["dp_comm_hidden"]) == 0 and float(ds["dp_comm"]) > 0


def test_deepspeed_engine_refuses_interleaving_and_unknown_engines(h100):
    arch, r = get_arch("llama3-70b"), eff.DeviceRates(h100)
    kw = dict(s=8192, b=1, t=8, p=8, d=4, e=1, m=32, recompute=1, zero=1, sp=True)
    with pytest.raises(InputError, match="interleave"):
        step_time(arch, r, v=2, pipeline_engine="deepspeed", **kw)
    with pytest.raises(InputError, match="pipeline_engine"):
        step_time(arch, r, v=1, pipeline_engine="gpipe", **kw)
    with pytest.raises(InputError, match="pipeline_engine"):
        simulate_training(arch, 1e12, h100, 64, pipeline_engine="gpipe")


def test_deepspeed_grid_has_no_interleave_and_no_zero2_with_pp():
    g = layout_grid(get_arch("llama3-70b"), 512, pipeline_engine="deepspeed")
    assert np.all(g["v"] == 1)
    assert not np.any((g["p"] > 1) & (g["zero"] >= 2))
    assert np.any((g["p"] == 1) & (g["zero"] == 3))  # ZeRO-3 without pipelining stays a candidate


def test_deepspeed_search_is_never_faster_than_megatron(h100):
    arch = get_arch("llama3-70b")
    mg = simulate_training(arch, 1e12, h100, 256)
    ds = simulate_training(arch, 1e12, h100, 256, pipeline_engine="deepspeed")
    per_token = [x.training.step_time_s / x.training.layout.global_batch_tokens for x in (mg, ds)]
    assert per_token[1] >= per_token[0]
    assert ds.training.layout.interleave == 1
    assert any("DeepSpeed" in n for n in ds.training.notes)
