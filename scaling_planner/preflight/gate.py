"""The pre-flight gate: reject a training job before it spends a GPU-hour.

Given a plan (a :class:`~scaling_planner.planning.recommend.Recommendation` or a simulator
:class:`~scaling_planner.simulate.results.SimulationResult`) and the limits a team sets, the gate says which limits
the job breaks and by how much:

* predicted cost above ``max_cost_usd``;
* predicted wall-clock above ``deadline_days``;
* with ``max_overrun_probability`` p: a chance above p that the cost or the wall-clock overruns its
  limit, read from the estimate's P10 / P50 / P90 (the spread of real end-to-end runs, or of the
  step model for a tuned or measured estimate; :func:`~scaling_planner.simulate.training.end_to_end.probability_above`).
  Without it a limit is broken when the P50 exceeds it. The decision reports both chances either way;
* measured MFU (a real training step on this cluster, from the calibration history or the MFU meter)
  below ``min_mfu``; with ``require_measured_mfu`` a missing measurement is itself a rejection;
* a job that fits in no layout (the simulator's InfeasibleError), or GPUs more than ``max_gpus``.

Pure Python: the Prefect task ``preflight_gate`` (``scaling_planner.tasks``) wraps :func:`enforce`, which
raises :class:`~scaling_planner.base.errors.GateRejectedError` so the flow run ends Failed with the reason.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..base.errors import GateRejectedError


class GateLimits(BaseModel):
    """What a job must stay within; a limit left ``None`` is not checked."""

    model_config = ConfigDict(extra="forbid")

    max_cost_usd: float | None = Field(None, gt=0, description="training cost budget (USD)")
    deadline_days: float | None = Field(None, gt=0, description="wall-clock deadline for training (days)",
                                        json_schema_extra={"cli": {"cli": False}})  # a flow's flag sets the plan's
    min_mfu: float | None = Field(None, gt=0, le=1, description="floor on the measured MFU of a real training step")
    max_gpus: int | None = Field(None, ge=1, description="most devices the job may use")
    require_measured_mfu: bool = Field(False, description="reject when no MFU was measured on this cluster")
    min_measured_share: float = Field(
        0.5, ge=0, le=1, description="reject a measurement of the cluster in which fewer than this share of the "
                                     "devices reported a usable result (one with no usable device is always "
                                     "rejected)")
    max_overrun_probability: float | None = Field(
        None, gt=0, lt=1, description="reject when the chance of overrunning max_cost_usd or deadline_days "
                                      "exceeds this (default: reject when the P50 overruns)")

    @field_validator("max_cost_usd", "deadline_days", "min_mfu", "max_overrun_probability")
    @classmethod
    def _finite(cls, v):
        if v is not None and not math.isfinite(v):
            raise ValueError("must be finite")
        return v


class GateViolation(BaseModel):
    limit: str = Field(description="which limit: max_cost_usd, deadline_days, min_mfu, max_gpus, memory")
    allowed: float | None = None
    predicted: float | None = None
    excess: float | None = Field(None, description="predicted - allowed (min_mfu: allowed - measured)")
    excess_fraction: float | None = Field(None, description="excess / allowed")
    message: str


class GateDecision(BaseModel):
    passed: bool
    violations: list[GateViolation] = Field(default_factory=list)
    checked: list[str] = Field(default_factory=list, description="limits that were checked")
    notes: list[str] = Field(default_factory=list, description="limits that could not be checked, and why")
    cost_usd: float | None = Field(None, description="P50")
    wall_clock_days: float | None = Field(None, description="P50")
    probability_over_budget: float | None = Field(None, description="chance the cost overruns max_cost_usd")
    probability_over_deadline: float | None = Field(None, description="chance the wall-clock overruns deadline_days")
    gpus: int | None = None
    mfu_measured: float | None = None
    mfu_source: str | None = None

    def summary(self) -> str:
        chances = ", ".join(f"P(over {what}) {p:.0%}" for what, p in (("budget", self.probability_over_budget),
                                                                       ("deadline", self.probability_over_deadline))
                            if p is not None)
        chances = f" [{chances}]" if chances else ""
        if self.passed:
            return "pre-flight passed: " + (", ".join(self.checked) if self.checked else "no limits set") + chances
        return "pre-flight rejected: " + "; ".join(v.message for v in self.violations) + chances


def _training_figures(plan) -> tuple[float | None, float | None, int | None]:
    """(cost USD, wall-clock days, GPUs) from a Recommendation or a SimulationResult (P50s)."""
    training = getattr(plan, "training", None)
    if training is None:
        return None, None, None
    return float(training.cost_usd), float(training.wall_clock_days), int(training.gpus)


def _overrun(plan, limit: float, what: str) -> float:
    """The chance that the plan's ``what`` ("cost_usd" or "wall_clock_days") overruns ``limit``."""
    from ..simulate.training.end_to_end import probability_above

    t = plan.training
    return probability_above(limit, getattr(t, what), getattr(t, f"{what}_p10"), getattr(t, f"{what}_p90"))


