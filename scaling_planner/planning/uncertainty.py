"""What the spread of the law's parameters does to the plan: percentile bands over the law's
bootstrap draws (a law fitted with ``--bootstrap`` carries ``samples``; a preset may not).

For each draw k of (E, A, B, α, β): the loss the planned N, D reach, L_k(N, D) (Hoffmann Eq. 2,
the model's ``loss_band``); the compute-optimal N_k(C), D_k(C) at the plan's compute (Hoffmann
Eq. 4); for a target loss L, the compute C_k(L) each draw needs (Besiroglu 2024 closed form), the
share of draws with L_k(N, D) <= L and with C_k(L) <= C, and the plan's wall-clock, GPU-hours
and cost scaled by C_k(L)/C at the plan's layout, GPU count and MFU (first order, not
re-simulated). The training figures also carry the *efficiency* spread of the training estimate
(its P10 / P90, :mod:`scaling_planner.simulate.training.end_to_end`): each law draw is paired with an
efficiency draw (a two-piece log-normal through the estimate's P10, P50 and P90, stratified and
paired by a fixed permutation, so the output is reproducible), and the probabilities of staying
within a dollar, GPU-hour or deadline limit count both spreads. Under a unique-token cap the same
bands come from Muennighoff 2023's L(N, D, U) per draw: each draw's constrained optimum at C (a
scan) and the least compute whose constrained optimum reaches the target (a bisection), over up to
1,000 evenly thinned draws; the plan's data regime (:mod:`.data_regime`) answers both.

numpy loads inside the functions (the package's rule; the law has loaded it already).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Band(BaseModel):
    """Percentiles over the law's parameter draws."""

    p10: float
    p50: float
    p90: float


class Uncertainty(BaseModel):
    """What the spread of the law's parameters does to the plan."""

    draws: int
    compute_flops: Band | None = Field(
        None, description="compute each draw needs to reach the target; a percentile among draws that cannot "
                          "reach it at all is inf (null in JSON)")
    wall_clock_days: Band | None = Field(
        None, description="wall-clock scaled with each draw's compute at the plan's layout, GPUs and MFU")
    gpu_hours: Band | None = None
    cost_usd: Band | None = Field(None, description="cost scaled with each draw's compute at fixed layout and MFU")
    optimal_params: Band
    optimal_tokens: Band
    probability_target_met: float | None = Field(
        None, description="share of draws under which the planned N, D reach the target loss"
    )
    probability_within_budget: float | None = Field(
        None, description="share of draws whose compute-optimal model reaches the target within the planned compute"
    )
    probability_within_budget_usd: float | None = Field(
        None, description="share of (law, efficiency) draws whose training cost stays within budget_usd")
    probability_within_gpu_hours: float | None = Field(
        None, description="share of (law, efficiency) draws whose GPU-hours stay within budget_gpu_hours")
    probability_within_deadline: float | None = Field(
        None, description="share of (law, efficiency) draws whose wall-clock stays within deadline_days")
    scaling_note: str = ""


def band(values, unreachable_is_inf: bool = False) -> Band:
    """p10, p50, p90 of the finite ``values`` (inf when none is finite). With
    ``unreachable_is_inf`` a draw valued +inf (one that cannot reach the target) stays in the
    sample, above every finite value, so a percentile that falls among such draws is inf (``null``
    in JSON, "unreachable" in the table) instead of being dropped: dropping them would quote the band
    of the reachable draws only, too narrow and too cheap."""
    import numpy as np

    from ..base.stats import percentiles

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v) if unreachable_is_inf else np.isfinite(v)]
    p10, p50, p90 = percentiles(v, [10, 50, 90]) if v.size else (np.inf, np.inf, np.inf)
    return Band(p10=float(p10), p50=float(p50), p90=float(p90))


def has_draws(law) -> bool:
    """Whether the law carries the two or more parameter draws a band needs."""
    return law.samples is not None and len(law.samples) >= 2


