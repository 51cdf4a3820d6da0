"""The training compute C an objective asks for, and where a compute lands.

- ``target_loss`` L: the minimal compute that reaches L, in closed form
  C(L) = 6·[(A·G^-α + B·G^β)/(L − E)]^((α+β)/(αβ)) with G = (αA/βB)^(1/(α+β)) (Besiroglu 2024,
  from Hoffmann 2022 Eq. 4); under a unique-token cap, the least C whose Muennighoff 2023 optimum
  reaches L (the request's data regime, :mod:`.data_regime`);
- ``budget_flops`` C: C itself;
- ``budget_usd`` X / ``budget_gpu_hours`` H / a fixed cluster's ``deadline_days`` T: the largest C
  whose *simulated* cost / GPU-hours / wall-clock meets the budget, by bisection in log C over the
  simulator (:func:`.search.bisect_log`; cost is not linear in C: MFU, layout and goodput change
  with the model and the cluster).

A compute C lands (:class:`Placer`) as N, D = the data regime's allocation (Hoffmann Eq. 4, or the
data-constrained optimum) on the request's GPUs, or on the count :func:`.training.choose_gpus` picks: the
smallest power-of-two multiple of a node that finishes within the target days.

The planner sizes runs between :data:`MIN_COMPUTE_FLOPS` and :data:`MAX_COMPUTE_FLOPS`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..base.errors import InfeasibleError, InputError
from ..laws.chinchilla import optimal_params
from .search import bisect_log
from .training import choose_gpus, node_size

MIN_COMPUTE_FLOPS = 1e18  # the smallest run the planner sizes (~70M params on ~2B tokens)
MAX_COMPUTE_FLOPS = 1e29  # the largest (far beyond any run to date)
MIN_LAW_PARAMS = 1e3  # at law level (no GPU profile), the smallest model planned: a thousand parameters
BISECTION_STEPS = 40  # log C halvings: ln(1e11)/2^40 ~ 2e-11 relative, far below the simulator's resolution
BISECTION_TOL_LOG = 1e-6  # stop once the bracket is this narrow in ln C (0.0001 % of C)

# simulated objective -> (its request field, what the simulator measures, the unit, that measure of a simulation)
SIMULATED_BUDGETS = {
    "budget_usd": ("budget_usd", "cost", "USD", lambda r: r.training.cost_usd),
    "budget_gpu_hours": ("budget_gpu_hours", "GPU-hours", "GPU-hours", lambda r: r.training.gpu_hours),
    "deadline": ("deadline_days", "wall-clock", "days", lambda r: r.training.wall_clock_days),
}


class Placement(NamedTuple):
    """Where a compute lands: the model, the GPU count and its simulation (None: fits on nothing)."""

    params: float
    tokens: float
    gpus: int | None
    result: object
    gpus_source: str = ""  # '--gpus' or how the count was chosen
    in_time: bool = True  # False: no count considered finishes within the target days (the largest is used)


class Placer:
    """Places compute C: (N, D) by the data regime's allocation, simulated on ``gpus`` or on the count
    :func:`~.training.choose_gpus` picks for ``target_days``."""

    def __init__(self, regime, sim, gpus: int | None, target_days: float):
        self.regime, self.sim, self.gpus, self.target_days = regime, sim, gpus, target_days

    def place(self, C: float) -> Placement:
        N, D = self.regime.allocate(C)
        if self.gpus is not None:
            return Placement(N, D, self.gpus, self.sim(N, D, self.gpus), "--gpus")
        try:
            G, r, met = choose_gpus(self.sim, N, D, self.target_days)
        except InfeasibleError:
            return Placement(N, D, None, None, "")
        how = (f"chosen: the smallest power-of-two multiple of a {node_size(self.sim.profile)}-GPU node that "
               f"finishes within {self.target_days:g} days"
               + ("" if met else f" (none up to {G} GPUs does; the largest is used)"))
        return Placement(N, D, G, r, how, met)


def compute_for_objective(request, regime, placer: Placer | None) -> tuple[float, list[str]]:
    """(C, notes) for the objective of a validated :class:`~.request.PlanRequest` (module
    docstring). Raises InputError for a target out of the law's reach or above what the smallest
    run already reaches, InfeasibleError for a target beyond MAX_COMPUTE_FLOPS or a budget below
    the smallest run (:func:`smallest_compute`)."""
    sized = placer is not None and placer.sim is not None
    if request.objective == "target_loss":
        C = regime.compute_for_loss(request.target_loss, MAX_COMPUTE_FLOPS)
        floor = smallest_compute(regime.law, sized)
        if not C >= floor:
            from ..laws.chinchilla import frontier_loss

            raise InputError(
                "target_loss", f"{request.target_loss:g} is above what the smallest run the planner sizes already "
                f"reaches ({float(frontier_loss(regime.law, floor)):.4f} at {floor:.3g} FLOPs, "
                f"{_params_text(regime.law, floor)}); choose a lower target")
        return C, []
    if request.objective == "budget_flops":
        return checked_flops_budget(regime.law, request.budget_flops, sized), []
    return compute_within_simulated_budget(request, placer)


def smallest_compute(law, sized: bool) -> float:
    """The least compute the planner plans: :data:`MIN_COMPUTE_FLOPS` for a run sized on hardware; at
    law level (no GPU profile: a sweep's small ladder, a what-if), the compute whose optimal model has
    :data:`MIN_LAW_PARAMS` parameters (below that there is no model to speak of)."""
    if sized:
        return MIN_COMPUTE_FLOPS
    from ..laws.chinchilla import compute_for_params

    return float(compute_for_params(law, MIN_LAW_PARAMS))


def _params_text(law, C: float) -> str:
    n = float(optimal_params(law, C))
    return f"{n / 1e6:.0f}M params" if n >= 1e6 else f"{n:.3g} params"


def checked_flops_budget(law, budget_flops: float, sized: bool = True) -> float:
    """``budget_flops`` itself, or InfeasibleError when it is below :func:`smallest_compute`."""
    floor = smallest_compute(law, sized)
    if budget_flops < floor:
        raise InfeasibleError(
            f"budget_flops {budget_flops:.4g} FLOPs is too small for any model: the smallest run the planner "
            f"sizes needs {floor:.3g} FLOPs ({_params_text(law, floor)}); give at least that")
    return budget_flops


def compute_within_simulated_budget(request, placer: Placer) -> tuple[float, list[str]]:
    """The largest C in [MIN, MAX] whose simulated cost / GPU-hours / wall-clock is <= the budget,
    by bisection in log C, and the note that says so.

    A C whose model fits on nothing counts as over budget. Raises InfeasibleError with the smallest
    budget that works when even MIN_COMPUTE_FLOPS is over it.
    """
    field, what, unit, measure = SIMULATED_BUDGETS[request.objective]
    budget = getattr(request, field)

    def value(C):
        r = placer.place(C).result
        return math.inf if r is None else float(measure(r))

    lo_val = value(MIN_COMPUTE_FLOPS)
    if not lo_val <= budget:
        profile = placer.sim.profile
        where = f"{request.gpus} x {profile.name}" if request.gpus is not None else profile.name
        if math.isinf(lo_val):
            raise InfeasibleError(f"even the smallest run ({MIN_COMPUTE_FLOPS:.0e} FLOPs) fits on no layout of {where}")
        raise InfeasibleError(
            f"{request.objective} {budget:.4g} {unit} is too small for any model: the smallest run the planner "
            f"sizes ({MIN_COMPUTE_FLOPS:.0e} FLOPs, {float(placer.place(MIN_COMPUTE_FLOPS).params) / 1e6:.0f}M "
            f"params) needs {lo_val:.4g} {unit} on {where}; give at least that")
    if value(MAX_COMPUTE_FLOPS) <= budget:
        C = MAX_COMPUTE_FLOPS
    else:
        C = bisect_log(lambda c: value(c) <= budget, math.log(MIN_COMPUTE_FLOPS), math.log(MAX_COMPUTE_FLOPS),
                       BISECTION_STEPS, BISECTION_TOL_LOG)
    return C, [f"compute found by bisection in log C over the simulator so that the simulated {what} meets the "
               f"budget ({placer.sim.calls} simulations)"]