def _check_limit(limits, name: str, allowed: float, predicted: float, chance: float, what: str, fmt):
    """The violation of one limit, or None: the P50 over it, or with max_overrun_probability, a chance
    of overrunning it above that probability."""
    p = limits.max_overrun_probability
    if p is None:
        return _over(name, allowed, predicted, what, fmt) if predicted > allowed else None
    if chance <= p:
        return None
    v = _over(name, allowed, predicted, what, fmt)
    v.message = (f"P(overrunning {name} {fmt(allowed)}) = {chance:.0%} exceeds max_overrun_probability {p:.0%} "
                 f"({what} P50 {fmt(predicted)})")
    return v


def _over(limit: str, allowed: float, predicted: float, what: str, fmt) -> GateViolation:
    excess = predicted - allowed
    return GateViolation(
        limit=limit, allowed=allowed, predicted=predicted, excess=excess, excess_fraction=excess / allowed,
        message=f"{what} {fmt(predicted)} exceeds {limit} {fmt(allowed)} by {fmt(excess)} ({excess / allowed:+.0%})")


def _usd(x: float) -> str:
    return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"


def _days(x: float) -> str:
    return f"{x:.3g} days" if abs(x) >= 1 else f"{x * 24:.3g} h"


def evaluate(plan=None, limits: GateLimits | None = None, *, measured_mfu: float | None = None,
             mfu_source: str | None = None, infeasible_reason: str | None = None,
             devices_measured: int | None = None, devices_ok: int | None = None) -> GateDecision:
    """Check ``plan`` against ``limits``; ``infeasible_reason`` is the simulator's message when no
    layout fits (then the plan may be None). ``devices_measured`` / ``devices_ok``: the measurement of
    the cluster the job will run on, when there was one (a measurement in which no device, or fewer than
    ``min_measured_share`` of them, reported a usable result is a violation: the cluster is not fit to
    train on, whatever the plan says)."""
    limits = limits or GateLimits()
    violations: list[GateViolation] = []
    checked: list[str] = []
    notes: list[str] = []
    cost, days, gpus = _training_figures(plan) if plan is not None else (None, None, None)

    if devices_measured is not None:
        checked.append("measurement")
        ok = devices_ok or 0
        share = ok / devices_measured if devices_measured else 0.0
        if ok == 0 or share < limits.min_measured_share:
            violations.append(GateViolation(
                limit="measurement", allowed=limits.min_measured_share, predicted=share,
                message=(f"the measurement of the cluster found {ok} of {devices_measured} devices usable"
                         + (" (none: every probe failed or timed out)" if ok == 0 else
                            f", below min_measured_share {limits.min_measured_share:.0%}"))))

    checked.append("memory")
    if infeasible_reason:
        violations.append(GateViolation(limit="memory", message=f"the job does not fit: {infeasible_reason}"))
    elif plan is None or cost is None:
        notes.append("no training estimate (no GPU profile): cost, deadline and memory not checked")

    overrun = {}  # limit -> P(over it)
    for limit, predicted, field, what, fmt in (("max_cost_usd", cost, "cost_usd", "predicted cost", _usd),
                                               ("deadline_days", days, "wall_clock_days", "predicted wall-clock",
                                                _days)):
        allowed = getattr(limits, limit)
        if allowed is None:
            continue
        if predicted is None:
            notes.append(f"{limit} not checked: no {'cost' if field == 'cost_usd' else 'wall-clock'} estimate")
            continue
        checked.append(limit)
        overrun[limit] = _overrun(plan, allowed, field)
        v = _check_limit(limits, limit, allowed, predicted, overrun[limit], what, fmt)
        violations += [v] if v else []
    p_cost, p_days = overrun.get("max_cost_usd"), overrun.get("deadline_days")
    if limits.max_gpus is not None and gpus is not None:
        checked.append("max_gpus")
        if gpus > limits.max_gpus:
            violations.append(_over("max_gpus", float(limits.max_gpus), float(gpus), "planned GPUs",
                                    lambda x: f"{x:.0f}"))
    if limits.min_mfu is not None or limits.require_measured_mfu:
        if measured_mfu is None:
            if limits.require_measured_mfu:
                violations.append(GateViolation(
                    limit="min_mfu", allowed=limits.min_mfu,
                    message="no MFU measured on this cluster and require_measured_mfu is set "
                            "(run the training flow or record one with the MFU meter)"))
            else:
                notes.append("min_mfu not checked: no MFU measured on this cluster")
        elif limits.min_mfu is not None:
            checked.append("min_mfu")
            if measured_mfu < limits.min_mfu:
                short = limits.min_mfu - measured_mfu
                violations.append(GateViolation(
                    limit="min_mfu", allowed=limits.min_mfu, predicted=measured_mfu, excess=short,
                    excess_fraction=short / limits.min_mfu,
                    message=f"measured MFU {measured_mfu:.3f} is below min_mfu {limits.min_mfu:.3f} "
                            f"by {short:.3f} ({-short / limits.min_mfu:+.0%})"
                            + (f" [{mfu_source}]" if mfu_source else "")))
    return GateDecision(passed=not violations, violations=violations, checked=checked, notes=notes,
                        cost_usd=cost, wall_clock_days=days, probability_over_budget=p_cost,
                        probability_over_deadline=p_days, gpus=gpus, mfu_measured=measured_mfu,
                        mfu_source=mfu_source)


def enforce(decision: GateDecision) -> GateDecision:
    """Return the decision when it passed; otherwise raise GateRejectedError naming every broken limit."""
    if not decision.passed:
        raise GateRejectedError(decision.summary(), decision.violations)
    return decision
