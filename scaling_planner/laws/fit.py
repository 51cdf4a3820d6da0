"""Fit the Chinchilla law L = E + A/N^alpha + B/D^beta to a user's runs (N, D, loss).

The procedure is Hoffmann et al. 2022's Approach 3 as replicated by Besiroglu et al. 2024
(arXiv:2404.10102, Epoch's ``data_analysis.ipynb``):

* model in log space, log L̂ = LSE(a − α·log N, b − β·log D, e) with A = e^a, B = e^b, E = e^e;
* objective: Huber loss with delta = 1e-3 on the residual log L − log L̂, **summed** over runs
  (the mean makes L-BFGS-B stop at its start: Besiroglu et al. 2024 §3, marin PR #749);
* starts: the full Hoffmann grid, alpha, beta ∈ {0, .5, 1, 1.5, 2}, e ∈ {−1, −.5, 0, .5, 1},
  a, b ∈ {0, 5, ..., 25}: 4500 starts; the best converged start wins.

All 4500 starts run at once in :func:`~scaling_planner.laws.batched_bfgs.minimize_batched` with the
analytic gradient below, and a bootstrap over runs fits all its replicates at once too, as
multinomial weights on the same runs.

Options users ask for: tied exponents (alpha = beta, as Muennighoff 2023 and for runs that span
too little to separate the exponents); the asymmetric "lower envelope" loss that penalises
over-predictions (under-tuned runs lie above the envelope; OLMo-core PR #554 uses a penalty of 10);
Epoch's outlier rule (drop the K highest-loss runs); convergence diagnostics; a warning when the
runs cannot identify the law.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..base.errors import InputError
from .batched_bfgs import minimize_batched
from .chinchilla import ChinchillaLaw, frontier_loss, optimal_params, optimal_tokens
from .runs import Runs

HUBER_DELTA = 1e-3
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
BOOTSTRAP_MEMORY_BYTES = 4 * 2**30  # the most working memory a bootstrap may take (also <= half the RAM)


# -- objective ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Objective:
    """Summed (weighted) Huber loss on log-loss residuals, with its analytic gradient.

    theta columns are (e, a, b, alpha, beta) in the full model; with tied exponents the optimiser
    sees (e, a, b, alpha) and beta = alpha. ``weights`` has shape (n,) or (K, n) (bootstrap counts).
    ``overestimate_penalty`` > 1 multiplies the loss of runs the law over-predicts (residual < 0).
    """

    logN: np.ndarray
    logD: np.ndarray
    logL: np.ndarray
    weights: np.ndarray
    delta: float = HUBER_DELTA
    tied: bool = False
    overestimate_penalty: float = 1.0
    centre_N: float = 0.0  # the mean of log N subtracted from logN (0: not centred)
    centre_D: float = 0.0

    def full(self, theta: np.ndarray) -> np.ndarray:
        """(K, 5) parameters (e, a, b, alpha, beta) from the optimiser's vector."""
        return np.column_stack([theta, theta[:, 3]]) if self.tied else theta

    def __call__(self, theta: np.ndarray, rows: np.ndarray):
        th = self.full(theta)
        f = np.empty(th.shape[0])
        g = np.empty((th.shape[0], 5))
        # Blocks of ~32k residuals keep the temporaries in cache: about 3x faster than one big array.
        step = max(1, 32768 // self.logN.size)
        for lo in range(0, th.shape[0], step):
            hi = min(lo + step, th.shape[0])
            w = self.weights if self.weights.ndim == 1 else self.weights[rows[lo:hi]]
            f[lo:hi], g[lo:hi] = self._block(th[lo:hi], w)
        if self.tied:
            g = np.column_stack([g[:, :3], g[:, 3] + g[:, 4]])
        return f, g

    def _block(self, th: np.ndarray, w: np.ndarray):
        """Objective and gradient for a block of parameter rows (e, a, b, alpha, beta).

        Written as few passes over the (rows x runs) arrays as possible (matrix products for the
        exponents and the gradient sums, in-place updates). Overflow of a far-away trial point
        gives inf or nan, which the line search rejects.
        """
        X_N, X_D = self._design()
        E = np.exp(th[:, 0])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            t1 = np.exp(th[:, [1, 3]] @ X_N)  # A / N^alpha: exp(a - alpha·log N)
            t2 = np.exp(th[:, [2, 4]] @ X_D)  # B / D^beta
            pred = t1 + t2
            pred += E[:, None]
            r = np.log(pred)
            np.subtract(self.logL, r, out=r)  # residual log L - log L_hat
            psi = np.clip(r, -self.delta, self.delta)  # d huber / d r
            if self.overestimate_penalty != 1.0:
                psi *= np.where(r < 0, self.overestimate_penalty, 1.0)
                huber = psi * (r - 0.5 * np.clip(r, -self.delta, self.delta))
            else:  # huber = psi·r - psi²/2: r²/2 inside [-delta, delta], delta(|r| - delta/2) outside
                huber = None
            if not (w.ndim == 1 and np.all(w == 1.0)):
                psi *= w
                if huber is not None:
                    huber *= w
            if huber is None:
                clipped = psi if w.ndim == 1 and np.all(w == 1.0) else np.clip(r, -self.delta, self.delta)
                f = np.einsum("ij,ij->i", psi, r) - 0.5 * np.einsum("ij,ij->i", psi, clipped)
            else:
                f = huber.sum(axis=1)
            np.divide(psi, pred, out=psi)  # q = minus d f / d pred
            q = psi
            t1 *= q
            t2 *= q
            g1 = t1 @ X_N.T  # (sum q·t1, -sum q·t1·log N)
            g2 = t2 @ X_D.T
            grad = np.column_stack([-q.sum(axis=1) * E, -g1[:, 0], -g2[:, 0], -g1[:, 1], -g2[:, 1]])
        return f, grad

    def _design(self):
        """Rows (1, -log N) and (1, -log D): exponent = (a, alpha) @ X_N."""
        cached = self.__dict__.get("_X")
        if cached is None:
            ones = np.ones_like(self.logN)
            cached = (np.vstack([ones, -self.logN]), np.vstack([ones, -self.logD]))
            object.__setattr__(self, "_X", cached)
        return cached

    # Centring log N and log D decorrelates (a, alpha) and (b, beta): with a_c = a - alpha·mean(log N)
    # the optimiser sees a well-conditioned problem and needs far fewer iterations. Same optimum.
    def to_centred(self, theta: np.ndarray) -> np.ndarray:
        out = np.array(theta, dtype=float, copy=True)
        out[:, 1] -= out[:, 3] * self.centre_N
        out[:, 2] -= out[:, 3 if self.tied else 4] * self.centre_D
        return out

    def from_centred(self, theta: np.ndarray) -> np.ndarray:
        out = np.array(theta, dtype=float, copy=True)
        out[:, 1] += out[:, 3] * self.centre_N
        out[:, 2] += out[:, 3 if self.tied else 4] * self.centre_D
        return out


def make_objective(runs: Runs, weights, *, delta=HUBER_DELTA, tied=False, overestimate_penalty=1.0) -> Objective:
    """The objective over ``runs`` in centred coordinates (see :meth:`Objective.to_centred`)."""
    logN, logD = np.log(runs.N), np.log(runs.D)
    cN, cD = float(logN.mean()), float(logD.mean())
    return Objective(logN - cN, logD - cD, np.log(runs.loss), np.asarray(weights, dtype=float), delta, tied,
                     overestimate_penalty, cN, cD)


def hoffmann_grid(tied: bool = False) -> np.ndarray:
    """The 4500-start grid of Hoffmann et al. 2022 (Epoch cell 18), columns (e, a, b, alpha, beta).

    With tied exponents the alpha = beta starts of the same grid remain (900 starts).
    """
    exps = np.arange(0.0, 2.01, 0.5)
    es = np.arange(-1.0, 1.01, 0.5)
    abs_ = np.arange(0.0, 25.01, 5.0)
    e, a, b, alpha, beta = np.meshgrid(es, abs_, abs_, exps, exps, indexing="ij")
    grid = np.column_stack([m.ravel() for m in (e, a, b, alpha, beta)])
    if tied:
        grid = grid[grid[:, 3] == grid[:, 4]][:, :4]
    return grid


def _to_natural(theta_full: np.ndarray) -> np.ndarray:
    """(e, a, b, alpha, beta) -> (E, A, B, alpha, beta)."""
    out = np.array(theta_full, dtype=float, copy=True)
    with np.errstate(over="ignore"):
        out[..., :3] = np.exp(out[..., :3])
    return out


def _to_log(params: np.ndarray) -> np.ndarray:
    out = np.array(params, dtype=float, copy=True)
    out[..., :3] = np.log(out[..., :3])
    return out


# -- result ------------------------------------------------------------------------------------------

@dataclass
class FitResult:
    """A fitted law with diagnostics and, after :func:`bootstrap`, parameter draws and intervals."""

    params: dict[str, float]
    objective: float
    n_runs: int
    loss_function: str
    tied: bool
    overestimate_penalty: float
    starts: int
    converged_starts: int
    agreeing_starts: int
    grad_norm: float
    iterations: int
    warnings: list[str]
    source: str = ""
    dropped_rows: list[int] = field(default_factory=list)
    samples: np.ndarray | None = None  # (K, 5) bootstrap draws (E, A, B, alpha, beta)
    bootstrap_seed: int | None = None
    bootstrap_failed: int = 0

    def law(self, name: str = "fit") -> ChinchillaLaw:
        return ChinchillaLaw(name=name, source=f"fitted to {self.source or 'runs'}", samples=self.samples,
                             **self.params)


def _identification_warnings(runs: Runs, tied: bool) -> list[str]:
    """Warn when the runs cannot pin down both exponents (minimind issue #786, reference §4)."""
    out = []
    logN, logD = np.log10(runs.N), np.log10(runs.D)
    span_N, span_D = float(np.ptp(logN)), float(np.ptp(logD))
    if span_N < 1.0:
        out.append(f"runs span only {span_N:.2f} decades of N (< 1): alpha and A are poorly identified")
    if span_D < 1.0:
        out.append(f"runs span only {span_D:.2f} decades of D (< 1): beta and B are poorly identified")
    if runs.N.size >= 3 and span_N > 0 and span_D > 0 and not tied:
        corr = float(np.corrcoef(logN, logD)[0, 1])
        if abs(corr) > 0.98:
            out.append(
                f"log N and log D are almost collinear (correlation {corr:.3f}, e.g. a fixed tokens per "
                "parameter): alpha and beta cannot be separated; use tied exponents or add runs off that line"
            )
    if len({round(v, 6) for v in logN}) < 3:
        out.append("fewer than 3 distinct model sizes: the N term is barely constrained")
    return out


def _check_runs(runs: Runs, tied: bool) -> None:
    n_params = 4 if tied else 5
    if len(runs) < n_params + 1:
        raise InputError(
            "runs", f"{len(runs)} runs for {n_params} parameters; need at least {n_params + 1} runs to fit"
        )


def fit_law(
    runs: Runs,
    *,
    tied: bool = False,
    loss_function: str = "huber",
    overestimate_penalty: float = 10.0,
    delta: float = HUBER_DELTA,
    starts: np.ndarray | None = None,
    max_iter: int = 400,
) -> FitResult:
    """Fit E, A, B, alpha, beta from the full Hoffmann grid of starts, all at once.

    ``loss_function`` is ``huber`` (Hoffmann/Epoch) or ``asymmetric`` (lower envelope: residuals
    where the law over-predicts count ``overestimate_penalty`` times).
    """
    if loss_function not in ("huber", "asymmetric"):
        raise InputError("loss", f"must be 'huber' or 'asymmetric', got {loss_function!r}")
    if not (delta > 0):
        raise InputError("huber_delta", f"must be > 0, got {delta!r}")
    if loss_function == "asymmetric" and not (overestimate_penalty >= 1):
        raise InputError("overestimate_penalty", f"must be >= 1, got {overestimate_penalty!r}")
    _check_runs(runs, tied)
    objective = make_objective(
        runs, np.ones(len(runs)), delta=delta, tied=tied,
        overestimate_penalty=overestimate_penalty if loss_function == "asymmetric" else 1.0,
    )
    x0 = hoffmann_grid(tied) if starts is None else np.asarray(starts, dtype=float)
    # Every start to a gradient norm of 1e-6 (7 significant digits of the parameters here), then the
    # winner polished to 1e-10: the same answer as running all starts to 1e-10, at half the cost.
    res = minimize_batched(objective, objective.to_centred(x0), max_iter=max_iter, gtol=1e-6)
    ok = res.converged & np.isfinite(res.f)
    if not ok.any():
        ok = np.isfinite(res.f)
    best = int(np.flatnonzero(ok)[np.argmin(res.f[ok])])
    polish = minimize_batched(objective, res.x[best : best + 1], max_iter=1000, gtol=1e-10)
    if polish.f[0] <= res.f[best]:
        res.x[best], res.f[best], res.grad_norm[best] = polish.x[0], polish.f[0], polish.grad_norm[0]
        res.iterations[best] += polish.iterations[0]
    res.x = objective.from_centred(res.x)
    best_full = objective.full(res.x[best : best + 1])[0]
    # Starts that found the same optimum: objective within 1e-9 relative and parameters within 1e-3.
    all_full = objective.full(res.x)
    same_f = np.abs(res.f - res.f[best]) <= 1e-7 * abs(res.f[best])
    same_x = np.max(np.abs(all_full - best_full), axis=1) < 1e-3
    natural = _to_natural(best_full)
    warnings = _identification_warnings(runs, tied)
    if not np.all(np.isfinite(natural)):
        warnings.append("the best fit has an infinite parameter: the runs do not identify the law")
    if res.grad_norm[best] > 1e-6:
        warnings.append(f"best start stopped with gradient norm {res.grad_norm[best]:.2e}; the optimum may be inexact")
    return FitResult(
        params=dict(zip(PARAM_NAMES, map(float, natural), strict=True)),
        objective=float(res.f[best]),
        n_runs=len(runs),
        loss_function=loss_function,
        tied=tied,
        overestimate_penalty=objective.overestimate_penalty,
        starts=int(x0.shape[0]),
        converged_starts=int(res.converged.sum()),
        agreeing_starts=int(np.sum(ok & same_f & same_x)),  # within 1e-7 in f, 1e-3 in log-parameters
        grad_norm=float(res.grad_norm[best]),
        iterations=int(res.iterations[best]),
        warnings=warnings,
        source=runs.source,
        dropped_rows=list(runs.dropped_rows),
    )


def bootstrap_bytes(n_runs: int, replicates: int, *, tied: bool = False) -> float:
    """Peak working memory of :func:`bootstrap` in bytes: per replicate its multinomial counts (int64,
    then the float weights: 2 x n runs x 8 bytes) and the batched BFGS state (the p x p inverse
    Hessians with their copies and updates, ~6 p^2, and ~20 vectors of p), p = 4 or 5 parameters.
    An upper bound: measured 4.3 KB per replicate for 245 runs, where this says 5.9 KB."""
    p = 4 if tied else 5
    return 8.0 * float(replicates) * (2 * n_runs + 6 * p * p + 20 * p)


def bootstrap_memory_budget_bytes() -> float:
    """The memory a bootstrap may use: :data:`BOOTSTRAP_MEMORY_BYTES`, or half the RAM when that is less."""
    import os

    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        ram = 0
    return float(min(BOOTSTRAP_MEMORY_BYTES, ram / 2) if ram > 0 else BOOTSTRAP_MEMORY_BYTES)


def max_bootstrap_replicates(n_runs: int, *, tied: bool = False, budget_bytes: float | None = None) -> int:
    """The most replicates whose :func:`bootstrap_bytes` fit in ``budget_bytes`` (default: the budget)."""
    budget = bootstrap_memory_budget_bytes() if budget_bytes is None else float(budget_bytes)
    return int(budget // bootstrap_bytes(n_runs, 1, tied=tied))


def check_bootstrap(n_runs: int, replicates, *, tied: bool = False, budget_bytes: float | None = None) -> int:
    """``replicates`` as an int, or InputError: fewer than 2, not whole, or more than fit in memory (the
    message gives the largest count that fits)."""
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)):
        raise InputError("bootstrap", f"must be a whole number of replicates, got {replicates!r}")
    if replicates < 2:
        raise InputError("bootstrap", f"needs at least 2 replicates, got {replicates}")
    budget = bootstrap_memory_budget_bytes() if budget_bytes is None else float(budget_bytes)
    most = max_bootstrap_replicates(n_runs, tied=tied, budget_bytes=budget)
    if replicates > most:
        need = bootstrap_bytes(n_runs, replicates, tied=tied)
        raise InputError("bootstrap", f"{replicates:,} replicates of {n_runs} runs need about {need / 2**30:.3g} GiB "
                         f"of memory; at most {most:,} fit in the {budget / 2**30:.3g} GiB a bootstrap may use "
                         "(1000-4000 replicates are plenty for 95% intervals)")
    return int(replicates)


