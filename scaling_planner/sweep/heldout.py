"""The held-out prediction: the largest rung's loss predicted from a fit of the smaller rungs, then judged.

Two intervals, both from the bootstrap draws of the fit (:func:`scaling_planner.laws.fit.bootstrap`):

* the **confidence** interval of the law's value L̂(N, D): percentiles of the K draws' predictions,
  the uncertainty of the fitted curve only;
* the **prediction** interval of one new run's measured loss: each draw's prediction times
  ``exp(e)``, e a residual drawn at random from the fit's log-loss residuals inflated by
  ``sqrt(n / (n - p))`` (p fitted parameters), so the run-to-run scatter the law does not explain
  (seed, evaluation sample, schedule) is in the interval too. This is the bootstrap prediction
  interval of Davison & Hinkley 1997, §6.3.3 (Algorithm 6.4 without refitting per residual draw).

``predicted_low`` / ``predicted_high`` are the prediction interval (a measured loss is what gets
compared); the confidence interval is reported beside it. ``predicted`` is the point fit's L̂(N, D).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from ..base.errors import InputError
from ..laws.fit import FitResult
from ..laws.runs import Runs

METHOD = ("law fitted to the smaller rungs (Huber on log L, Hoffmann grid); interval = percentiles of the "
          "bootstrap draws' predictions x exp(resampled log residual x sqrt(n/(n-p))) (Davison & Hinkley "
          "1997 §6.3.3); confidence interval = the draws' predictions alone")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def law_loss(params, N, D):
    """L = E + A/N^alpha + B/D^beta for params (E, A, B, alpha, beta), rows of draws or one vector."""
    p = np.asarray(params, dtype=float)
    E, A, B, a, b = (p[..., i] for i in range(5))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return E + A / np.asarray(N, dtype=float) ** a + B / np.asarray(D, dtype=float) ** b


def point_params(fit: FitResult) -> np.ndarray:
    return np.array([fit.params[k] for k in ("E", "A", "B", "alpha", "beta")])


def log_residuals(fit: FitResult, runs: Runs) -> np.ndarray:
    """log L - log L̂ of every fitted run at the point fit."""
    return np.log(runs.loss) - np.log(law_loss(point_params(fit), runs.N, runs.D))


def predict(fit: FitResult, runs: Runs, N: float, D: float, level: float = 0.9, *, seed: int = 0) -> dict:
    """Point prediction and both intervals (module docstring) at (N, D). Needs bootstrap draws."""
    if fit.samples is None or len(fit.samples) < 10:
        raise InputError("bootstrap", "the held-out interval needs a fit with at least 10 bootstrap draws")
    if not 0 < level < 1:
        raise InputError("level", f"must be in (0, 1), got {level!r}")
    draws = law_loss(fit.samples, N, D)
    draws = draws[np.isfinite(draws)]
    p = 4 if fit.tied else 5
    n = len(runs)
    resid = log_residuals(fit, runs)
    inflate = math.sqrt(n / (n - p)) if n > p else 1.0
    rng = np.random.default_rng(seed)
    noisy = draws * np.exp(rng.choice(resid * inflate, size=draws.size, replace=True))
    tail = 100 * (1 - level) / 2
    c_lo, c_hi = np.percentile(draws, [tail, 100 - tail])
    p_lo, p_hi = np.percentile(noisy, [tail, 100 - tail])
    point = float(law_loss(point_params(fit), N, D))
    return {
        "N": float(N), "D": float(D), "compute_flops": 6.0 * N * D,
        "predicted": point, "predicted_low": float(p_lo), "predicted_high": float(p_hi), "level": level,
        "confidence_low": float(c_lo), "confidence_high": float(c_hi),
        "draws_median": float(np.median(draws)), "draws": int(draws.size),
        "residual_sd_log": float(np.sqrt(np.mean(resid**2))), "residual_inflation": inflate,
        "fit_runs": n, "method": METHOD, "predicted_at": now_iso(),
    }


def backtest(N, D, loss, split_flops: float, *, tied: bool = False) -> dict | None:
    """The same extrapolation one step down, from the fitted rungs only (so it exists before the held-out
    rung trains): fit the rungs with 6ND <= ``split_flops`` (5% slack for the rounding of D to whole
    steps; no bootstrap) and predict the rungs above it. A systematic sign of the errors says the law's
    extrapolation on *these* runs is biased, not only noisy. None when fewer than p + 1 rungs lie
    below the split or none above."""
    from ..laws.fit import fit_law
    from ..laws.runs import runs_from_arrays

    N, D, loss = (np.asarray(v, dtype=float) for v in (N, D, loss))
    C = 6.0 * N * D
    below = C <= split_flops * 1.05
    if below.sum() < (5 if tied else 6) or below.all():
        return None
    runs = runs_from_arrays(N[below], D[below], loss[below], source="backtest")
    fit = fit_law(runs, tied=tied)
    pred = law_loss(point_params(fit), N[~below], D[~below])
    note = ""
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(point_params(fit)))) and not tied:
        fit = fit_law(runs, tied=True)  # too few rungs below to separate the exponents
        pred = law_loss(point_params(fit), N[~below], D[~below])
        note = "exponents tied (alpha = beta): the untied fit of the rungs below had an infinite parameter"
    if not np.all(np.isfinite(pred)):
        return None
    ratio = loss[~below] / pred
    rel = (loss[~below] - pred) / loss[~below]
    return {"fit_rungs": int(below.sum()), "predicted_rungs": int((~below).sum()), "split_flops": float(split_flops),
            "extrapolation_compute_factor": float(C[~below].max() / C[below].max()),
            "relative_errors": [float(x) for x in rel], "mean_relative_error": float(rel.mean()),
            "measured_below_prediction": int((rel < 0).sum()), "ratios": [float(x) for x in ratio],
            "geometric_mean_ratio": float(np.exp(np.mean(np.log(ratio)))), "tied": bool(fit.tied), "note": note}


def backtest_corrected(prediction: dict, bt: dict | None) -> dict | None:
    """The prediction scaled by the backtest's geometric-mean ratio measured / predicted, its interval
    widened to the backtest's smallest and largest ratio. A secondary figure: it assumes the next step
    up is biased like the last one (the primary prediction is the law's own)."""
    if not bt:
        return None
    r, lo, hi = bt["geometric_mean_ratio"], min(bt["ratios"]), max(bt["ratios"])
    return {"predicted": prediction["predicted"] * r, "predicted_low": prediction["predicted_low"] * min(lo, 1.0),
            "predicted_high": prediction["predicted_high"] * max(hi, 1.0), "factor": r,
            "method": "law prediction x the geometric mean of measured/predicted in the backtest; interval x the "
                      "backtest's extreme ratios"}


def verdict(prediction: dict, measured: float, context: dict) -> dict:
    """Compare the measured held-out loss with the prediction; when it falls outside the interval, say by
    how much and list the likely reasons with their numbers.

    ``context``: ``fit_max_compute``, ``fit_max_N``, ``fit_max_D``, ``fit_max_epochs``, ``heldout_epochs``,
    ``fit_warnings`` (list), ``bootstrap_failed``, ``bootstrap_replicates``; optionally ``corner_rungs``
    (fitted rungs with N >= N_h/2 and D >= D_h/2), ``heldout_layers`` and ``fit_layers`` (depths),
    ``backtest`` (:func:`backtest`).
    """
    lo, hi, point = prediction["predicted_low"], prediction["predicted_high"], prediction["predicted"]
    error = measured - point
    inside = lo <= measured <= hi
    half_width = max((hi - lo) / 2, 1e-12)
    out = {
        "measured": float(measured), "error": float(error), "relative_error": float(error / measured),
        "error_in_half_widths": float(error / half_width), "inside": bool(inside),
        "inside_confidence": bool(prediction["confidence_low"] <= measured <= prediction["confidence_high"]),
        "miss": 0.0, "direction": "inside", "reasons": [],
    }
    corr = prediction.get("backtest_corrected")
    if corr:
        out["backtest_corrected_inside"] = bool(corr["predicted_low"] <= measured <= corr["predicted_high"])
        out["backtest_corrected_error"] = float(measured - corr["predicted"])
    if inside:
        return out
    above = measured > hi
    out["miss"] = float(measured - hi if above else lo - measured)
    out["direction"] = "above" if above else "below"
    out["reasons"] = _reasons(prediction, measured, above, context)
    return out


def _reasons(prediction: dict, measured: float, above: bool, ctx: dict) -> list[str]:
    """The likely causes of a miss, the ones the runs themselves support first, each with its number."""
    reasons = []
    bt = prediction.get("backtest")
    if bt:
        same = bt["measured_below_prediction"] if not above else bt["predicted_rungs"] - bt["measured_below_prediction"]
        if same * 2 > bt["predicted_rungs"]:
            reasons.append(
                f"the law's extrapolation is biased on these runs: fitted to the {bt['fit_rungs']} rungs up to "
                f"{bt['split_flops']:.2g} FLOPs, it put {same} of the {bt['predicted_rungs']} rungs above "
                f"({bt['extrapolation_compute_factor']:.1f}x up) {'below' if above else 'above'} their measured loss "
                f"(mean error {bt['mean_relative_error']:+.1%}); the held-out miss has the same sign")
    corner = ctx.get("corner_rungs")
    if corner is not None and corner == 0:
        reasons.append(
            f"no fitted rung has both N >= {prediction['N'] / 2:,.0f} and D >= {prediction['D'] / 2:,.0f} (half the "
            "held-out's): the isoFLOP rows pair large models with few tokens, so how N and D combine at the "
            "held-out corner rests on the law's additive form alone")
    layers, fit_layers = ctx.get("heldout_layers"), ctx.get("fit_layers") or []
    deep = sum(x >= layers for x in fit_layers) if layers is not None else 0
    if layers is not None and fit_layers and deep <= max(1, len(fit_layers) // 8):
        reasons.append(f"depth: the held-out model has {layers} layers, {deep} of the {len(fit_layers)} fitted rungs "
                       "have as many; at this size the shape, not only N, moves the loss")
    C_ratio = prediction["compute_flops"] / ctx["fit_max_compute"]
    reasons.append(f"extrapolation: the held-out rung has {C_ratio:.1f}x the largest fitted compute "
                   f"(N {prediction['N'] / ctx['fit_max_N']:.2g}x, D {prediction['D'] / ctx['fit_max_D']:.2g}x the "
                   "largest fitted); a small error in the fitted exponents grows with the distance")
    ho_ep, fit_ep = ctx.get("heldout_epochs"), ctx.get("fit_max_epochs")
    if above and ho_ep is not None and ho_ep > 1.0:
        reasons.append(f"repeated data: the held-out rung saw {ho_ep:.2f} epochs of the corpus (fitted rungs up to "
                       f"{fit_ep:.2f}); the law assumes fresh tokens, repeated ones are worth less (Muennighoff 2023)")
    if above:
        reasons.append("the recipe is not tuned per size: the same learning rate, batch and schedule for every rung "
                       "favour the smaller models, so returns flatten at the top (a law fitted below over-promises)")
    else:
        reasons.append("the fitted exponents under-estimate the returns of scale at this size (the smaller rungs "
                       "sit in a steeper or noisier part of the curve)")
    sd = prediction["residual_sd_log"]
    if sd > 0:
        reasons.append(f"scatter: the miss is {abs(math.log(measured / prediction['predicted'])) / sd:.1f}x the fit's "
                       f"RMS log residual ({sd:.4f}); one run's seed and evaluation noise is part of it")
    for w in ctx.get("fit_warnings") or []:
        reasons.append(f"fit warning: {w}")
    failed, total = ctx.get("bootstrap_failed", 0), ctx.get("bootstrap_replicates", 0)
    if total and failed / total > 0.05:
        reasons.append(f"{failed}/{total} bootstrap refits did not converge: the interval is built from the rest and "
                       "may be too narrow")
    return reasons
