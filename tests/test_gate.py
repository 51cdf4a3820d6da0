"""The pre-flight gate: each limit rejects with which limit and by how much, and passes otherwise."""

from __future__ import annotations

import pytest

from scaling_planner.base.errors import GateRejectedError, InfeasibleError
from scaling_planner.laws.presets import get_law
from scaling_planner.planning.recommend import recommend
from scaling_planner.preflight.gate import GateLimits, enforce, evaluate


@pytest.fixture(scope="module")
def plan():
    return recommend(get_law("besiroglu2024"), budget_flops=1e21, gpu="h100-sxm", gpus=64, alternatives=False)


def test_passes_within_limits(plan):
    t = plan.training
    d = evaluate(plan, GateLimits(max_cost_usd=t.cost_usd * 1.01, deadline_days=t.wall_clock_days * 1.01,
                                  max_gpus=64))
    assert d.passed and set(d.checked) == {"memory", "max_cost_usd", "deadline_days", "max_gpus"}
    assert enforce(d) is d
    assert d.summary().startswith("pre-flight passed")


def test_cost_over_budget_names_limit_and_excess(plan):
    cost = plan.training.cost_usd
    budget = cost / 2
    d = evaluate(plan, GateLimits(max_cost_usd=budget))
    assert not d.passed
    (v,) = d.violations
    assert v.limit == "max_cost_usd"
    assert v.excess == pytest.approx(cost - budget)
    assert v.excess_fraction == pytest.approx(1.0)
    assert "+100%" in v.message and "max_cost_usd" in v.message
    with pytest.raises(GateRejectedError) as exc:
        enforce(d)
    assert isinstance(exc.value, InfeasibleError) and exc.value.exit_code == 3
    assert "max_cost_usd" in str(exc.value) and exc.value.violations[0].limit == "max_cost_usd"


def test_deadline_and_gpus_together(plan):
    days = plan.training.wall_clock_days
    d = evaluate(plan, GateLimits(deadline_days=days / 4, max_gpus=32))
    assert [v.limit for v in d.violations] == ["deadline_days", "max_gpus"]
    assert d.violations[0].excess_fraction == pytest.approx(3.0)
    assert d.violations[1].excess == pytest.approx(32)
    assert "deadline_days" in d.summary() and "max_gpus" in d.summary()


def test_mfu_floor_uses_the_measurement():
    d = evaluate(None, GateLimits(min_mfu=0.4), measured_mfu=0.3, mfu_source="training record abc")
    (v,) = d.violations
    assert v.limit == "min_mfu" and v.excess == pytest.approx(0.1) and v.excess_fraction == pytest.approx(0.25)
    assert "0.300" in v.message and "abc" in v.message
    assert evaluate(None, GateLimits(min_mfu=0.25), measured_mfu=0.3).passed


def test_missing_mfu_is_a_note_unless_required():
    d = evaluate(None, GateLimits(min_mfu=0.4))
    assert d.passed and any("min_mfu not checked" in n for n in d.notes)
    d = evaluate(None, GateLimits(min_mfu=0.4, require_measured_mfu=True))
    assert not d.passed and d.violations[0].limit == "min_mfu"


def test_does_not_fit_is_a_memory_violation():
    d = evaluate(None, GateLimits(), infeasible_reason="needs 120 GiB per GPU, has 80")
    assert not d.passed and d.violations[0].limit == "memory" and "120 GiB" in d.violations[0].message


@pytest.mark.parametrize("bad", [{"max_cost_usd": -1}, {"deadline_days": 0}, {"min_mfu": 1.5},
                                 {"max_gpus": 0}, {"max_cost_usd": float("inf")}, {"unknown": 1}])
def test_bad_limits_are_rejected(bad):
    with pytest.raises(ValueError):
        GateLimits(**bad)
