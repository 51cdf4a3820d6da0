"""Objective -> plan: ties the scaling laws (and, as they land, the simulators) together.

This first version plans at the level of the law: for a target loss or a FLOP budget it gives the
compute-optimal model (Hoffmann Eq. 4), the near-optimal range of sizes, and the uncertainty the
law's parameter draws imply (P10/P50/P90 and the probability of reaching a target).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from .errors import InputError
from .laws.chinchilla import (
    ChinchillaLaw,
    compute_for_loss,
    frontier_loss,
    loss,
    near_optimal_params_range,
    optimal_params,
    optimal_tokens,
)

NEAR_OPTIMAL_REL_TOL = 0.005  # "within 0.5 % of the minimum loss" (marin issue #4447, reference §4)


class Band(BaseModel):
    """Percentiles over the law's parameter draws."""

    p10: float
    p50: float
    p90: float


class ModelChoice(BaseModel):
    params: float = Field(description="parameters N (all, embeddings included)")
    tokens: float = Field(description="training tokens D")
    tokens_per_param: float
    loss: float = Field(description="predicted final loss L(N, D) under the point law")
    loss_band: Band | None = Field(None, description="L(N, D) over the law's draws")
    params_near_optimal_low: float = Field(description="smallest N within rel_tol of the minimal loss at this compute")
    params_near_optimal_high: float
    near_optimal_rel_tol: float


class LawInfo(BaseModel):
    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str
    draws: int


class Uncertainty(BaseModel):
    """What the spread of the law's parameters does to the plan."""

    draws: int
    compute_flops: Band | None = Field(None, description="compute each draw needs to reach the target")
    optimal_params: Band
    optimal_tokens: Band
    probability_target_met: float | None = Field(
        None, description="share of draws under which the planned N, D reach the target loss"
    )


class Recommendation(BaseModel):
    objective: str
    target_loss: float | None = None
    budget_flops: float | None = None
    compute_flops: float = Field(description="training compute 6·N·D (FLOPs, a count)")
    model: ModelChoice
    law: LawInfo
    uncertainty: Uncertainty | None = None
    notes: list[str] = []


def _band(values) -> Band:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    p10, p50, p90 = np.percentile(v, [10, 50, 90]) if v.size else (np.inf, np.inf, np.inf)
    return Band(p10=float(p10), p50=float(p50), p90=float(p90))


def recommend(
    law: ChinchillaLaw,
    *,
    target_loss: float | None = None,
    budget_flops: float | None = None,
    near_optimal_rel_tol: float = NEAR_OPTIMAL_REL_TOL,
) -> Recommendation:
    """The compute-optimal model for a target loss (cheapest compute that reaches it) or for a
    FLOP budget (lowest loss it buys), with the near-optimal size range and the law's uncertainty."""
    if (target_loss is None) == (budget_flops is None):
        raise InputError("objective", "give exactly one of target_loss or budget_flops")
    if budget_flops is not None and not (np.isfinite(budget_flops) and budget_flops > 0):
        raise InputError("budget_flops", f"must be a positive, finite number of FLOPs, got {budget_flops!r}")
    C = float(compute_for_loss(law, target_loss)) if target_loss is not None else float(budget_flops)
    N, D = float(optimal_params(law, C)), float(optimal_tokens(law, C))
    low, high = near_optimal_params_range(law, C, near_optimal_rel_tol)
    notes = []
    uncertainty = None
    loss_band = None
    if law.samples is not None and len(law.samples) >= 2:
        draws = law.draws()
        predicted = loss(draws, N, D)
        loss_band = _band(predicted)
        uncertainty = Uncertainty(
            draws=len(law.samples),
            compute_flops=_band(compute_for_loss(draws, target_loss)) if target_loss is not None else None,
            optimal_params=_band(optimal_params(draws, C)),
            optimal_tokens=_band(optimal_tokens(draws, C)),
            probability_target_met=float(np.mean(predicted <= target_loss)) if target_loss is not None else None,
        )
    else:
        notes.append(f"law {law.name!r} carries no parameter draws: no uncertainty band")
    return Recommendation(
        objective="target_loss" if target_loss is not None else "budget_flops",
        target_loss=target_loss,
        budget_flops=budget_flops,
        compute_flops=C,
        model=ModelChoice(
            params=N, tokens=D, tokens_per_param=D / N, loss=float(frontier_loss(law, C)), loss_band=loss_band,
            params_near_optimal_low=float(low), params_near_optimal_high=float(high),
            near_optimal_rel_tol=near_optimal_rel_tol,
        ),
        law=LawInfo(name=law.name, source=law.source, draws=0 if law.samples is None else len(law.samples),
                    **{k: float(v) for k, v in law.params.items()}),
        uncertainty=uncertainty,
        notes=notes,
    )
