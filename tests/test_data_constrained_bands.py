"""Uncertainty bands under a unique-token cap (``--unique-tokens``): Muennighoff 2023's L(N, D, U)
evaluated per bootstrap draw of the law. The vectorised per-draw scan and bisection are checked
against the scalar planner code (``DataConstrainedMode.allocate`` / ``compute_for_loss``) run on
each draw as a law of its own, and against the closed forms where the cap does not bind."""

from dataclasses import replace

import numpy as np
import pytest

from scaling_planner.base.errors import InfeasibleError
from scaling_planner.laws.chinchilla import compute_for_loss, optimal_params, optimal_tokens
from scaling_planner.laws.presets import get_law
from scaling_planner.planning.compute import MAX_COMPUTE_FLOPS
from scaling_planner.planning.data_constrained import DataConstrainedMode
from scaling_planner.planning.recommend import recommend

LAW = get_law("besiroglu2024")  # 4,000 bootstrap draws
PICKS = (0, 7, 123, 599, 998)  # indices into the thinned draws


def _draw_law(dc, k):
    d = dc.band_draws()
    return replace(LAW, E=float(d.E[k]), A=float(d.A[k]), B=float(d.B[k]), alpha=float(d.alpha[k]),
                   beta=float(d.beta[k]), samples=None)


def test_band_draws_thin_evenly_to_1000():
    d = DataConstrainedMode(LAW, 2e11).band_draws()
    assert d.E.shape == (1000,)
    np.testing.assert_array_equal(d.E, LAW.samples[::4, 0])
    np.testing.assert_array_equal(d.beta, LAW.samples[::4, 4])


def test_allocation_per_draw_matches_the_scalar_optimum():
    """Each draw's constrained optimum at C: N within 0.2 % of the Brent-refined scalar optimum and
    its loss within 1e-7 (the optimum is flat: the scan's 0.1 % steps cost nothing in loss)."""
    C, U = 2.4e23, 2e11
    dc = DataConstrainedMode(LAW, U)
    N, D = dc.allocate_draws(C)
    assert np.allclose(6 * N * D, C, rtol=1e-12)
    for k in PICKS:
        one = DataConstrainedMode(_draw_law(dc, k), U)
        n_k, d_k = one.allocate(C)
        assert N[k] == pytest.approx(n_k, rel=2e-3)
        assert float(one.loss(N[k], D[k])) == pytest.approx(float(one.loss(n_k, d_k)), abs=1e-7)
    # the cap binds: every draw spends the compute on epochs rather than parameters, a smaller model
    # than Hoffmann's at the same C (Muennighoff 2023 Fig. 3, the data-constrained efficient frontier)
    assert np.all(N < optimal_params(dc.band_draws(), C))


def test_allocation_without_binding_cap_is_each_draws_hoffmann_point():
    dc = DataConstrainedMode(LAW, 1e16)
    N, D = dc.allocate_draws(1e22)
    np.testing.assert_allclose(N, optimal_params(dc.band_draws(), 1e22), rtol=1e-12)
    np.testing.assert_allclose(D, optimal_tokens(dc.band_draws(), 1e22), rtol=1e-12)


def test_compute_for_loss_per_draw_matches_the_scalar_bisection():
    target, U = 2.0, 2e11
    dc = DataConstrainedMode(LAW, U)
    c = dc.compute_for_loss_draws(target, MAX_COMPUTE_FLOPS)
    fresh = np.asarray(compute_for_loss(dc.band_draws(), target), dtype=float)
    finite = np.isfinite(c)
    assert finite.mean() > 0.99
    assert np.all(c[finite] >= fresh[finite] * (1 - 1e-9))  # repetition never makes a loss cheaper
    for k in PICKS:
        one = DataConstrainedMode(_draw_law(dc, k), U)
        try:
            expected = one.compute_for_loss(target, MAX_COMPUTE_FLOPS)
        except InfeasibleError:
            assert c[k] == np.inf
        else:
            assert c[k] == pytest.approx(expected, rel=1e-4)


