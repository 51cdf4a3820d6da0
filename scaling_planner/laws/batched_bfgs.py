"""A BFGS minimiser that runs K independent problems at once, vectorised with numpy.

Many small smooth problems of the same shape (the 4500 starts of the Hoffmann grid, or 4000
bootstrap replicates) cost about as much as one problem when the objective is evaluated for all
of them in one array expression. This module holds only the optimiser; the objective is passed
in as ``fun(theta, rows) -> (f, g)`` evaluated for the subset ``rows`` of problems still running.

Algorithm: BFGS with the inverse-Hessian update (Nocedal & Wright 2006, Alg. 6.1 and Eq. 6.17),
the initial scaling of Eq. 6.20, and a backtracking Armijo line search (Alg. 3.1, c1 = 1e-4).
Problems that converge drop out of the active set, so the cost falls as they finish.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BatchResult:
    """Per-problem outcome of :func:`minimize_batched` (arrays of length K)."""

    x: np.ndarray  # (K, p) final parameters
    f: np.ndarray  # (K,) final objective
    grad_norm: np.ndarray  # (K,) infinity norm of the final gradient
    iterations: np.ndarray  # (K,) iterations taken
    converged: np.ndarray  # (K,) bool: gradient or progress test met, not stalled or out of iterations
    evaluations: int  # objective+gradient evaluations, counted per batch call


def minimize_batched(
    fun,
    x0: np.ndarray,
    *,
    gtol: float = 1e-9,
    ftol: float = 1e-10,
    flat_iterations: int = 5,
    max_iter: int = 1000,
    max_step: float = 2.0,
) -> BatchResult:
    """Minimise K problems with BFGS at once.

    ``fun(x, rows)`` gets parameters ``x`` of shape (k, p) for the problems ``rows`` (indices into
    the K problems) and returns ``(f, g)`` of shapes (k,) and (k, p).

    A problem has converged when its gradient's infinity norm is below ``gtol``, or when
    ``flat_iterations`` accepted steps in a row each change f by less than ``ftol·|f|`` (a plateau:
    a start whose terms have vanished, e.g. A/N^alpha ~ 0, and only E is left to fit). ``max_step``
    caps the infinity norm of one step, which keeps far-away starts from jumping into overflow.
    """
    x = np.array(x0, dtype=float, copy=True)
    K, p = x.shape
    rows = np.arange(K)
    f, g = fun(x, rows)
    evaluations = 1
    eye = np.eye(p)
    H = np.broadcast_to(eye, (K, p, p)).copy()
    scaled = np.zeros(K, dtype=bool)
    iterations = np.zeros(K, dtype=int)
    converged = np.zeros(K, dtype=bool)
    stalls = np.zeros(K, dtype=int)
    flat = np.zeros(K, dtype=int)
    active = np.isfinite(f) & np.all(np.isfinite(g), axis=1)
    active &= np.max(np.abs(g), axis=1) > gtol
    converged |= ~active & np.isfinite(f)

    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xi, fi, gi, Hi = x[idx], f[idx], g[idx], H[idx]
        direction = -np.einsum("kij,kj->ki", Hi, gi)
        slope = np.einsum("ki,ki->k", direction, gi)
        bad = ~(slope < 0)  # not a descent direction: restart from steepest descent
        if bad.any():
            Hi[bad] = eye
            direction[bad] = -gi[bad]
            slope[bad] = -np.einsum("ki,ki->k", gi[bad], gi[bad])
        norm = np.max(np.abs(direction), axis=1)
        step = np.minimum(1.0, max_step / np.maximum(norm, 1e-300))

        # Backtracking Armijo line search, only for the problems whose trial step failed.
        x_new = np.empty_like(xi)
        f_new = np.full_like(fi, np.inf)
        g_new = np.empty_like(gi)
        pending = np.arange(idx.size)
        for _ in range(40):
            trial = xi[pending] + step[pending, None] * direction[pending]
            ft, gt = fun(trial, idx[pending])
            evaluations += 1
            ok = np.isfinite(ft) & (ft <= fi[pending] + 1e-4 * step[pending] * slope[pending])
            ok &= np.all(np.isfinite(gt), axis=1)
            done = pending[ok]
            x_new[done], f_new[done], g_new[done] = trial[ok], ft[ok], gt[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            step[pending] *= 0.5

        failed = np.zeros(idx.size, dtype=bool)
        failed[pending] = True
        moved = ~failed
        iterations[idx] += 1

        # Line search failed: reset the curvature model; stop after repeated failures.
        if failed.any():
            fidx = idx[failed]
            stalls[fidx] += 1
            H[fidx] = eye
            scaled[fidx] = False
            give_up = fidx[stalls[fidx] >= 3]
            active[give_up] = False
            # A stalled problem at a tiny gradient is as converged as floating point allows.
            converged[give_up] = np.max(np.abs(g[give_up]), axis=1) < 1e3 * gtol

        if moved.any():
            midx = idx[moved]
            s = x_new[moved] - xi[moved]
            y = g_new[moved] - gi[moved]
            f_old = fi[moved]
            x[midx], f[midx], g[midx] = x_new[moved], f_new[moved], g_new[moved]
            stalls[midx] = 0
            sy = np.einsum("ki,ki->k", s, y)
            yy = np.einsum("ki,ki->k", y, y)
            curv = sy > 1e-12 * np.sqrt(np.einsum("ki,ki->k", s, s) * yy)
            Hm = H[midx]
            first = curv & ~scaled[midx]
            if first.any():  # Nocedal & Wright Eq. 6.20: scale H0 before the first update
                Hm[first] = eye * (sy[first] / yy[first])[:, None, None]
                scaled[midx[first]] = True
            if curv.any():
                rho = 1.0 / sy[curv]
                sc, yc, Hc = s[curv], y[curv], Hm[curv]
                Hy = np.einsum("kij,kj->ki", Hc, yc)
                yHy = np.einsum("ki,ki->k", yc, Hy)
                # H+ = H - rho(s Hy' + Hy s') + (rho^2 y'Hy + rho) s s'   (Eq. 6.17 expanded)
                Hc = (
                    Hc
                    - rho[:, None, None] * (np.einsum("ki,kj->kij", sc, Hy) + np.einsum("ki,kj->kij", Hy, sc))
                    + (rho * rho * yHy + rho)[:, None, None] * np.einsum("ki,kj->kij", sc, sc)
                )
                Hm[curv] = Hc
            H[midx] = Hm
            gnorm = np.max(np.abs(g[midx]), axis=1)
            small = np.abs(f_old - f[midx]) <= ftol * np.abs(f[midx])
            flat[midx] = np.where(small, flat[midx] + 1, 0)
            done = (gnorm < gtol) | (flat[midx] >= flat_iterations)
            converged[midx[done]] = True
            active[midx[done]] = False

    grad_norm = np.max(np.abs(g), axis=1)
    return BatchResult(
        x=x, f=f, grad_norm=grad_norm, iterations=iterations, converged=converged, evaluations=evaluations
    )
