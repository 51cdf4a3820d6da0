"""Backtests of the sweep's own extrapolations, and the interval level they justify.

The held-out prediction extrapolates a law fitted to the smaller rungs one compute level up. How
often such an interval holds on *this kind of ladder* is measurable before the held-out rung trains:
fit the rungs up to each budget, predict the rungs of the next budget (rolling-origin evaluation,
Tashman 2000), and count how many measured losses fall inside the stated interval.

The count also sets the held-out interval (split-conformal calibration, Vovk et al. 2005; Angelopoulos
& Bates 2021 §1-2): each backtested rung's score is how far its measured loss lies from the predicted
median in units of the interval's half-width on that side, in log loss (1 = on the interval's edge).
With n scores, the ``ceil((n + 1) level)``-th smallest is the factor by which the half-widths must
grow for an interval to cover a new point at ``level`` (the largest score when n is too small for
that rank, said in the result). The factor is never below 1: with a handful of backtests the
bootstrap interval is not narrowed.

Coverage is reported twice: of the stated intervals, and of the calibrated ones, each rung scored
with the factor calibrated from the *other* rungs (leave one out), so the calibrated coverage is
not judged on the points that set it.
"""

from __future__ import annotations

import math

import numpy as np

from ..laws.runs import runs_from_arrays

BACKTEST_SEED = 7
MIN_DRAWS = 10
"""Fewest converged bootstrap refits a backtest fit needs for an interval (as the held-out prediction)."""


def score(measured: float, median: float, low: float, high: float) -> float:
    """|log(measured / median)| over the interval's log half-width on the measured side (1 = its edge)."""
    d = math.log(measured / median)
    half = math.log(high / median) if d >= 0 else math.log(median / low)
    return abs(d) / max(half, 1e-12)


def conformal_factor(scores: list[float], level: float) -> tuple[float, str]:
    """(the half-width factor, how it was chosen) from backtest scores (module docstring); >= 1."""
    if not scores:
        return 1.0, "no backtest: the bootstrap interval as stated"
    s = sorted(scores)
    n = len(s)
    rank = math.ceil((n + 1) * level)
    if rank > n:
        q, how = s[-1], (f"the largest of {n} backtest scores ({n} are too few for the rank "
                         f"ceil((n+1) x {level:g}) = {rank}; a {level:.0%} guarantee needs >= "
                         f"{math.ceil(level / (1 - level))})")
    else:
        q, how = s[rank - 1], f"the {rank}-th smallest of {n} backtest scores (split-conformal rank)"
    return max(1.0, q), how


def widen(prediction: dict, factor: float) -> tuple[float, float]:
    """The prediction interval with both log half-widths around the draws' median times ``factor``."""
    m = prediction["draws_median"]
    lo = m * (prediction["predicted_low"] / m) ** factor
    hi = m * (prediction["predicted_high"] / m) ** factor
    return float(lo), float(hi)


