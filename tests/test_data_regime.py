"""The data regime interface (planning/data_regime.py): both regimes answer the same questions, and
under a unique-token cap that does not bind they give Hoffmann's answers (Muennighoff 2023: every
term of L(N, D, U) reduces to Chinchilla's when D <= U and N fits the unique data)."""

import math

import pytest

from scaling_planner.laws.presets import get_law
from scaling_planner.planning.data_constrained import DataConstrainedMode
from scaling_planner.planning.data_regime import FreshData, data_regime

LAW = get_law("muennighoff2023-c4")
C = 1e21

PUBLIC = {name for name in dir(FreshData) if not name.startswith("_")}


def test_both_regimes_implement_the_same_interface():
    missing = {name for name in PUBLIC if not hasattr(DataConstrainedMode, name)}
    assert not missing, f"DataConstrainedMode lacks {sorted(missing)}"


def test_data_regime_picks_the_regime_of_the_request():
    assert isinstance(data_regime(LAW, None), FreshData)
    assert isinstance(data_regime(LAW, 1e12), DataConstrainedMode)


def test_a_cap_that_does_not_bind_allocates_as_fresh_data():
    fresh = FreshData(LAW)
    N, D = fresh.allocate(C)
    capped = DataConstrainedMode(LAW, 100 * D)  # a hundred times the tokens the run reads
    assert capped.allocate(C) == pytest.approx((N, D), rel=1e-12)
    assert float(capped.loss(N, D)) == pytest.approx(float(fresh.loss(N, D)), rel=1e-9)
    assert capped.extra_alternatives(C) == []
    assert fresh.section(C, N, D) is None and capped.section(C, N, D).binding is False


def test_a_binding_cap_costs_loss_and_compute():
    fresh = FreshData(LAW)
    N, D = fresh.allocate(C)
    capped = DataConstrainedMode(LAW, D / 8)  # eight epochs at the fresh-data optimum
    assert float(capped.loss(N, D)) > float(fresh.loss(N, D))
    target = float(fresh.loss(N, D))
    assert capped.compute_for_loss(target, 1e29) > fresh.compute_for_loss(target, 1e29) * 1.01
    assert [row[0] for row in capped.extra_alternatives(C)] == ["chinchilla allocation (ignores the cap)"]
    assert capped.ignored_by("MoE", "fresh data only") == ["MoE: fresh data only"]
    assert fresh.ignored_by("MoE", "fresh data only") == []


def test_fresh_tokens_for_a_loss_invert_the_loss():
    fresh = FreshData(LAW)
    N, D = fresh.allocate(C)
    L = float(fresh.loss(N, D))
    assert fresh.tokens_for_loss_at_params(L, N / 2) > D  # a smaller model needs more tokens
    assert float(fresh.loss(N / 2, fresh.tokens_for_loss_at_params(L, N / 2))) == pytest.approx(L, rel=1e-9)
    # below E + A/N^alpha the model size alone is the limit: no amount of data reaches it
    assert math.isinf(fresh.tokens_for_loss_at_params(LAW.E + 0.5 * LAW.A / N**LAW.alpha, N))