def bootstrap(
    runs: Runs,
    fit: FitResult,
    replicates: int = 1000,
    *,
    seed: int = 42,
    max_iter: int = 400,
) -> FitResult:
    """Refit on ``replicates`` resamples of the runs (with replacement) and attach the draws.

    All replicates are fitted at once: a resample is a vector of multinomial counts used as weights
    on the same runs, and every replicate starts from the full-data optimum (Epoch used one BFGS
    start per replicate from Hoffmann's values; a start at the optimum converges faster and to the
    same basin). Replicates that fail to converge are dropped and counted in ``bootstrap_failed``.
    """
    check_bootstrap(len(runs), replicates, tied=fit.tied)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError("seed", f"must be a whole number >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    n = len(runs)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=int(replicates)).astype(float)
    objective = make_objective(runs, counts, tied=fit.tied, overestimate_penalty=fit.overestimate_penalty)
    start = _to_log(np.array([fit.params[k] for k in PARAM_NAMES]))
    if fit.tied:
        start = start[:4]
    x0 = np.broadcast_to(start, (int(replicates), start.size)).copy()
    res = minimize_batched(objective, objective.to_centred(x0), max_iter=max_iter)
    res.x = objective.from_centred(res.x)
    ok = res.converged & np.isfinite(res.f)
    samples = _to_natural(objective.full(res.x[ok]))
    fit.samples = samples
    fit.bootstrap_seed = seed
    fit.bootstrap_failed = int((~ok).sum())
    return fit


# -- summaries ---------------------------------------------------------------------------------------

def interval(values: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Point summary of draws: median, standard error (std) and the central percentile interval."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    tail = 100 * (1 - level) / 2
    low, mid, high = np.percentile(values, [tail, 50, 100 - tail])
    return {"median": float(mid), "se": float(np.std(values, ddof=1)), "low": float(low), "high": float(high),
            "level": level}


def derived_quantities(law: ChinchillaLaw, budget_flops: float) -> dict[str, object]:
    """What a planner uses from a law, at a budget: a = β/(α+β), N*, D*, D*/N*, L*(C)."""
    N = optimal_params(law, budget_flops)
    D = optimal_tokens(law, budget_flops)
    return {
        "a": law.beta / (law.alpha + law.beta),
        "N_opt": N,
        "D_opt": D,
        "tokens_per_param": D / N,
        "loss_at_budget": frontier_loss(law, budget_flops),
    }


def fit_report(fit: FitResult, budget_flops: float, level: float = 0.95, include_samples: bool = True) -> dict:
    """The JSON document of ``planner fit``: E, A, B, alpha, beta at the top (the contract), their
    intervals, the derived quantities at ``budget_flops`` with intervals, and the diagnostics.

    The document is also a law file: ``--law-file`` reads E, A, B, alpha, beta and the bootstrap draws.
    """
    law = fit.law()
    point = derived_quantities(law, budget_flops)
    doc: dict = {
        "name": f"fit:{Path(fit.source).stem}" if fit.source else "fit",
        "source": f"fitted by planner fit to {fit.source or 'runs'}",
        **fit.params,
        "objective": fit.objective,
        "loss_function": fit.loss_function,
        "huber_delta": HUBER_DELTA,
        "tied_exponents": fit.tied,
        "overestimate_penalty": fit.overestimate_penalty,
        "runs": {"path": fit.source, "used": fit.n_runs, "dropped_rows": fit.dropped_rows},
        "budget_flops": budget_flops,
        "derived": {k: float(v) for k, v in point.items()},
        "diagnostics": {
            "starts": fit.starts,
            "converged_starts": fit.converged_starts,
            "agreeing_starts": fit.agreeing_starts,
            "grad_norm": fit.grad_norm,
            "iterations": fit.iterations,
            "warnings": fit.warnings,
        },
    }
    if fit.samples is not None and len(fit.samples) >= 2:
        draws = law.draws()
        # A few runs let some replicates wander far (an exponent near 0, A at 1e30): their derived values
        # overflow to inf and drop out of the intervals (interval() keeps the finite ones), no warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            doc["intervals"] = {name: interval(fit.samples[:, i], level) for i, name in enumerate(PARAM_NAMES)}
            doc["derived_intervals"] = {k: interval(v, level)
                                        for k, v in derived_quantities(draws, budget_flops).items()}
        doc["bootstrap"] = {
            "replicates": int(len(fit.samples) + fit.bootstrap_failed),
            "failed": fit.bootstrap_failed,
            "seed": fit.bootstrap_seed,
        }
        if include_samples:
            doc["bootstrap"]["samples"] = [[float(f"{v:.8g}") for v in row] for row in fit.samples]
    return doc
