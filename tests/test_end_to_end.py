"""The end-to-end training estimate against published pre-training runs (issue 14's acceptance), scored
leave-one-out on the same data ``planner validate`` prints, and the pieces it is made of."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from scaling_planner.hardware.profiles import get_profile
from scaling_planner.preflight.gate import GateLimits, evaluate
from scaling_planner.simulate.architecture import get_arch
from scaling_planner.simulate.training.end_to_end import (
    EAGER_UNFUSED_BYTES,
    load_prior,
    probability_above,
    two_piece_sigmas,
)
from scaling_planner.simulate.training.estimate import simulate_training
from scaling_planner.validation import published, tuned

PUBLISHED_CSV = SHARED / "data" / "published_training_runs.csv"


@pytest.fixture(scope="module")
def loo():
    return published.leave_one_out()


def test_acceptance_leave_one_out_error(loo):
    s = loo.summary
    assert s["runs"] == 24  # tiers A and B less the distilled, implausible and upper-bound rows
    assert s["loo_median_abs_log_error"] <= 0.25
    assert s["loo_median_abs_log_error"] <= 0.8 * s["constant_mfu_loo_median_abs_log_error"]


def test_acceptance_band_coverage_and_width(loo):
    s = loo.summary
    assert 0.70 <= s["band_coverage_p10_p90"] <= 0.90
    assert s["median_p90_over_p10"] <= 3.0
    # the bands bracket their P50 and are out of sample (each from a fit without its run)
    assert np.all(loo.p10 < loo.predicted) and np.all(loo.predicted < loo.p90)


def test_the_tuned_stack_alone_is_far_too_cheap_and_the_mechanism_earns_its_place(loo):
    s = loo.summary
    assert s["tuned_median_ratio_published_over_predicted"] > 1.4  # the gap the issue saw (~1.8x)
    gain = published.mechanism_gain()
    assert gain["with_unfused_traffic"] < gain["without_unfused_traffic"]
    # without the mechanism the model is no better than a constant MFU
    assert gain["without_unfused_traffic"] > 0.9 * s["constant_mfu_loo_median_abs_log_error"]


def test_shipped_prior_is_the_fit_of_the_data():
    """No hand-set constants: refitting the data gives the shipped JSON (scripts/fit_end_to_end_prior.py)."""
    shipped = json.loads((Path(published.__file__).parents[1] / "simulate" / "training" / "data" /
                          "end_to_end_prior.json").read_text())
    fresh = published.fit_prior(tuned.tuned_band())
    for key in ("unfused_bytes_per_element", "log_factor", "log_p10", "log_p90", "tuned_log_p10", "tuned_log_p90",
                "runs"):
        assert fresh[key] == pytest.approx(shipped[key], abs=1e-6), key
    prior = load_prior()
    assert prior.unfused_bytes_per_element == EAGER_UNFUSED_BYTES
    assert 1.0 < math.exp(prior.log_factor) < 2.0  # what published runs spend beyond the mechanisms


def test_every_published_row_is_accounted_for():
    runs = published.load_runs()
    roles = {r.role for r in runs}
    assert roles == {"scored", "excluded: distilled", "excluded: implausible", "bound: upper", "tier C: not scored",
                     "no hours"}
    by_role = {role: [r.name for r in runs if r.role == role] for role in roles}
    assert sorted(by_role["excluded: distilled"]) == ["Llama 3.2 1B", "Llama 3.2 3B"]
    assert sorted(by_role["excluded: implausible"]) == ["Phi-2", "TinyLlama 1.1B"]
    assert by_role["bound: upper"] == ["GLM-130B"]
    assert all(r.tier in "AB" for r in runs if r.role == "scored")
    assert all(r.tier == "C" for r in runs if r.role.startswith("tier C"))


def test_validation_copy_keeps_the_published_numbers():
    """The package's copy of the published runs (adds profile, shape and role columns) keeps every row and
    every published figure of ../shared/data/published_training_runs.csv (CI runs with ../shared beside)."""
    if not PUBLISHED_CSV.exists():
        pytest.fail(f"reference data missing: {PUBLISHED_CSV}")
    shared = list(csv.DictReader(PUBLISHED_CSV.open()))
    ours = {r.name: r for r in published.load_runs()}
    assert len(shared) == len(ours) == 38
    assert {s["model"] for s in shared} == set(ours)
    for row in shared:
        mine = ours[row["model"]]
        if row["gpu_hours"]:
            assert mine.gpu_hours == pytest.approx(float(row["gpu_hours"]), rel=1e-6), row["model"]
        assert mine.tokens == pytest.approx(float(row["tokens"]), rel=0.001), row["model"]
        assert mine.params == pytest.approx(float(row["params_total"]), rel=0.01), row["model"]
        assert mine.tier == row["tier"]


def test_upper_bound_row_stays_below_its_bound():
    prior = load_prior()
    glm = next(c for c in published.curves() if c.run.role == "bound: upper")
    assert published.predict_with(prior, glm)[0] <= glm.run.gpu_hours


def test_excluded_rows_behave_as_the_notes_say():
    """Distilled runs cost far more than a from-scratch estimate of their tokens would predict (teacher logits,
    pruning); the two implausibly efficient rows far less."""
    prior = load_prior()
    for c in published.curves():
        p50 = published.predict_with(prior, c)[0]
        if c.run.role == "excluded: distilled":
            assert c.run.gpu_hours > 2 * p50
        if c.run.role == "excluded: implausible":
            assert c.run.gpu_hours < 0.7 * p50


def test_two_piece_band_reproduces_its_percentiles():
    lo, hi = two_piece_sigmas(0.75, 1.6)
    assert lo > 0 and hi > lo  # overruns are larger than savings
    assert probability_above(100.0, 100.0, 75.0, 160.0) == pytest.approx(0.5)
    assert probability_above(160.0, 100.0, 75.0, 160.0) == pytest.approx(0.1, abs=1e-9)
    assert probability_above(75.0, 100.0, 75.0, 160.0) == pytest.approx(0.9, abs=1e-9)
    assert probability_above(1e9, 100.0, 75.0, 160.0) < 1e-6


def test_estimate_band_and_tuned_figures_on_a_published_shape():
    h100 = get_profile("h100-sxm")
    real = simulate_training(get_arch("llama3-8b"), 2e12, h100, 256).training
    tuned_ = simulate_training(get_arch("llama3-8b"), 2e12, h100, 256, efficiency="tuned").training
    prior = load_prior()
    assert real.gpu_hours_tuned == pytest.approx(tuned_.gpu_hours, rel=1e-9)
    assert real.gpu_hours / real.gpu_hours_tuned > math.exp(prior.log_factor)  # eager traffic on top of the factor
    assert real.gpu_hours_p90 / real.gpu_hours_p10 == pytest.approx(math.exp(prior.log_p90 - prior.log_p10))
    assert tuned_.gpu_hours_p90 / tuned_.gpu_hours_p10 == pytest.approx(
        math.exp(prior.tuned_log_p90 - prior.tuned_log_p10))


def test_gate_reports_and_can_reject_on_the_chance_of_an_overrun():
    h100 = get_profile("h100-sxm")
    plan = simulate_training(get_arch("llama3-8b"), 2e12, h100, 256)
    t = plan.training
    # a budget 20 % above the P50: passes on the P50, about a 30 % chance of overrunning it
    limits = GateLimits(max_cost_usd=1.2 * t.cost_usd, deadline_days=1.2 * t.wall_clock_days)
    d = evaluate(plan, limits)
    assert d.passed and 0.1 < d.probability_over_budget < 0.5
    assert d.probability_over_deadline == pytest.approx(d.probability_over_budget)
    assert "P(over budget)" in d.summary()
    strict = evaluate(plan, limits.model_copy(update={"max_overrun_probability": 0.1}))
    assert not strict.passed and {v.limit for v in strict.violations} == {"max_cost_usd", "deadline_days"}
    assert "exceeds max_overrun_probability 10%" in strict.violations[0].message
    lenient = evaluate(plan, limits.model_copy(update={"max_overrun_probability": 0.5}))
    assert lenient.passed
    with pytest.raises(ValueError):
        GateLimits(max_overrun_probability=1.5)
