"""The data regime a plan is made under: the one interface the planner asks for allocations,
losses and the compute a target loss needs, so that no planning step selects a law by hand.

Two regimes implement it:

* :class:`FreshData` -- every token is new: Hoffmann et al. 2022, Eq. 2 (the loss), Eq. 4 (the
  allocation) and the closed-form compute for a loss (Besiroglu et al. 2024);
* :class:`~.data_constrained.DataConstrainedMode` -- at most U unique tokens, repeated:
  Muennighoff et al. 2023's L(N, D, U).

A new regime (a law family with its own allocation) is one class with the methods below; pick it in
:func:`data_regime`.

``allocate(C)``, ``loss(N, D)``, ``compute_for_loss(L, max_flops)``, ``tokens_for_loss_at_params(L, N)``,
``near_optimal(C, N, D, rel_tol)`` (range of N and the plan's loss), the bootstrap-draw versions
``loss_draws``, ``allocation_draws``, ``compute_for_loss_draws``, ``reached_draws``; for the report
``section(C, N, D)`` (None for fresh data), ``plan_description``, ``repeats_data``,
``extra_alternatives(C)``, ``ignored_by(what, why)`` (the notes of a section whose law assumes fresh
data); for the plots ``optimal_params_curve(C)``, ``isoflop_loss(C, N)`` and ``optimum_label``.
"""

from __future__ import annotations

import math

from ..base.errors import InfeasibleError, InputError

# the near-optimal range's bisection: halvings of the ±60 (log N) bracket: 120/2^64 ~ 7e-18, below double precision
NEAR_OPTIMAL_BISECTIONS = 64


class FreshData:
    """Unlimited fresh data: Hoffmann 2022 Eq. 2 and Eq. 4 (see the module docstring)."""

    repeats_data = False
    plan_description = "the plan: Hoffmann Eq. 4 allocation of C"
    optimum_label = " (Hoffmann Eq. 4)"

    def __init__(self, law):
        self.law = law
        self.notes: list[str] = []

    def loss(self, N, D):
        """L(N, D) = E + A/N^α + B/D^β (Hoffmann Eq. 2)."""
        from ..laws.chinchilla import loss

        return loss(self.law, N, D)

    def allocate(self, C: float) -> tuple[float, float]:
        """(N_opt, D_opt) of Hoffmann Eq. 4."""
        from ..laws.chinchilla import optimal_params, optimal_tokens

        return float(optimal_params(self.law, C)), float(optimal_tokens(self.law, C))

    def compute_for_loss(self, target_loss: float, max_flops: float) -> float:
        """C(L) in closed form (Besiroglu 2024). InputError when L <= E (out of the law's reach),
        InfeasibleError when C(L) > ``max_flops``."""
        from ..laws.chinchilla import compute_for_loss, frontier_loss

        C = float(compute_for_loss(self.law, target_loss))
        if not math.isfinite(C):
            raise InputError("target_loss", f"{target_loss:g} is out of reach of law {self.law.name!r}")
        if C > max_flops:
            raise InfeasibleError(
                f"target loss {target_loss:g} needs {C:.3g} FLOPs under law {self.law.name!r}, beyond the "
                f"{max_flops:.0e} FLOPs the planner sizes; the lowest target in range is "
                f"{float(frontier_loss(self.law, max_flops)):.4f}")
        return C

    def tokens_for_loss_at_params(self, loss: float, N: float) -> float:
        """D with L(N, D) = ``loss`` (Eq. 2 solved for D); inf where N alone cannot reach it."""
        from ..laws.chinchilla import tokens_for_loss_at_params

        return float(tokens_for_loss_at_params(self.law, loss, N))

    def near_optimal(self, C: float, N: float, D: float, rel_tol: float) -> tuple[float, float, float]:
        """The smallest and largest N whose loss at C is within ``rel_tol`` of L*(C), and L*(C)."""
        from ..laws.chinchilla import frontier_loss, near_optimal_params_range

        low, high = near_optimal_params_range(self.law, C, rel_tol, iterations=NEAR_OPTIMAL_BISECTIONS)
        return low, high, float(frontier_loss(self.law, C))

    # -- over the law's bootstrap draws ------------------------------------------------------------
    def loss_draws(self, N: float, D: float):
        """L(N, D) under each of the law's draws."""
        from ..laws.chinchilla import loss

        return loss(self.law.draws(), N, D)

    reached_draws = loss_draws

    def allocation_draws(self, C: float):
        """(K, N_k, D_k, notes): every draw's Hoffmann Eq. 4 allocation of C."""
        from ..laws.chinchilla import optimal_params, optimal_tokens

        draws = self.law.draws()
        return len(self.law.samples), optimal_params(draws, C), optimal_tokens(draws, C), []

    def compute_for_loss_draws(self, target_loss: float, max_flops: float):
        """C_k(L) per draw in closed form; inf where L <= E_k."""
        import numpy as np

        from ..laws.chinchilla import compute_for_loss

        return np.asarray(compute_for_loss(self.law.draws(), target_loss), dtype=float)

    # -- the report and the plots ---------------------------------------------------------------------
    def section(self, C: float, N: float, D: float):
        return None

    def extra_alternatives(self, C: float) -> list[tuple]:
        return []

    def ignored_by(self, what: str, why: str) -> list[str]:
        return []

    def optimal_params_curve(self, C):
        from ..laws.chinchilla import optimal_params

        return optimal_params(self.law, C)

    def isoflop_loss(self, C, N):
        from ..laws.chinchilla import isoflop_loss

        return isoflop_loss(self.law, C, N)


def data_regime(law, unique_tokens: float | None):
    """The regime of a request: :class:`FreshData`, or under a unique-token cap
    :class:`~.data_constrained.DataConstrainedMode`."""
    if unique_tokens is None:
        return FreshData(law)
    from .data_constrained import DataConstrainedMode

    return DataConstrainedMode(law, unique_tokens)


def data_regime_of_plan(plan, law):
    """The regime a finished plan was made under (its ``data_constrained`` section's cap and decay
    constants), for the plots that redraw its curves."""
    section = getattr(plan, "data_constrained", None)
    if section is None:
        return FreshData(law)
    from dataclasses import replace

    from .data_constrained import DataConstrainedMode

    return DataConstrainedMode(replace(law, extra={**law.extra, "R_D_star": section.R_D_star,
                                                   "R_N_star": section.R_N_star}, samples=None),
                               section.unique_tokens)