def test_draws_that_cannot_reach_the_target_are_inf():
    """A target between the draws' loss floors: the draws whose floor lies above it get inf, the
    others a finite compute, and each matches the scalar planner's verdict."""
    U = 2e10
    dc = DataConstrainedMode(LAW, U)
    floors = np.array([DataConstrainedMode(_draw_law(dc, k), U).floor() for k in range(0, 1000, 50)])
    target = float(np.median(floors))
    c = dc.compute_for_loss_draws(target, MAX_COMPUTE_FLOPS)[::50]
    above, below = floors > target + 1e-3, floors < target - 1e-3
    assert above.sum() >= 5 and below.sum() >= 5
    assert np.all(c[above] == np.inf) and np.all(np.isfinite(c[below]))
    for k in np.flatnonzero(below)[:3]:
        one = DataConstrainedMode(_draw_law(dc, 50 * k), U)
        assert c[k] == pytest.approx(one.compute_for_loss(target, MAX_COMPUTE_FLOPS), rel=1e-4)


def test_recommend_under_the_cap_reports_compute_and_cost_bands():
    p = recommend(LAW, target_loss=2.0, unique_tokens=2e11, gpus=128, alternatives=False)
    u = p.uncertainty
    assert p.data_constrained.binding and u.draws == 1000
    assert u.compute_flops.p10 < p.compute_flops < u.compute_flops.p90
    assert u.optimal_params.p10 < p.model.params < u.optimal_params.p90
    assert 0.3 < u.probability_target_met < 0.7 and 0.3 < u.probability_within_budget < 0.7
    # the cost band carries the compute band (law) and the efficiency band (training estimate) together
    ratio = u.cost_usd.p90 / p.training.cost_usd
    assert ratio > u.compute_flops.p90 / p.compute_flops and ratio > p.training.cost_usd_p90 / p.training.cost_usd
    # repetition costs compute: the capped band sits above the fresh-data band at every percentile
    fresh = recommend(LAW, target_loss=2.0, gpus=128, alternatives=False).uncertainty.compute_flops
    assert u.compute_flops.p10 > fresh.p10 and u.compute_flops.p50 > fresh.p50 and u.compute_flops.p90 > fresh.p90


def test_band_keeps_unreachable_draws_as_inf():
    """A percentile that falls among draws that cannot reach the target is inf, not the band of the
    reachable draws only; below them it is numpy's linear percentile of the whole sample."""
    from scaling_planner.planning.uncertainty import band

    v = np.concatenate([np.arange(1.0, 81.0), np.full(20, np.inf)])  # 80 reachable, 20 not
    b = band(v, unreachable_is_inf=True)
    big = np.where(np.isfinite(v), v, 1e300)
    assert b.p10 == pytest.approx(np.percentile(big, 10)) and b.p50 == pytest.approx(np.percentile(big, 50))
    assert b.p90 == np.inf
    assert band(v).p90 == pytest.approx(np.percentile(v[:80], 90))  # the default drops them
    exact = np.concatenate([np.arange(1.0, 11.0), np.full(1, np.inf)])  # rank 9 of 10 exactly: finite
    assert band(exact, unreachable_is_inf=True).p90 == 10.0


def test_cli_target_near_the_floor_marks_unreachable_percentiles():
    """Target 1.96 with 200B unique tokens: some draws' floors lie above it. The table says
    'unreachable' and --json writes null for those percentiles (strict JSON, exit 0)."""
    import json

    from conftest import run_cli

    code, out, err = run_cli("recommend", "--target-loss", "1.96", "--unique-tokens", "2e11", "--json")
    assert code == 0, err
    u = json.loads(out)["uncertainty"]
    assert u["compute_flops"]["p90"] is None and u["cost_usd"]["p90"] is None
    assert u["compute_flops"]["p10"] > 0 and 0 < u["probability_within_budget"] < 1
    code, out, err = run_cli("recommend", "--target-loss", "1.96", "--unique-tokens", "2e11")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "training compute" in line)
    assert row.rstrip().endswith("unreachable")


def test_a_scarce_cap_keeps_the_plan_inside_its_own_band():
    """The draws' scan was centred on each draw's Hoffmann N, two decades each way; with a million unique
    tokens at 1e21 FLOPs the constrained optimum sits further below Hoffmann's N, so every draw landed on
    the scan's edge and the band (23.8M .. 29.5M) excluded the plan's own N (5.3M)."""
    p = recommend(LAW, budget_flops=1e21, gpus=8, unique_tokens=1e6, alternatives=False)
    band = p.uncertainty.optimal_params
    assert band.p10 < p.model.params < band.p90
    assert band.p10 < band.p50 < band.p90
