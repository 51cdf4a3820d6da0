"""The sweep's recommendation: :func:`scaling_planner.recommend` with the law fitted to every rung, the
time it would take on the sweep's own hardware, and the data-constrained optimum when the plan asks for
more tokens than the corpus holds."""

from __future__ import annotations

import math

import numpy as np

from ..base.errors import InfeasibleError, InputError
from .design import FLOPS_CONVENTION, CorpusSize, Rung, SweepDefinition


def throughput_model(records: list[dict]) -> tuple[float, float] | None:
    """(a, b) of log(tokens/s) = a + b log N fitted over the rungs (least squares), or None."""
    pts = [(r["result"]["params_nonembedding"], r["result"]["mfu"]["tokens_per_s"]) for r in records
           if r["result"].get("mfu") and r["result"]["mfu"].get("tokens_per_s")]
    if len({n for n, _ in pts}) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def recommendation(fit, defn: SweepDefinition, heldout: Rung, records: list[dict],
                   corpus: CorpusSize | None = None) -> dict:
    """:func:`scaling_planner.recommend` with the law fitted to every rung, for the definition's target.

    ``recommend`` sizes budgets of at least 1e18 FLOPs only (its smallest run); a smaller budget is
    passed as the loss it buys on the fitted frontier, L*(C), which gives the same compute-optimal
    allocation. The 90% intervals of N*, D*, D*/N* and L*(C) at the plan's compute come from the
    bootstrap draws (:func:`scaling_planner.laws.fit.derived_quantities`); the time on this machine
    from the rungs' measured tokens/s (a power law in N fitted over the rungs). When the plan's D is more
    than ``max_epochs`` passes over the corpus, the data-constrained optimum for its unique tokens
    (Muennighoff et al. 2023, :class:`~scaling_planner.planning.data_constrained.DataConstrainedMode`)
    is given beside it.
    """
    from ..laws.fit import derived_quantities, interval
    from ..planning.recommend import recommend

    law = fit.law(name="sweep-fit")
    notes = []
    if defn.target_loss is not None:
        kwargs, objective = {"target_loss": defn.target_loss}, {"target_loss": defn.target_loss}
    else:
        C = defn.target_budget_flops or 10 * heldout.compute_flops
        kwargs = objective = {"budget_flops": C}
    try:
        plan = recommend(law, gpu=None, **kwargs)
    except (InputError, InfeasibleError) as exc:
        return {"objective": objective, "error": str(exc), "notes": notes}
    C = plan.compute_flops
    out = {"objective": objective, "law": "fitted to every rung of the sweep (held-out included)",
           "compute_flops": C, "params": plan.model.params, "tokens": plan.model.tokens,
           "tokens_per_param": plan.model.tokens_per_param, "loss": plan.model.loss,
           "params_near_optimal": [plan.model.params_near_optimal_low, plan.model.params_near_optimal_high],
           "plan_uncertainty_p10_p90": plan.uncertainty.model_dump(mode="json") if plan.uncertainty else None,
           "notes": notes + list(plan.notes)}
    if fit.samples is not None and len(fit.samples) >= 2:
        draws = derived_quantities(law.draws(), C)
        out["intervals"] = {k: interval(v, defn.level) for k, v in draws.items()}
        out["interval_level"] = defn.level
    model = throughput_model(records)
    if model is not None:
        a, b = model
        rate = math.exp(a + b * math.log(plan.model.params))
        out["estimated_train_s_here"] = plan.model.tokens / rate
        out["estimated_tokens_per_s_here"] = rate
        out["throughput_model"] = (f"tokens/s = exp({a:.3f}) x N^{b:.3f} over the sweep's rungs "
                                   f"({defn.threads_per_rung} thread(s) each)")
    if corpus is not None and plan.model.tokens > defn.max_epochs * corpus.train_tokens:
        out["data_constrained"] = _data_constrained(law, C, corpus, records)
    out["flops_convention"] = FLOPS_CONVENTION
    return out


def _data_constrained(law, C: float, corpus: CorpusSize, records: list[dict]) -> dict:
    from ..base.errors import PlannerError
    from ..planning.data_constrained import DataConstrainedMode

    U = corpus.train_tokens
    fitted_epochs = max(r["result"]["tokens_seen"] for r in records) / U
    try:
        dc = DataConstrainedMode(law, U)
        N, D = dc.allocate(C)
        loss = float(dc.loss(N, D))
    except PlannerError as exc:
        return {"unique_tokens": U, "error": str(exc)}
    return {"unique_tokens": U, "params": N, "tokens": D, "epochs": D / U, "loss": loss,
            "note": f"the plan asks for more than the corpus holds; the rungs saw at most {fitted_epochs:.1f} epochs. "
                    f"This is the optimum for {U:,} unique tokens under Muennighoff et al. 2023's repeated-data law",
            "notes": dc.notes}
