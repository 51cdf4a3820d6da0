"""The plan under a unique-token cap (``--unique-tokens U``): Muennighoff et al. 2023, "Scaling
Data-Constrained Language Models" (arXiv:2305.16264), via :mod:`scaling_planner.laws.data_constrained`.

When the compute-optimal run would need more tokens than there are unique ones, tokens repeat and
are worth less (effective data D' = U + U·R_D*·(1 − exp(−R_D/R_D*))), and parameters beyond what
the unique data supports decay likewise (N'). The planner then:

* allocates compute by minimising L(N, D, U) on C = 6·N·D (``optimal_allocation``, the
  datablations allocation), instead of Hoffmann's Eq. 4; when D_opt(C) ≤ U the cap does not bind
  and the allocation *is* Hoffmann's (every term of the law reduces to Chinchilla's there);
* for a target loss, finds the least compute whose constrained optimum reaches it (bisection in
  log C; the optimum's loss falls monotonically with C: more compute can always train the same
  model on more tokens). Under a cap the loss has a floor, E + A/(N_opt(U)·(1+R_N*))^α +
  B/(U·(1+R_D*))^β, which no compute passes; a target below it is infeasible;
* reports epochs, D', N', the loss under repetition against the loss the same (N, D) would reach
  on fresh data, the worth of the next repeated token and what one more epoch buys.

Decay constants R_D*, R_N* come from the law (``law.extra``); a law without them (every law but the
Muennighoff C4 fit) borrows the C4 fit's values, and the plan says so: the constants were fitted
together with that law's E, A, B, α, β, so on another law they are an approximation.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from ..base.errors import InfeasibleError, InputError
from .search import bisect_log, bisect_log_each

DECAY_LAW = "muennighoff2023-c4"
BISECTION_STEPS = 80
# the per-draw scans of the uncertainty bands: ±2 decades of N around Hoffmann's N_k
DRAW_SCAN_LOW_DECADES, DRAW_SCAN_DECADES, DRAW_SCAN_POINTS = -2.0, 4.0, 161
DRAW_FINE_POINTS, DRAW_BISECT_FINE_POINTS = 101, 25
MAX_BAND_DRAWS = 1000
DRAW_BISECT_STEPS = 16  # halvings of a decade in ln C: C_k to 4e-5
CHINCHILLA_ALTERNATIVE = "chinchilla allocation (ignores the cap)"
NEAR_OPTIMAL_GRID = 4001  # points of the near-optimal scan over ±2 decades of N (0.1 % apart)


class EpochReturnInfo(BaseModel):
    """What one more epoch (U more tokens at the plan's N) buys."""

    model_config = ConfigDict(defer_build=True)

    loss_decrease: float = Field(description="L(N, D, U) − L(N, D + U, U), > 0 while repeating still helps")
    effective_tokens_gained: float = Field(description="D'(D + U) − D'(D)")
    relative_token_value: float = Field(description="gained / U: a fresh token is worth 1")
    extra_flops: float = Field(description="6·N·U, the compute of that epoch (a count)")


class DataConstrained(BaseModel):
    """The ``data_constrained`` section of a plan."""

    model_config = ConfigDict(defer_build=True)

    unique_tokens: float = Field(description="U: unique tokens available")
    law: str
    R_D_star: float = Field(description="repetitions after which a repeated token has lost 1 − 1/e of its value")
    R_N_star: float = Field(description="the same for excess parameters")
    decay_source: str
    binding: bool = Field(description="True when the compute-optimal run on fresh data would need more than U tokens")
    params: float = Field(description="N of the constrained optimum (the plan's)")
    tokens: float = Field(description="D of the constrained optimum (the plan's)")
    epochs: float = Field(description="D / U")
    effective_tokens: float = Field(description="D' (Muennighoff 2023)")
    effective_params: float = Field(description="N' (Muennighoff 2023)")
    loss: float = Field(description="L(N, D, U): the loss with repeated data")
    unlimited_data_loss: float = Field(description="L(N, D) if all D tokens were fresh (same law)")
    repeated_token_value: float = Field(description="dD'/dD = exp(−R_D/R_D*): worth of the next token vs a fresh one")
    next_epoch: EpochReturnInfo
    loss_floor: float = Field(description="the lowest loss any compute reaches with U unique tokens")
    chinchilla_params: float = Field(description="Hoffmann Eq. 4 N at the same compute (ignores the cap)")
    chinchilla_tokens: float
    chinchilla_epochs: float
    chinchilla_loss: float = Field(description="what the Chinchilla allocation really reaches with U unique tokens")
    chinchilla_unlimited_data_loss: float = Field(description="what it would reach on fresh data")
    notes: list[str] = Field(default_factory=list)


class DataConstrainedMode:
    """The law and the cap; allocation, loss, target-loss compute and the report section (the
    interface of :mod:`.data_regime`, whose other regime is fresh data)."""

    repeats_data = True
    optimum_label = " under the cap"

    def __init__(self, law, unique_tokens: float):
        from dataclasses import replace

        from ..laws.presets import get_law

        self.U = float(unique_tokens)
        if not self.U >= 1.0:
            raise InputError("unique_tokens", f"must be a count of tokens >= 1, got {unique_tokens!r}")
        self.notes: list[str] = []
        if "R_D_star" in law.extra and "R_N_star" in law.extra:
            self.law, self.decay_source = law, f"law {law.name}"
        else:
            ref = get_law(DECAY_LAW)
            extra = {**law.extra, "R_D_star": ref.extra["R_D_star"], "R_N_star": ref.extra["R_N_star"]}
            self.law = replace(law, extra=extra)
            self.decay_source = f"borrowed from {DECAY_LAW} (law {law.name} carries no R_D*, R_N*)"
            self.notes.append(f"data-constrained: decay constants R_D*={extra['R_D_star']:g}, "
                              f"R_N*={extra['R_N_star']:g} {self.decay_source}; they were fitted with that law's "
                              "E, A, B, alpha, beta, so on this law they are an approximation")

    @property
    def plan_description(self) -> str:
        return f"the plan: Muennighoff 2023 allocation of C with {self.U:.3g} unique tokens"

    # -- the law under the cap -------------------------------------------------------------------
    def loss(self, N, D, law=None):
        from ..laws import data_constrained as dcl

        return dcl.loss(N, D, self.U, law if law is not None else self.law)

    def loss_draws(self, N: float, D: float):
        """L(N, D, U) under each of the law's parameter draws (the decay constants held fixed)."""
        return self.loss(N, D, self.law.draws())

    def floor(self) -> float:
        """lim C→∞ of the constrained optimum: E + A/(N_opt(U)·(1+R_N*))^α + B/(U·(1+R_D*))^β."""
        from ..laws import data_constrained as dcl

        lw = self.law
        n_u = float(dcl.params_for_unique_tokens(self.U, lw))
        return float(lw.E + lw.A / (n_u * (1 + lw.extra["R_N_star"])) ** lw.alpha
                     + lw.B / (self.U * (1 + lw.extra["R_D_star"])) ** lw.beta)

    def allocate(self, C: float) -> tuple[float, float]:
        """(N, D) minimising L(N, D, U) on C = 6·N·D; Hoffmann's point exactly when it fits in U."""
        from ..laws import data_constrained as dcl
        from ..laws.chinchilla import optimal_params, optimal_tokens

        d_chin = float(optimal_tokens(self.law, C))
        if d_chin <= self.U:
            return float(optimal_params(self.law, C)), d_chin
        a = dcl.optimal_allocation(C, self.U, self.law)
        return float(a.params), float(a.tokens)

    def optimum_loss(self, C: float) -> float:
        return float(self.loss(*self.allocate(C)))

    def compute_for_loss(self, target_loss: float, max_flops: float) -> float:
        """The least C whose constrained optimum reaches ``target_loss`` (bisection in log C from
        the fresh-data C(L), which is a lower bound: L(N, D, U) ≥ L(N, D) since D' ≤ D, N' ≤ N)."""
        from ..laws.chinchilla import compute_for_loss

        lo = float(compute_for_loss(self.law, target_loss))
        if math.isfinite(lo) and lo <= max_flops and self.optimum_loss(lo) <= target_loss:
            return lo
        if not self.optimum_loss(max_flops) <= target_loss:
            raise InfeasibleError(
                f"target loss {target_loss:g} is out of reach with {self.U:.3g} unique tokens under law "
                f"{self.law.name!r} (Muennighoff 2023): repeated data and excess parameters decay, so no compute "
                f"goes below {self.floor():.4f}; up to {max_flops:.0e} FLOPs the best is "
                f"{self.optimum_loss(max_flops):.4f}. Add unique tokens or choose a target above that")
        return bisect_log(lambda c: self.optimum_loss(c) <= target_loss, math.log(max_flops),
                          math.log(min(lo, max_flops)), BISECTION_STEPS, 1e-10)

    # -- the same over the law's parameter draws (the uncertainty bands) ---------------------------
    def band_draws(self):
        """The draws the bands under the cap use: all of the law's, or every k-th of them down to
        ``MAX_BAND_DRAWS`` (each draw costs a scan per bisection step; the percentiles of 1,000
        evenly thinned bootstrap draws sit within about one percentile rank of all 4,000's). A law of
        K draws with (K,)-shaped parameters; the decay constants R_D*, R_N* stay the law's."""
        from dataclasses import replace

        every = max(1, -(-len(self.law.samples) // MAX_BAND_DRAWS))
        return replace(self.law, samples=self.law.samples[::every]).draws()

    def column_draws(self):
        """:meth:`band_draws` as (K, 1) columns, so that one array op scans every draw against a grid."""
        from dataclasses import replace

        d = self.band_draws()
        return replace(d, **{name: value[:, None] for name, value in d.params.items()})

    def reached_draws(self, N: float, D: float):
        """L(N, D, U) under each of :meth:`band_draws` (compared with a target, draw by draw, with
        :meth:`compute_for_loss_draws`)."""
        return self.loss(N, D, self.band_draws())

    def allocation_draws(self, C: float):
        """(K, N_k, D_k, notes): each of :meth:`band_draws`' constrained optimum at C."""
        k = len(self.band_draws().E)
        n_draws, d_draws = self.allocate_draws(C)
        notes = []
        if k < len(self.law.samples):
            notes.append(f"data-constrained: the bands use {k} of the law's {len(self.law.samples)} draws (evenly "
                         "thinned: each draw's allocation under the cap is a scan, its compute a bisection)")
        return k, n_draws, d_draws, notes

    def allocate_draws(self, C, draws=None, fine_points: int = DRAW_FINE_POINTS):
        """(N_k, D_k): each draw's minimum of L(N, D, U) on C_k = 6·N·D (``C`` a scalar or one value
        per draw), Hoffmann's point where it fits in U as in :meth:`allocate`. A scan of
        ``DRAW_SCAN_POINTS`` points over ±2 decades of N around where the point law's constrained
        optimum sits relative to its Hoffmann N, applied to each draw's Hoffmann N (a scarce cap moves
        the optimum decades away from Hoffmann's: centring on Hoffmann's N missed it), refined by
        ``fine_points`` points between the best point's neighbours: N to 0.1 % (0.4 % with the
        bisection's coarser refinement)."""
        import numpy as np

        from ..laws import data_constrained as dcl
        from ..laws.chinchilla import optimal_params, optimal_tokens

        lw = self.column_draws() if draws is None else draws
        C = np.broadcast_to(np.asarray(C, dtype=float).reshape(-1, 1), lw.E.shape)
        n_chin, d_chin = optimal_params(lw, C), optimal_tokens(lw, C)
        finite = C[np.isfinite(C) & (C > 0)]
        c_ref = float(np.median(finite)) if finite.size else float(C.flat[0])
        shift = math.log(self.allocate(c_ref)[0] / float(optimal_params(self.law, c_ref)))
        step = DRAW_SCAN_DECADES * math.log(10.0) / (DRAW_SCAN_POINTS - 1)
        x = (np.log(n_chin) + shift + DRAW_SCAN_LOW_DECADES * math.log(10.0)
             + step * np.arange(DRAW_SCAN_POINTS))
        best = np.take_along_axis(x, np.argmin(dcl.isoflop_loss(C, np.exp(x), self.U, lw), axis=1)[:, None], 1)
        x = best + step * np.linspace(-1.0, 1.0, fine_points)
        N = np.exp(np.take_along_axis(x, np.argmin(dcl.isoflop_loss(C, np.exp(x), self.U, lw), axis=1)[:, None], 1))
        fits = d_chin <= self.U
        N = np.where(fits, n_chin, N)[:, 0]
        return N, C[:, 0] / (6.0 * N)

    def compute_for_loss_draws(self, target_loss: float, max_flops: float):
        """C_k: the least compute whose constrained optimum reaches ``target_loss`` under draw k, as
        :meth:`compute_for_loss` does for the law (from the fresh-data C_k(L), a lower bound, by
        bisection in log C); inf where draw k cannot reach it within ``max_flops`` (its floor is
        above the target, or L ≤ E_k)."""
        import numpy as np

        from ..laws import data_constrained as dcl
        from ..laws.chinchilla import compute_for_loss

        lw = self.column_draws()
        lo = np.asarray(compute_for_loss(lw, target_loss), dtype=float)[:, 0]  # inf where L <= E_k
        lo = np.where(np.isfinite(lo), np.minimum(lo, max_flops), np.inf)

        def reaches(c):
            n, d = self.allocate_draws(c, lw, DRAW_BISECT_FINE_POINTS)
            return dcl.loss(n[:, None], d[:, None], self.U, lw)[:, 0] <= target_loss

        finite = np.isfinite(lo)
        c_lo = np.where(finite, lo, max_flops)
        done = ~finite | reaches(c_lo)  # the cap does not bind at the fresh-data C_k(L), or unreachable
        # bracket each boundary within a decade above C_k(L), then halve it in ln C
        good = np.full(lo.shape, np.inf)
        bad = c_lo.copy()
        for _ in range(math.ceil(math.log10(max_flops / np.min(c_lo))) if not done.all() else 0):
            trial = np.minimum(bad * 10.0, max_flops)
            open_ = ~done & ~np.isfinite(good)
            ok = open_ & reaches(np.where(open_, trial, c_lo))
            good = np.where(ok, trial, good)
            bad = np.where(open_ & ~ok, trial, bad)
            if not (~done & ~np.isfinite(good) & (bad < max_flops)).any():
                break
        search = ~done & np.isfinite(good)
        c = bisect_log_each(lambda x: reaches(np.where(search, x, c_lo)), np.log(np.where(search, good, c_lo)),
                            np.log(np.where(search, bad, c_lo)), DRAW_BISECT_STEPS)
        return np.where(finite & done, c_lo, np.where(search, c, np.inf))

    def tokens_for_loss_at_params(self, loss: float, N: float) -> float:
        """D with L(N, D, U) = ``loss`` at fixed N (bisection in log D; the loss falls with D since
        D' and N' grow with it); inf when even unlimited repetition does not reach it."""
        lo, hi = math.log(1e3), math.log(1e30)
        if not float(self.loss(N, math.exp(hi))) <= loss:
            return math.inf
        if float(self.loss(N, math.exp(lo))) <= loss:
            return math.exp(lo)
        return bisect_log(lambda d: float(self.loss(N, d)) <= loss, hi, lo, BISECTION_STEPS, 1e-12)

    def near_optimal(self, C: float, N: float, D: float, rel_tol: float) -> tuple[float, float, float]:
        """Smallest and largest N on C = 6·N·D whose L(N, C/6N, U) is within ``rel_tol`` of the
        optimum (a scan of ±2 decades, 0.1 % steps: the constrained curve has kinks, no closed form),
        and the plan's L(N, D, U)."""
        import numpy as np

        from ..laws import data_constrained as dcl

        grid = N * np.exp(np.linspace(-2.0, 2.0, NEAR_OPTIMAL_GRID) * math.log(10.0))
        L = dcl.isoflop_loss(C, grid, self.U, self.law)
        ok = grid[L <= float(self.loss(N, C / (6.0 * N))) * (1.0 + rel_tol)]
        return float(ok.min()), float(ok.max()), float(self.loss(N, D))

    # -- the report and the plots -------------------------------------------------------------------
    def extra_alternatives(self, C: float) -> list[tuple]:
        """Under a binding cap: Hoffmann Eq. 4 at the same C, ignoring the cap (its loss is what it
        reaches with the data repeated)."""
        from ..laws.chinchilla import optimal_params, optimal_tokens

        n_c, d_c = float(optimal_params(self.law, C)), float(optimal_tokens(self.law, C))
        if d_c <= self.U:
            return []
        return [(CHINCHILLA_ALTERNATIVE, "Hoffmann Eq. 4 allocation of the same C, ignoring the unique-token cap: "
                 "its loss is what it reaches with the data repeated", n_c, d_c)]

    def ignored_by(self, what: str, why: str) -> list[str]:
        """The note of a section whose law assumes fresh data."""
        return [f"{what}: {why}"]

    def optimal_params_curve(self, C):
        from ..laws import data_constrained as dcl

        return dcl.optimal_allocation(C, self.U, self.law).params

    def isoflop_loss(self, C, N):
        from ..laws import data_constrained as dcl

        return dcl.isoflop_loss(C, N, self.U, self.law)

    def optimum_loss_curve(self, C):
        """The constrained optimum's loss at each C (the plots' dashed frontier)."""
        from ..laws import data_constrained as dcl

        return dcl.optimal_allocation(C, self.U, self.law).loss

    def section(self, C: float, N: float, D: float) -> DataConstrained:
        from ..laws import data_constrained as dcl
        from ..laws.chinchilla import optimal_params, optimal_tokens

        lw = self.law
        n_c, d_c = float(optimal_params(lw, C)), float(optimal_tokens(lw, C))
        seen = min(self.U, D)
        ret = dcl.marginal_epoch_return(N, D, self.U, lw)
        notes = list(self.notes)
        binding = d_c > self.U
        if not binding:
            notes.append(f"data-constrained: the cap does not bind (the compute-optimal run needs "
                         f"{d_c:.3g} <= {self.U:.3g} unique tokens): the plan is the Chinchilla allocation")
        return DataConstrained(
            unique_tokens=self.U, law=lw.name, R_D_star=float(lw.extra["R_D_star"]),
            R_N_star=float(lw.extra["R_N_star"]), decay_source=self.decay_source, binding=binding,
            params=N, tokens=D, epochs=D / self.U,
            effective_tokens=float(dcl.effective_tokens(D, self.U, law=lw)),
            effective_params=float(dcl.effective_params(N, seen, law=lw)),
            loss=float(self.loss(N, D)), unlimited_data_loss=float(lw.loss(N, D)),
            repeated_token_value=float(dcl.repeated_token_value(D, self.U, law=lw)),
            next_epoch=EpochReturnInfo(loss_decrease=float(ret.loss_decrease),
                                       effective_tokens_gained=float(ret.effective_tokens_gained),
                                       relative_token_value=float(ret.relative_token_value),
                                       extra_flops=float(ret.extra_flops)),
            loss_floor=self.floor(), chinchilla_params=n_c, chinchilla_tokens=d_c, chinchilla_epochs=d_c / self.U,
            chinchilla_loss=float(self.loss(n_c, d_c)), chinchilla_unlimited_data_loss=float(lw.loss(n_c, d_c)),
            notes=notes,
        )
