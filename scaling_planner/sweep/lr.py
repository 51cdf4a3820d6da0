"""A learning rate per model size: tuned on the cheapest rungs, carried to the others by a fitted rule.

One learning rate for every size biases a scaling law: the sizes it suits train well, the others
under-train, and the fitted exponents absorb the difference (Kaplan et al. 2020 used one schedule
for every run and over-estimated the returns of model size, Hoffmann et al. 2022 §3; Porian et al.
2024 trace much of the remaining Kaplan-Chinchilla gap to learning rates and batch sizes not tuned
per size). Tuning every rung is too dear, so the sweep does what ladders at scale do (Bi et al.
2024, DeepSeek LLM §3.1, fit the optimal learning rate as a power law of the budget):

1. the ``lr_tune_sizes`` model sizes of the smallest isoFLOP row (spread over it: first, middle, last)
   train at every learning rate of ``lr_grid`` on ``lr_tune_flops`` (default the smallest budget:
   the cheapest runs of the sweep);
2. each size's best learning rate is the minimum of a parabola through the best grid point and its
   two neighbours in log lr (the grid point itself when the best is at an edge of the grid, with a
   warning: the grid does not bracket that size's optimum);
3. ``log lr*(N) = a + b log N`` is fitted by least squares over the tuned sizes, with ``b``
   clipped to [-1/2, 0]: larger models never get a larger rate, and never a rate falling faster than
   muP's Adam rule lr ∝ 1/width, b = -1/2 at fixed depth (N ∝ width², Yang et al. 2022, Tensor
   Programs V, the μP table for Adam); the few short tuning runs of the smallest models are too noisy
   to set a steeper slope. Every rung trains at ``lr*(N)``.

Learning rates are tuned on shorter horizons than the ladder's; the optimum falls slowly with the
horizon (Bjorck et al. 2024), so the rule is a slight over-estimate for the longest rungs. Every
run's learning rate is in its record; the tuning runs and the rule are in ``lr_tuning.json``.
"""

from __future__ import annotations

import math

import numpy as np

from .design import Rung, Shape, SweepDefinition, _make_rung, _steps_for, parabola_minimum

SLOPE_RANGE = (-0.5, 0.0)
"""Bounds of the fitted exponent b of lr*(N) = exp(a) N^b."""


def tuning_rungs(defn: SweepDefinition, first_row: list[Rung]) -> list[Rung]:
    """The tuning runs: ``lr_tune_sizes`` sizes of the smallest row (first, middle, last) at every learning
    rate of the grid, each on ``lr_tune_flops`` (default the smallest budget) in whole steps, role
    ``lr_tune``; a size that would get fewer than ``min_steps`` steps is left out."""
    row = sorted(first_row, key=lambda r: r.params)
    k = min(defn.lr_tune_sizes, len(row))
    picks = sorted({round(i) for i in np.linspace(0, len(row) - 1, k)})
    C = defn.lr_tune_flops or defn.budgets_flops[0]
    out = []
    for i in picks:
        r = row[i]
        steps = _steps_for(C, r.params, defn.tokens_per_step)
        if steps < defn.min_steps:
            continue
        shape = Shape(r.n_layer, r.n_head, r.d_model, r.params)
        out += [_make_rung(defn, "lr_tune", C, shape, steps).model_copy(update={"lr": float(lr)})
                for lr in defn.lr_grid]
    return out


def best_lr(lrs: list[float], losses: list[float]) -> tuple[float, bool]:
    """(the best learning rate, whether the grid brackets it): the vertex of the parabola in log lr
    through the best point and its neighbours, kept within them; the best grid point at an edge."""
    order = np.argsort(lrs)
    grid = np.asarray(lrs, dtype=float)[order]
    x = np.log(grid)
    y = np.asarray(losses, dtype=float)[order]
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1:
        return float(grid[i]), False
    minimum = parabola_minimum(x[i - 1 : i + 2], y[i - 1 : i + 2])
    vertex = minimum[0] if minimum is not None else x[i]
    return float(math.exp(min(max(vertex, x[i - 1]), x[i + 1]))), True


def fit_rule(sizes: list[float], best: list[float]) -> dict:
    """``lr*(N) = exp(a) N^b`` over the tuned sizes (b clipped to :data:`SLOPE_RANGE`; b = 0 with one size)."""
    logN, logL = np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(best, dtype=float))
    one_size = len(set(np.round(logN, 9))) < 2
    b = 0.0 if one_size else float(np.clip(np.polyfit(logN, logL, 1)[0], *SLOPE_RANGE))
    a = float(np.mean(logL - b * logN))
    return {"log_coefficient": a, "exponent": b}


def lr_of(rule: dict, params: float) -> float:
    """The rule's learning rate for ``params`` non-embedding parameters."""
    return float(math.exp(rule["log_coefficient"] + rule["exponent"] * math.log(params)))


def tuning_document(defn: SweepDefinition, runs: list[tuple[Rung, float]]) -> dict:
    """The tuning runs (rung, final validation loss) -> per-size optima, the rule and its warnings."""
    by_size: dict[int, list[tuple[float, float]]] = {}
    for rung, loss in runs:
        by_size.setdefault(rung.params, []).append((rung.lr, loss))
    sizes, best, per_size, warnings = [], [], [], []
    for N, pts in sorted(by_size.items()):
        lrs, losses = [p[0] for p in pts], [p[1] for p in pts]
        lr, bracketed = best_lr(lrs, losses)
        sizes.append(N)
        best.append(lr)
        per_size.append({"N": N, "grid": [{"lr": a, "loss": b} for a, b in sorted(pts)], "best_lr": lr,
                         "bracketed": bracketed})
        if not bracketed:
            edge = "smallest" if lr <= min(lrs) else "largest"
            warnings.append(f"learning rate: the grid's {edge} rate {lr:.3g} was best for N={N:,}: the grid "
                            "does not bracket that size's optimum (widen lr_grid)")
    rule = fit_rule(sizes, best)
    rule["text"] = (f"lr(N) = {math.exp(rule['log_coefficient']):.4g} x N^{rule['exponent']:.3f} "
                    f"(fitted to the best rate of {len(sizes)} sizes, {sizes[0]:,}..{sizes[-1]:,} params)")
    return {"grid": list(defn.lr_grid), "sizes": per_size, "rule": rule, "warnings": warnings,
            "method": "per size: vertex of a parabola in log lr through the best grid point and its neighbours; "
                      "across sizes: least squares of log lr* on log N, exponent clipped to [-1/2, 0] "
                      "(sweep.lr module docstring)"}