def rolling_backtests(N, D, loss, budgets, rung_budgets, *, level: float, bootstrap: int, tied: bool,
                      seed: int = BACKTEST_SEED) -> dict:
    """Fit the rungs of the budgets up to each ``budgets[k]`` (k >= 1: one budget alone does not separate N
    from D) and predict the rungs above it up to ``budgets[k + 1]`` with the level's prediction interval.
    ``rung_budgets``: each rung's isoFLOP budget (its row; a suggested rung's own compute). Returns the
    points, both coverages and the calibration factor."""
    from ..laws.fit import bootstrap as boot
    from ..laws.fit import fit_law
    from .heldout import predict

    N, D, loss, rb = (np.asarray(v, dtype=float) for v in (N, D, loss, rung_budgets))
    points, splits = [], []
    p = 4 if tied else 5
    for k in range(1, len(budgets) - 1):
        below = rb <= budgets[k] * (1 + 1e-9)
        nxt = (rb > budgets[k] * (1 + 1e-9)) & (rb <= budgets[k + 1] * (1 + 1e-9))  # suggested rungs too
        if below.sum() < p + 1 or not nxt.any():
            continue
        runs = runs_from_arrays(N[below], D[below], loss[below], source=f"backtest <= {budgets[k]:.3g}")
        fit = boot(runs, fit_law(runs, tied=tied), bootstrap, seed=seed + k)
        split = {"fit_up_to_flops": float(budgets[k]), "fit_rungs": int(below.sum()),
                 "predicted_budget_flops": float(budgets[k + 1]), "warnings": list(fit.warnings)}
        splits.append(split)
        draws = 0 if fit.samples is None else len(fit.samples)
        if draws < MIN_DRAWS:
            split["skipped"] = (f"{draws} of {draws + fit.bootstrap_failed} bootstrap refits converged "
                                f"(< {MIN_DRAWS}): no interval to test")
            continue
        for i in np.flatnonzero(nxt):
            pred = predict(fit, runs, N[i], D[i], level, seed=seed)
            points.append({"N": float(N[i]), "D": float(D[i]), "budget_flops": float(budgets[k + 1]),
                           "fit_up_to_flops": float(budgets[k]), "measured": float(loss[i]),
                           "predicted": pred["predicted"], "median": pred["draws_median"],
                           "low": pred["predicted_low"], "high": pred["predicted_high"],
                           "inside": bool(pred["predicted_low"] <= loss[i] <= pred["predicted_high"]),
                           "score": score(float(loss[i]), pred["draws_median"], pred["predicted_low"],
                                          pred["predicted_high"])})
    scores = [pt["score"] for pt in points]
    factor, how = conformal_factor(scores, level)
    loo = []
    for i, pt in enumerate(points):
        f_i, _ = conformal_factor(scores[:i] + scores[i + 1 :], level)
        lo, hi = widen({"draws_median": pt["median"], "predicted_low": pt["low"], "predicted_high": pt["high"]}, f_i)
        loo.append(lo <= pt["measured"] <= hi)
    n = len(points)
    return {"level": level, "splits": splits, "points": points, "n": n,
            "coverage_stated": (sum(pt["inside"] for pt in points) / n) if n else None,
            "coverage_calibrated_loo": (sum(loo) / n) if n else None,
            "factor": factor, "factor_method": how,
            "mean_relative_error": (float(np.mean([(pt["measured"] - pt["predicted"]) / pt["measured"]
                                                   for pt in points])) if n else None),
            "method": "rolling origin: fit the rows up to each budget (bootstrap), predict the next row; "
                      "split-conformal factor on the interval's log half-widths (sweep.backtests)"}


def predict_with_backtests(defn, fit, runs, fitted: list, heldout) -> dict:
    """The held-out prediction (sweep.heldout) with the rolling backtests of the fitted rungs and, when
    ``calibrate_interval``, its interval widened by their split-conformal factor (sweep.backtests)."""
    from .heldout import backtest, backtest_corrected, predict

    prediction = predict(fit, runs, heldout.params, heldout.tokens, defn.level, seed=defn.seed)
    bt = backtest(runs.N, runs.D, runs.loss, defn.budgets_flops[-2], tied=defn.tied)
    rolling = rolling_backtests(runs.N, runs.D, runs.loss, defn.budgets_flops, [r.budget_flops for r in fitted],
                                level=defn.level, bootstrap=defn.backtest_bootstrap, tied=defn.tied)
    prediction.update({"backtest": bt, "backtest_corrected": backtest_corrected(prediction, bt),
                       "backtests": rolling, "calibrated": defn.calibrate_interval,
                       "stated_low": prediction["predicted_low"], "stated_high": prediction["predicted_high"]})
    if defn.calibrate_interval:
        lo, hi = widen(prediction, rolling["factor"])
        prediction.update({"predicted_low": lo, "predicted_high": hi, "calibration_factor": rolling["factor"]})
    return prediction