def loss_band(regime, N: float, D: float) -> Band | None:
    """L(N, D) over the law's draws (L(N, D, U) under a unique-token cap); None without draws."""
    if not has_draws(regime.law):
        return None
    return band(regime.loss_draws(N, D))


def efficiency_draws(k: int, p10_factor: float, p90_factor: float):
    """``k`` log-multipliers of the training estimate's efficiency spread: a two-piece log-normal with
    median 0 whose 10th and 90th percentiles are log(p10_factor) and log(p90_factor), at stratified
    quantiles (j + 0.5)/k in a fixed random order (seed 0), so they pair with the law's draws
    without a correlation and the plan is reproducible."""
    from statistics import NormalDist

    import numpy as np

    from ..simulate.training.end_to_end import two_piece_sigmas

    lo, hi = two_piece_sigmas(p10_factor, p90_factor)
    inv = NormalDist().inv_cdf
    z = np.array([inv((j + 0.5) / k) for j in range(k)])
    z = z[np.random.default_rng(0).permutation(k)]
    return np.where(z < 0, z * lo, z * hi)


def _training_bands(u: dict, training, ratio, limits: dict, unreachable: bool) -> None:
    """Fill ``u`` with the training figures' bands (law ratio x efficiency) and the limit probabilities."""
    import numpy as np

    eff = np.exp(efficiency_draws(len(ratio), training.gpu_hours_p10 / training.gpu_hours,
                                  training.gpu_hours_p90 / training.gpu_hours))
    scale = ratio * eff
    wall, hours, cost = (training.wall_clock_days * scale, training.gpu_hours * scale, training.cost_usd * scale)
    u["wall_clock_days"] = band(wall, unreachable_is_inf=unreachable)
    u["gpu_hours"] = band(hours, unreachable_is_inf=unreachable)
    u["cost_usd"] = band(cost, unreachable_is_inf=unreachable)
    for key, limit, values in (("probability_within_budget_usd", limits.get("budget_usd"), cost),
                               ("probability_within_gpu_hours", limits.get("budget_gpu_hours"), hours),
                               ("probability_within_deadline", limits.get("deadline_days"), wall)):
        if limit is not None:
            u[key] = float(np.mean(values <= limit * (1 + 1e-9)))


def uncertainty_for(regime, objective: str, target_loss: float | None, C: float, N: float, D: float,
                    training, limits: dict | None = None) -> tuple[Uncertainty | None, list[str]]:
    """The plan's :class:`Uncertainty` (module docstring) and its notes; None with a note for a law
    without draws. ``limits``: the request's budget_usd, budget_gpu_hours and deadline_days."""
    import numpy as np

    from .compute import MAX_COMPUTE_FLOPS

    if not has_draws(regime.law):
        return None, [f"law {regime.law.name!r} carries no parameter draws: no uncertainty band"]
    k, n_draws, d_draws, notes = regime.allocation_draws(C)
    u = dict(draws=k, optimal_params=band(n_draws), optimal_tokens=band(d_draws))
    ratio = np.ones(k)
    if objective == "target_loss":
        c_draws = regime.compute_for_loss_draws(target_loss, MAX_COMPUTE_FLOPS)
        reached = regime.reached_draws(N, D) <= target_loss
        u["compute_flops"] = band(c_draws, unreachable_is_inf=True)
        u["probability_target_met"] = float(np.mean(reached))
        u["probability_within_budget"] = float(np.mean(c_draws <= C))
        ratio = c_draws / C
    if training is not None:
        _training_bands(u, training, ratio, limits or {}, objective == "target_loss")
        u["scaling_note"] = (
            ("wall-clock, GPU-hours and cost scale with each draw's compute at the plan's layout, GPU count and "
             "efficiency (a first-order band, not re-simulated), times an efficiency draw"
             if objective == "target_loss" else
             "wall-clock, GPU-hours and cost at the plan's compute: the efficiency spread only")
            + f" ({'prior' if training.efficiency_mode == 'realised' else training.efficiency_mode})")
    return Uncertainty(**u), notes
