"""The planner API: objectives -> Plan (law + training simulator), alternatives, uncertainty, errors."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling_planner.base.errors import InfeasibleError, InputError, PlannerError
from scaling_planner.hardware.profiles import load_profile
from scaling_planner.laws.chinchilla import FLOPS_PER_PARAM_TOKEN
from scaling_planner.laws.presets import get_law
from scaling_planner.planning.recommend import recommend
from scaling_planner.planning.request import DEFAULT_TARGET_DAYS
from scaling_planner.planning.training import Simulator as _Simulator
from scaling_planner.render.explain import explain_lines

LAW = get_law("besiroglu2024")


@pytest.fixture(scope="module")
def plan_1e22():
    return recommend(LAW, budget_flops=1e22, gpus=64, gpu="h100-sxm")


def test_target_loss_matches_the_closed_form():
    p = recommend(LAW, target_loss=2.0)
    C = float(LAW.compute_for_loss(2.0))
    assert p.compute_flops == pytest.approx(C, rel=1e-12)
    assert p.model.params == pytest.approx(float(LAW.optimal_params(C)), rel=1e-12)
    assert p.model.tokens == pytest.approx(float(LAW.optimal_tokens(C)), rel=1e-12)
    assert p.compute_flops == pytest.approx(FLOPS_PER_PARAM_TOKEN * p.model.params * p.model.tokens, rel=1e-9)
    assert p.model.loss == pytest.approx(2.0, abs=1e-9)


def test_budget_flops_lands_near_chinchilla():
    p = recommend(LAW, budget_flops=5.76e23)
    assert 55e9 < p.model.params < 90e9 and 1.0e12 < p.model.tokens < 1.8e12
    assert 18 <= p.model.tokens_per_param <= 26


def test_training_block_comes_from_the_simulator(plan_1e22):
    t = plan_1e22.training
    assert t.gpus == 64 and t.gpus_source == "--gpus" and t.gpu == "h100-sxm"
    assert 0 < t.mfu < 1 and t.mfu_provenance == "profile default"
    sim = _Simulator(load_profile("h100-sxm"), None, None)(plan_1e22.model.params, plan_1e22.model.tokens, 64)
    assert t.wall_clock_days == pytest.approx(sim.training.wall_clock_days, rel=1e-12)
    assert t.cost_usd == pytest.approx(sim.training.cost_usd, rel=1e-12)
    assert t.energy_kwh == pytest.approx(sim.training.energy_kwh, rel=1e-12)


def test_explain_arithmetic_holds(plan_1e22):
    p, t = plan_1e22, plan_1e22.training
    assert p.compute_flops == pytest.approx(6 * p.model.params * p.model.tokens, rel=1e-12)
    assert t.ideal_time_s == pytest.approx(t.model_flops / (t.gpus * t.peak_flops_per_s * t.mfu_steady_state),
                                           rel=1e-9)
    assert t.wall_clock_days * 86400 == pytest.approx(t.ideal_time_s / t.goodput * t.end_to_end_factor, rel=1e-9)
    assert t.mfu == pytest.approx(t.model_flops / (t.gpu_hours * 3600 * t.peak_flops_per_s), rel=1e-9)
    assert t.gpu_hours == pytest.approx(t.gpus * t.wall_clock_days * 24, rel=1e-9)
    assert t.cost_usd == pytest.approx(t.gpu_hours * t.price_usd_per_device_hour, rel=1e-9)
    e = t.energy_assumptions
    assert t.energy_kwh == pytest.approx(t.gpu_hours * (e.device_power_w + e.host_w_per_device) * e.pue / 1000,
                                         rel=1e-9)
    text = "\n".join(explain_lines(p))
    assert "FLOP/s" in text and "FLOPs /" in text and "goodput" in text


def test_measured_mfu_override_scales_time():
    base = recommend(LAW, budget_flops=1e22, gpus=64, alternatives=False)
    tuned = recommend(LAW, budget_flops=1e22, gpus=64, alternatives=False, efficiency="tuned")
    slow = recommend(LAW, budget_flops=1e22, gpus=64, mfu=tuned.training.mfu_tuned / 2, alternatives=False)
    assert slow.training.mfu_provenance == "measured"
    assert slow.training.mfu_steady_state == pytest.approx(tuned.training.mfu_tuned / 2)
    assert slow.training.ideal_time_s == pytest.approx(2 * tuned.training.ideal_time_s, rel=1e-9)
    # a measured MFU replaces the prior: no end-to-end factor, the step model's narrow band
    assert slow.training.end_to_end_factor == 1.0
    assert slow.training.gpu_hours_p90 / slow.training.gpu_hours_p10 < base.training.gpu_hours_p90 / \
        base.training.gpu_hours_p10


def test_default_gpu_count_is_the_smallest_power_of_two_of_nodes_within_90_days():
    p = recommend(LAW, target_loss=2.0, alternatives=False)
    t = p.training
    assert t.wall_clock_days <= DEFAULT_TARGET_DAYS
    assert t.gpus % 8 == 0 and (t.gpus // 8) & (t.gpus // 8 - 1) == 0
    assert "90 days" in t.gpus_source
    if t.gpus > 8:
        half = _Simulator(load_profile("h100-sxm"), None, None)(p.model.params, p.model.tokens, t.gpus // 2)
        assert half is None or half.training.wall_clock_days > DEFAULT_TARGET_DAYS


@pytest.mark.parametrize(("kw", "field"), [({"budget_usd": 2e6}, "cost_usd"), ({"budget_gpu_hours": 1e5}, "gpu_hours")])
def test_dollar_and_gpu_hour_budgets_are_spent(kw, field):
    p = recommend(LAW, alternatives=False, **kw)
    budget = next(iter(kw.values()))
    spent = getattr(p.training, field)
    assert spent <= budget * (1 + 1e-9)
    assert spent > 0.9 * budget  # bisection lands at the budget (up to the simulator's discrete jumps)


def test_fixed_cluster_and_deadline():
    p = recommend(LAW, gpus=256, deadline_days=30, alternatives=False)
    assert p.objective == "deadline" and p.training.gpus == 256
    assert p.training.wall_clock_days <= 30
    more = recommend(LAW, gpus=1024, deadline_days=30, alternatives=False)
    assert more.compute_flops > p.compute_flops


def test_deadline_as_a_constraint_is_infeasible_when_missed():
    with pytest.raises(InfeasibleError, match="deadline"):
        recommend(LAW, target_loss=2.0, gpus=64, deadline_days=1)


def test_budget_too_small_says_the_smallest_that_works():
    with pytest.raises(InfeasibleError, match="too small") as exc:
        recommend(LAW, budget_usd=1.0)
    smallest = float(str(exc.value).split("needs ")[1].split()[0])
    assert smallest > 1.0
    p = recommend(LAW, budget_usd=smallest * 1.001, alternatives=False)
    assert p.training.cost_usd <= smallest * 1.001


def test_target_at_or_below_the_floor_names_e_and_the_law():
    with pytest.raises(InputError, match=r"E = 1\.8169.*besiroglu2024"):
        recommend(LAW, target_loss=1.8)


@pytest.mark.parametrize("kw", [
    {}, {"gpus": 64}, {"deadline_days": 10}, {"target_loss": 2.0, "budget_flops": 1e22},
    {"budget_usd": -1.0}, {"budget_flops": float("nan")}, {"budget_gpu_hours": float("inf")},
    {"target_loss": 2.0, "mfu": 1.5}, {"target_loss": 2.0, "mfu": 0.0},
    {"target_loss": 2.0, "price_usd_per_device_hour": -3.0},
    {"target_loss": 2.0, "gpus": 12}, {"target_loss": 2.0, "gpus": 0}, {"target_loss": 2.0, "gpus": 2.5},
    {"target_loss": 2.0, "gpu": "no-such-gpu"}, {"target_loss": "abc"}, {"target_loss": 2.0, "inference_tokens": 0},
    {"budget_usd": 1e6, "gpu": None},
])
def test_bad_requests_raise_input_error(kw):
    with pytest.raises(InputError):
        recommend(LAW, **kw)


def test_uncertainty_bands_scale_with_compute():
    p = recommend(LAW, target_loss=2.0, alternatives=False)
    u, t = p.uncertainty, p.training
    assert u.compute_flops.p10 < p.compute_flops < u.compute_flops.p90
    for band, point in ((u.wall_clock_days, t.wall_clock_days), (u.cost_usd, t.cost_usd), (u.gpu_hours, t.gpu_hours)):
        assert band.p10 < point < band.p90
        # law and efficiency spread together: wider than either alone, in both directions
        assert band.p90 / point > max(u.compute_flops.p90 / p.compute_flops, t.gpu_hours_p90 / t.gpu_hours)
        assert band.p10 / point < min(u.compute_flops.p10 / p.compute_flops, t.gpu_hours_p10 / t.gpu_hours)
    assert 0.3 < u.probability_within_budget < 0.7 and 0.3 < u.probability_target_met < 0.7


def test_efficiency_draws_match_the_estimates_band():
    from scaling_planner.planning.uncertainty import efficiency_draws

    e = np.exp(efficiency_draws(4000, 0.7, 1.6))
    q10, q50, q90 = np.percentile(e, [10, 50, 90])
    assert q10 == pytest.approx(0.7, rel=0.01) and q50 == pytest.approx(1.0, abs=0.01)
    assert q90 == pytest.approx(1.6, rel=0.01)
    assert np.array_equal(efficiency_draws(50, 0.7, 1.6), efficiency_draws(50, 0.7, 1.6))  # reproducible


def test_probabilities_of_staying_within_limits_count_the_efficiency_spread():
    p = recommend(LAW, budget_usd=2e6, deadline_days=60, alternatives=False)
    u, t = p.uncertainty, p.training
    # the budget objective spends the budget at the P50: even odds of staying within it
    assert t.cost_usd == pytest.approx(2e6, rel=0.01)
    assert 0.4 < u.probability_within_budget_usd < 0.6
    assert t.wall_clock_days < 60 and u.probability_within_deadline > 0.5
    tight = recommend(LAW, budget_usd=2e6, gpus=t.gpus, deadline_days=t.wall_clock_days * 1.05, alternatives=False)
    assert tight.uncertainty.probability_within_deadline < u.probability_within_deadline


def test_alternatives_reach_the_same_loss_and_cost_more_to_train(plan_1e22):
    alts = {a.name: a for a in plan_1e22.alternatives}
    opt, small = alts["compute-optimal"], alts["over-trained 2x smaller"]
    assert opt.compute_flops == pytest.approx(plan_1e22.compute_flops)
    assert small.loss == pytest.approx(opt.loss, abs=1e-9)
    assert small.params == pytest.approx(opt.params / 2)
    assert small.compute_flops > opt.compute_flops and small.cost_usd > 0 and small.gpu_hours > 0
    ten = alts["over-trained 10x smaller"]
    assert ten.tokens is None or ten.loss == pytest.approx(opt.loss, abs=1e-9)


def test_inference_optimal_lowers_lifetime_cost():
    p = recommend(LAW, budget_flops=1e22, gpus=64, inference_tokens=1e12)
    alts = {a.name: a for a in p.alternatives}
    inf, opt = alts["inference-optimal"], alts["compute-optimal"]
    assert inf.params < opt.params and inf.tokens > opt.tokens
    assert inf.inference_flops == pytest.approx(2 * inf.params * 1e12)
    assert inf.lifetime_flops == pytest.approx(inf.compute_flops + inf.inference_flops)
    assert inf.lifetime_cost_usd < opt.lifetime_cost_usd
    assert inf.loss == pytest.approx(opt.loss, abs=1e-6)


def test_law_level_plan_without_a_gpu():
    p = recommend(LAW, target_loss=2.0, gpu=None)
    assert p.training is None and p.compute_flops == pytest.approx(float(LAW.compute_for_loss(2.0)))


@settings(max_examples=25, deadline=None)
@given(
    objective=st.sampled_from(["target_loss", "budget_flops", "budget_usd", "budget_gpu_hours"]),
    value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(1e-3, 1e12)),
    gpus=st.one_of(st.none(), st.sampled_from([1, 3, 8, 12, 64, 1024])),
)
def test_generated_requests_plan_or_raise_planner_errors(objective, value, gpus):
    if objective == "budget_flops" and math.isfinite(value) and value > 0:
        value = value * 1e12  # FLOP budgets of a useful size
    try:
        p = recommend(LAW, gpus=gpus, alternatives=False, **{objective: value})
    except PlannerError:
        return
    assert np.isfinite(p.compute_flops) and p.training is not None and p.training.cost_usd > 0


# -- data-constrained mode (Muennighoff 2023, --unique-tokens) -------------------------------------------

DC_LAW = get_law("muennighoff2023-c4")


@pytest.fixture(scope="module")
def dc_plan():
    return recommend(DC_LAW, budget_flops=1e22, unique_tokens=25e9, gpus=64)


def test_data_constrained_allocation_matches_the_datablations_readme(dc_plan):
    # datablations README: C = 1e22, 25B unique tokens -> 7022364735.88 params, 237336955477.55 tokens,
    # 9.4935 epochs (its 500-point grid; tests/test_data_constrained.py derives the 0.16 % tolerance).
    from scaling_planner.laws import data_constrained as dcl

    m, s = dc_plan.model, dc_plan.data_constrained
    assert m.params == pytest.approx(7.02236e9, rel=1.6e-3) and m.tokens == pytest.approx(2.37337e11, rel=1.6e-3)
    assert s.epochs == pytest.approx(9.4935, rel=1.6e-3) and s.binding
    ref = dcl.optimal_allocation(1e22, 25e9, DC_LAW)
    assert m.params == pytest.approx(ref.params, rel=1e-12) and m.loss == pytest.approx(ref.loss, abs=1e-12)
    assert s.chinchilla_params == pytest.approx(ref.chinchilla_params, rel=1e-12)
    assert s.chinchilla_loss == pytest.approx(ref.chinchilla_loss, abs=1e-12)
    assert s.chinchilla_unlimited_data_loss == pytest.approx(ref.chinchilla_unconstrained_loss, abs=1e-12)
    assert s.loss < s.chinchilla_loss  # the README's point: a smaller model on more epochs wins under the cap
    assert s.unlimited_data_loss < s.loss  # repetition costs loss
    assert s.effective_tokens == pytest.approx(float(dcl.effective_tokens(m.tokens, 25e9, law=DC_LAW)), rel=1e-12)
    assert s.effective_tokens < m.tokens and s.effective_params < m.params
    assert s.R_D_star == 15.387756 and s.decay_source == "law muennighoff2023-c4"


def test_data_constrained_marginal_epoch(dc_plan):
    from scaling_planner.laws import data_constrained as dcl

    m, e = dc_plan.model, dc_plan.data_constrained.next_epoch
    drop = float(dcl.loss(m.params, m.tokens, 25e9, DC_LAW) - dcl.loss(m.params, m.tokens + 25e9, 25e9, DC_LAW))
    assert e.loss_decrease == pytest.approx(drop, rel=1e-12) and 0 < e.loss_decrease < 0.01
    assert e.extra_flops == pytest.approx(6 * m.params * 25e9)
    assert 0 < e.relative_token_value < dc_plan.data_constrained.repeated_token_value <= 1


def test_data_constrained_alternatives(dc_plan):
    from scaling_planner.laws import data_constrained as dcl

    alts = {a.name: a for a in dc_plan.alternatives}
    small = alts["over-trained 2x smaller"]
    assert float(dcl.loss(small.params, small.tokens, 25e9, DC_LAW)) == pytest.approx(dc_plan.model.loss, abs=1e-9)
    chin = alts["chinchilla allocation (ignores the cap)"]
    assert chin.compute_flops == pytest.approx(1e22) and chin.loss == pytest.approx(
        dc_plan.data_constrained.chinchilla_loss, abs=1e-12)
    assert "inference-optimal" not in alts


def test_data_constrained_target_loss_is_the_least_compute():
    from scaling_planner.laws import data_constrained as dcl

    p = recommend(DC_LAW, target_loss=2.2, unique_tokens=25e9, alternatives=False)
    assert p.model.loss == pytest.approx(2.2, abs=1e-9)
    assert p.compute_flops > float(DC_LAW.compute_for_loss(2.2))  # repetition needs more compute than fresh data
    less = dcl.optimal_allocation(p.compute_flops * 0.99, 25e9, DC_LAW).loss
    assert less > 2.2  # 1 % less compute cannot reach it


def test_data_constrained_target_below_the_floor_is_infeasible():
    with pytest.raises(InfeasibleError, match=r"no compute goes below 2\.1559"):
        recommend(DC_LAW, target_loss=2.15, unique_tokens=25e9)


def test_data_constrained_cap_that_does_not_bind_is_chinchilla():
    plain = recommend(DC_LAW, budget_flops=1e21, gpus=8, alternatives=False)
    p = recommend(DC_LAW, budget_flops=1e21, gpus=8, unique_tokens=1e15, alternatives=False)
    assert p.model.params == pytest.approx(plain.model.params, rel=1e-12)
    assert p.model.loss == pytest.approx(plain.model.loss, abs=1e-12)
    assert not p.data_constrained.binding and p.data_constrained.epochs < 1
    assert p.training.cost_usd == pytest.approx(plain.training.cost_usd, rel=1e-12)


def test_data_constrained_on_a_law_without_decay_constants_borrows_and_says_so():
    p = recommend(LAW, budget_flops=1e23, unique_tokens=1e11, gpus=256, alternatives=False)
    assert p.data_constrained.R_N_star == 5.309743 and "borrowed" in p.data_constrained.decay_source
    assert any("approximation" in n for n in p.notes)
    assert p.model.loss_band is not None and p.model.loss_band.p10 < p.model.loss < p.model.loss_band.p90
    u = p.uncertainty  # bands from Muennighoff's law per draw (tests/test_data_constrained_bands.py)
    assert u.draws == 1000 and u.compute_flops is None  # a FLOP budget: no compute band
    assert u.optimal_params.p10 < p.model.params < u.optimal_params.p90
    assert any("1000 of the law's 4000 draws" in n for n in p.notes)


def test_data_constrained_dollar_budget_is_spent():
    p = recommend(DC_LAW, budget_usd=1e6, unique_tokens=5e10, alternatives=False)
    # bisection lands below the budget by the simulator's discrete steps: shape_for_params rounds the layer
    # count (here a 33.1B shape for 38B asked), so cost is a staircase in C, not a smooth curve
    assert 0.8e6 < p.training.cost_usd <= 1e6 * (1 + 1e-9)
    assert p.data_constrained.binding and p.data_constrained.epochs > 1


@pytest.mark.parametrize("U", [0, -1e9, float("nan"), float("inf"), "abc", 0.5, 5e-324])
def test_bad_unique_tokens(U):
    with pytest.raises(InputError, match="unique_tokens"):
        recommend(DC_LAW, budget_flops=1e22, unique_tokens=U)


# -- MoE section (Krajewski 2024, --experts/--top-k) ------------------------------------------------------

def test_moe_section_is_the_law_optimum_at_the_plan_compute():
    from scaling_planner.laws import moe

    p = recommend(LAW, budget_flops=1e22, gpus=64, experts=64, top_k=8, alternatives=False)
    m = p.moe
    ref = moe.compute_optimal(1e22, expansion_rate=8, granularities=[8.0])
    assert (m.experts, m.top_k, m.expansion_rate, m.granularity) == (64, 8, 8.0, 8.0)
    assert m.params_non_embedding == pytest.approx(ref.params, rel=1e-12)
    assert m.active_params_non_embedding == pytest.approx(ref.active_params, rel=1e-12)
    assert m.tokens == pytest.approx(ref.tokens, rel=1e-12) and m.loss == pytest.approx(ref.loss, abs=1e-12)
    # total vs active: N = (8E + 4)·d²·n against 12·d²·n
    assert m.params_non_embedding / m.active_params_non_embedding == pytest.approx((8 * 8 + 4) / 12, rel=1e-9)
    # the dense-equivalent compute reaches the MoE's loss under Krajewski's dense row
    assert float(moe.dense_law().frontier_loss(m.dense_compute_for_same_loss)) == pytest.approx(m.loss, abs=1e-9)
    assert m.compute_multiplier > 1 and m.loss < m.dense_loss
    assert any("extrapolation" in n for n in m.notes)  # E = 8, fitted at 64
    t = m.training
    assert t.gpus == 64 and t.active_params < t.params
    assert t.params == pytest.approx(m.params_non_embedding, rel=0.1)  # rounded shape + embeddings
    assert t.cost_usd > 0 and 0 < t.mfu < 1


@pytest.mark.parametrize(("active", "D", "G", "flops", "loss"), [
    (7e9, 137.6e9, 32, 6.46e21, 2.076), (70e9, 941.07e9, 32, 4.16e23, 1.694)])
def test_moe_reproduces_krajewski_table2_through_recommend(active, D, G, flops, loss):
    # Table 2 (E = 64): tolerances as in tests/test_moe.py (rounded labels, Table 1 rounded to 3 digits)
    m = recommend(LAW, budget_flops=flops, experts=64 * G, top_k=G, gpu=None, alternatives=False).moe
    assert m.active_params_non_embedding == pytest.approx(active, rel=0.035)
    assert m.tokens == pytest.approx(D, rel=0.03) and m.loss == pytest.approx(loss, abs=0.03)
    assert not any("extrapolation" in n for n in m.notes) and m.training is None


def test_moe_top_k_chosen_by_the_law_stays_within_the_fitted_expansion_rate():
    m = recommend(LAW, budget_flops=1e22, experts=256, gpu=None, alternatives=False).moe
    assert m.granularity_chosen and m.expansion_rate <= 64 and 256 % m.top_k == 0


def test_moe_that_fits_nowhere_says_so_without_a_figure():
    # 8192 top-1 experts at 1e19 FLOPs: ~230B parameters, 4 TB of training state; 64 x 24 GiB CPUs cannot hold it
    p = recommend(LAW, budget_flops=1e19, gpus=1, gpu="cpu", experts=8192, top_k=1, alternatives=False)
    assert p.moe.training is None
    assert any("not simulated" in n and "rather than a guess" in n for n in p.notes)


def test_moe_larger_than_the_plan_gpus_is_simulated_on_more():
    p = recommend(LAW, target_loss=2.0, experts=256, top_k=4, alternatives=False)
    t = p.moe.training
    assert t is not None and t.gpus > p.training.gpus and t.gpus % p.training.gpus == 0
    assert any("smallest doubling that fits" in n for n in p.moe.notes)


@pytest.mark.parametrize("kw", [
    {"experts": 1}, {"experts": 0}, {"experts": 2.5}, {"experts": True}, {"experts": float("nan")},
    {"experts": 8, "top_k": 8}, {"experts": 8, "top_k": 3}, {"experts": 8, "top_k": 0}, {"top_k": 2},
])
def test_bad_moe_requests(kw):
    with pytest.raises(InputError):
        recommend(LAW, budget_flops=1e22, **kw)


# -- serving demand and lifetime cost (--tokens-per-day, --serving-days) -----------------------------------

FAST = {"simulate": False}  # analytic capacity: the same fleet arithmetic, no event simulation


@pytest.fixture(scope="module")
def served():
    return recommend(LAW, budget_flops=1e23, gpus=256, tokens_per_day=1e10, serving_days=365)


def test_serving_section_is_the_serving_simulator(served):
    from scaling_planner.simulate.architecture import shape_for_params
    from scaling_planner.simulate.serving.capacity import serving_capacity

    v, t = served.serving, served.training
    f = v.fleet
    ref = serving_capacity(shape_for_params(served.model.params), load_profile("h100-sxm"), tokens_per_day=1e10)
    assert f == ref  # the section embeds planner serve's very plan
    assert v.serving_cost_usd == pytest.approx(365 * ref.cost_usd_per_day, rel=1e-12)
    assert v.lifetime_cost_usd == pytest.approx(t.cost_usd + v.serving_cost_usd, rel=1e-12)
    assert f.cost_usd_per_day == pytest.approx(f.devices * t.price_usd_per_device_hour * 24, rel=1e-9)
    assert served.inference_tokens == pytest.approx(365e10)
    peak = t.peak_flops_per_s
    assert v.effective_mfu == pytest.approx(2 * served.model.params * 1e10 / (f.devices * 86400 * peak), rel=1e-9)
    assert "simulation" in f.capacity_method


def test_every_alternative_is_served_by_its_own_fleet(served):
    from scaling_planner.simulate.architecture import shape_for_params
    from scaling_planner.simulate.serving.capacity import serving_capacity

    alts = {a.name: a for a in served.alternatives}
    assert alts["compute-optimal"].serving_cost_usd == pytest.approx(served.serving.serving_cost_usd, rel=1e-12)
    for a in alts.values():
        if a.tokens is None:
            continue
        ref = serving_capacity(shape_for_params(a.params), load_profile("h100-sxm"), tokens_per_day=1e10)
        assert a.serving_devices == ref.devices
        assert a.serving_cost_usd == pytest.approx(365 * ref.cost_usd_per_day, rel=1e-12)
        assert a.lifetime_cost_usd == pytest.approx(a.cost_usd + a.serving_cost_usd, rel=1e-12)
        assert a.inference_cost_usd == a.serving_cost_usd
    small, opt = alts["over-trained 2x smaller"], alts["compute-optimal"]
    assert small.serving_devices < opt.serving_devices  # a smaller model needs a smaller fleet
    assert "effective inference MFU" in alts["inference-optimal"].description


def test_serving_cost_scales_with_days_and_demand():
    short = recommend(LAW, budget_flops=1e22, gpus=64, tokens_per_day=1e9, serving_days=30, serving_options=FAST,
                      alternatives=False)
    year = recommend(LAW, budget_flops=1e22, gpus=64, tokens_per_day=1e9, serving_days=300, serving_options=FAST,
                     alternatives=False)
    busy = recommend(LAW, budget_flops=1e22, gpus=64, tokens_per_day=1e11, serving_days=30, serving_options=FAST,
                     alternatives=False)
    assert year.serving.serving_cost_usd == pytest.approx(10 * short.serving.serving_cost_usd, rel=1e-12)
    assert year.serving.fleet.devices == short.serving.fleet.devices
    # 100x the demand: ~100x the replicas less the rounding-up of a small fleet (1 replica, part idle)
    assert 50 * short.serving.fleet.devices < busy.serving.fleet.devices <= 100 * short.serving.fleet.devices
    assert busy.serving.fleet.cost_usd_per_million_tokens < short.serving.fleet.cost_usd_per_million_tokens
    assert "analytic" in short.serving.fleet.capacity_method


def test_unmeetable_slo_is_said_not_fatal():
    p = recommend(LAW, budget_flops=1e22, gpus=64, tokens_per_day=1e9, serving_days=30,
                  serving_options={**FAST, "p99_tpot_s": 1e-6})
    assert p.serving is None and any("no fleet for the demand" in n for n in p.notes)
    assert all(a.serving_cost_usd is None for a in p.alternatives)
    assert p.training.cost_usd > 0


@pytest.mark.parametrize("kw", [
    {"tokens_per_day": 1e10}, {"serving_days": 30}, {"tokens_per_day": -1, "serving_days": 30},
    {"tokens_per_day": 1e10, "serving_days": 0}, {"tokens_per_day": 1e10, "serving_days": 30, "inference_tokens": 1e9},
    {"tokens_per_day": 1e10, "serving_days": 30, "serving_options": {"qps": 3}},
    {"tokens_per_day": 1e10, "serving_days": 30, "serving_options": {"prompt_tokens": 0, "simulate": False}},
    {"tokens_per_day": 1e10, "serving_days": 30, "serving_options": {"peak_factor": 0.5, "simulate": False}},
    {"tokens_per_day": 1e10, "serving_days": 30, "gpu": None}, {"serving_options": {"simulate": False}},
])
def test_bad_serving_requests(kw):
    with pytest.raises(InputError):
        recommend(LAW, budget_flops=1e22, gpus=64, **kw)


def test_consistent_inference_tokens_are_accepted():
    p = recommend(LAW, budget_flops=1e22, gpus=64, tokens_per_day=1e9, serving_days=30, inference_tokens=3e10,
                  serving_options=FAST, alternatives=False)
    assert p.inference_tokens == pytest.approx(3e10)


# -- start-up shortcuts give the same answers as the general paths -------------------------------------------

def test_fast_profile_loader_matches_the_validated_loader():
    from scaling_planner.hardware import profiles as hp

    names = sorted(p.stem for p in hp.builtin_profiles_dir().glob("*.yaml"))
    assert len(names) > 10
    for name in names:
        fast = load_profile(name)
        slow = hp.load_profile_file(hp.builtin_profiles_dir() / f"{name}.yaml", builtin=True)
        assert fast.model_dump() == slow.model_dump(), name


@pytest.mark.parametrize("n", [1, 2, 3, 10, 4000, 4001])
def test_percentiles_are_numpys_linear_percentiles(n):
    from scaling_planner.base.stats import percentiles as _percentiles

    v = np.random.default_rng(n).lognormal(size=n)
    assert np.array_equal(_percentiles(v, [10, 50, 90]), np.percentile(v, [10, 50, 90])) or np.allclose(
        _percentiles(v, [10, 50, 90]), np.percentile(v, [10, 50, 90]), rtol=1e-15, atol=0)


@settings(max_examples=30, deadline=None)
@given(
    unique=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(1e6, 1e14)),
    experts=st.one_of(st.none(), st.integers(-2, 600), st.floats(allow_nan=True)),
    top_k=st.one_of(st.none(), st.integers(-1, 64)),
    demand=st.one_of(st.none(), st.tuples(st.floats(-1e3, 1e12), st.floats(-5, 1e4))),
)
def test_generated_mode_requests_plan_or_raise_planner_errors(unique, experts, top_k, demand):
    kw = dict(unique_tokens=unique, experts=experts, top_k=top_k)
    if demand is not None:
        kw.update(tokens_per_day=demand[0], serving_days=demand[1], serving_options={"simulate": False})
    try:
        p = recommend(DC_LAW, budget_flops=1e21, gpus=8, alternatives=False, **kw)
    except PlannerError:
        return
    assert np.isfinite(p.compute_flops) and p.training.cost_usd > 0
    assert (p.data_constrained is not None) == (unique is not None)
    assert (p.moe is not None) == (experts is not None)


def test_a_target_above_the_smallest_runs_loss_is_refused_not_planned_as_a_micro_model():
    """A target loss the smallest run already beats used to give a plan of 1e-6 parameters; it is an
    InputError naming the field and the highest target in range. On hardware the smallest run is
    MIN_COMPUTE_FLOPS; at law level (no GPU: a sweep's small ladder) a model of MIN_LAW_PARAMS."""
    from scaling_planner.laws.chinchilla import compute_for_params, frontier_loss, optimal_params
    from scaling_planner.planning.compute import MIN_COMPUTE_FLOPS, MIN_LAW_PARAMS

    highest = float(frontier_loss(LAW, MIN_COMPUTE_FLOPS))
    assert recommend(LAW, target_loss=highest * 0.999, alternatives=False).compute_flops >= MIN_COMPUTE_FLOPS
    with pytest.raises(InputError, match=r"target_loss: .*smallest run"):
        recommend(LAW, target_loss=highest * 1.01)
    law_level = recommend(LAW, target_loss=highest * 1.01, gpu=None)  # no hardware floor at law level
    assert MIN_LAW_PARAMS < law_level.model.params < float(optimal_params(LAW, MIN_COMPUTE_FLOPS))
    floor = float(compute_for_params(LAW, MIN_LAW_PARAMS))
    assert float(optimal_params(LAW, floor)) == pytest.approx(MIN_LAW_PARAMS, rel=1e-9)
    for gpu in ("h100-sxm", None):
        with pytest.raises(InputError, match="target_loss"):
            recommend(LAW, target_loss=1e5, gpu=gpu)
    with pytest.raises(InfeasibleError, match="budget_flops"):
        recommend(LAW, budget_flops=floor / 2, gpu=None)
    assert recommend(LAW, budget_flops=floor * 2, gpu=None).model.params > MIN_LAW_PARAMS
