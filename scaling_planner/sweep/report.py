"""The sweep's report: the ``sweep.json`` document, the summary lines, and two figures.

* ``fit.png``: (left) loss against N for each isoFLOP row with the fitted law's curve L(N, C/(6N)) at
  the row's budget (Hoffmann et al. 2022 Fig. 3), the suggested rungs and the held-out rung with its
  prediction interval; (right) measured against fitted loss for every rung.
* ``heldout.png``: loss against compute C = 6ND: the fitted rungs, the fitted compute-optimal frontier
  L*(C) with the band of the bootstrap draws (the fit's interval level), and the held-out rung's
  prediction interval (computed before it trained) beside what it measured.

matplotlib is imported inside the functions (Agg canvas, no pyplot state); files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .design import FLOPS_CONVENTION, LR_REFERENCE_PARAMS, CorpusSize, Ladder, SweepDefinition
from .heldout import law_loss, point_params

LOSS_UNITS = "nats/byte"
FILES = ("fit.png", "heldout.png")


def check_plotting() -> None:
    """InputError (one line) when matplotlib is missing; called before anything trains."""
    from ..render.plots import _matplotlib

    _matplotlib()


def _fit_doc(fit, budget_flops: float, level: float, keys: list[str]) -> dict:
    from ..laws.fit import fit_report

    doc = fit_report(fit, budget_flops, level, include_samples=False)
    doc["runs"] = {"used": fit.n_runs, "keys": keys}
    doc["name"] = f"sweep fit ({fit.source})"
    return doc


BOUNDS = {"E": (1e-6, None), "A": (None, 1e12), "B": (None, 1e12), "alpha": (0.01, 2.0), "beta": (0.01, 2.0)}
"""Where a fitted parameter has run off to a degenerate value: E -> 0 (no floor), A or B -> infinity, an
exponent -> 0 or beyond 2 (no published fit of this form comes near either; Besiroglu 2024 Table 1)."""
POINT_AT_BOUND = {"E": "at E ~ 0 these runs show no floor, so the law is two pure power laws and every extrapolation "
                       "leans on them"}
"""What a point value at its bound means, where it means more than an unidentified parameter."""


def bound_warnings(fit, level: float) -> list[str]:
    """A warning for each parameter whose point value or interval end ran to a bound of :data:`BOUNDS`."""
    from ..laws.fit import PARAM_NAMES, interval

    out = []
    for k, (lo, hi) in BOUNDS.items():
        ends = [("point value", fit.params[k])]
        if fit.samples is not None and len(fit.samples) >= 2:
            with np.errstate(over="ignore", invalid="ignore"):
                iv = interval(fit.samples[:, PARAM_NAMES.index(k)], level)
            ends += [(f"{level:.0%} interval low", iv["low"]), (f"{level:.0%} interval high", iv["high"])]
        low = [f"{what} {x:.3g}" for what, x in ends if lo is not None and x < lo]
        high = [f"{what} {x:.3g}" for what, x in ends if hi is not None and x > hi]
        if low or high:
            bound = f"below {lo:g}" if low else f"above {hi:g}"
            point = fit.params[k]
            point_out = (lo is not None and point < lo) or (hi is not None and point > hi)
            meaning = f"; {POINT_AT_BOUND[k]}" if point_out and k in POINT_AT_BOUND else ""
            out.append(f"{k} ran to its bound ({bound}: {', '.join(low or high)}): the rungs do not pin it down"
                       + meaning)
    return out


def run_summary(record: dict) -> dict:
    res, mfu = record["result"], record["result"].get("mfu") or {}
    N, D = res["params_nonembedding"], res["tokens_seen"]
    return {"key": record["key"], "role": record["role"], "N": N, "D": D, "loss": res["final_val_loss"],
            "compute_flops": 6.0 * N * D, "model_flops": res["flops_per_token"] * D,
            "initial_loss": res["initial_val_loss"], "lr": res["lr"], "steps": res["steps"],
            "train_s": res["train_s"], "wall_s": res["wall_s"], "tokens_per_s": mfu.get("tokens_per_s"),
            "mfu": mfu.get("mfu"), "achieved_model_flops_per_s": mfu.get("achieved_flops_per_s"),
            "device": res["device"], "dtype": res["dtype"], "threads": res.get("threads"),
            "finished_at": record["finished_at"]}


def sweep_document(*, defn: SweepDefinition, settings: dict, ladder: Ladder, suggestion: dict, records: list[dict],
                   fit, fit_all, prediction: dict, judged: dict, heldout_record: dict, recommendation: dict,
                   timing: dict, corpus: CorpusSize, command: str | None, out_dir: Path, damaged: list[str],
                   lr_tuning: dict | None = None, bracketing: dict | None = None) -> dict:
    """The JSON document of a sweep (``sweep.json``); ``heldout`` holds predicted, predicted_low,
    predicted_high (the interval at ``level``, backtest-calibrated when ``calibrated``; the bootstrap's own
    as ``stated_low``/``stated_high``) and measured."""
    from .heldout import now_iso

    held = heldout_record["result"]
    compute_flops = 6.0 * held["params_nonembedding"] * held["tokens_seen"]
    stated_low = prediction.get("stated_low", prediction["predicted_low"])
    stated_high = prediction.get("stated_high", prediction["predicted_high"])
    fit_keys = [r["key"] for r in records if r["role"] != "heldout"]
    heldout = {
        "key": heldout_record["key"], "N": held["params_nonembedding"], "D": held["tokens_seen"],
        "compute_flops": compute_flops,
        "predicted": prediction["predicted"], "predicted_low": prediction["predicted_low"],
        "predicted_high": prediction["predicted_high"], "level": prediction["level"],
        "calibrated": bool(prediction.get("calibrated")), "calibration_factor": prediction.get("calibration_factor"),
        "stated_low": stated_low, "stated_high": stated_high,
        "inside_stated": bool(stated_low <= held["final_val_loss"] <= stated_high),
        "backtests": prediction.get("backtests"),
        "measured": held["final_val_loss"],
        **{k: judged[k] for k in ("error", "relative_error", "error_in_half_widths", "inside", "miss", "direction",
                                  "reasons", "inside_confidence")},
        "backtest": prediction.get("backtest"), "backtest_corrected": prediction.get("backtest_corrected"),
        **{k: judged[k] for k in ("backtest_corrected_inside", "backtest_corrected_error") if k in judged},
        "confidence_low": prediction["confidence_low"], "confidence_high": prediction["confidence_high"],
        "residual_sd_log": prediction["residual_sd_log"], "fit_runs": prediction["fit_runs"],
        "method": prediction["method"], "predicted_at": prediction["predicted_at"],
        "measured_at": heldout_record["finished_at"],
        "predicted_before_measured": (not prediction.get("already_measured", False)
                                      and prediction["predicted_at"] < heldout_record["finished_at"]),
        "extrapolation_compute_factor": compute_flops / max(
            6.0 * r["result"]["params_nonembedding"] * r["result"]["tokens_seen"] for r in records
            if r["role"] != "heldout"),
    }
    warnings = list(fit.warnings) + bound_warnings(fit, defn.level)
    warnings += list((lr_tuning or {}).get("warnings", [])) + list((bracketing or {}).get("warnings", []))
    if fit.bootstrap_failed:
        warnings.append(f"{fit.bootstrap_failed} of {fit.bootstrap_failed + len(fit.samples)} bootstrap refits "
                        "did not converge (dropped)")
    if damaged:
        warnings.append(f"damaged records ignored (their rungs trained again): {', '.join(damaged)}")
    return {
        "sweep": "scaling-sweep",
        "created_at": now_iso(),
        "command": command,
        "out_dir": str(out_dir),
        "definition": defn.model_dump(),
        "settings": settings,
        "conventions": {
            "compute": FLOPS_CONVENTION, "N": "non-embedding parameters", "D": "training tokens seen (bytes)",
            "loss": f"final validation loss, {LOSS_UNITS}, mean over {defn.eval_batches} fixed batches of "
                    f"{defn.batch_size} x {defn.seq_len} bytes of the validation split",
            "lr_rule": f"lr(N) = {defn.lr:g} x (N / {LR_REFERENCE_PARAMS:g})^-{defn.lr_exponent:g}",
            "seed": f"every rung: seed {defn.seed} for the initialisation and the batch order",
        },
        "corpus": {"name": corpus.name, "train_tokens": corpus.train_tokens, "val_tokens": corpus.val_tokens},
        "ladder": {
            "rows": [{"budget_flops": C, "rungs": [{"N": r.params, "D": r.tokens, "n_layer": r.n_layer,
                                                     "d_model": r.d_model} for r in row]}
                     for C, row in ladder.rows.items()],
            "heldout": {"N": ladder.heldout.params, "D": ladder.heldout.tokens,
                        "budget_flops": ladder.heldout.budget_flops},
        },
        "lr_tuning": lr_tuning,
        "bracketing": bracketing,
        "suggestion": suggestion,
        "runs": [run_summary(r) for r in records],
        "fit": _fit_doc(fit, heldout["compute_flops"], defn.level, fit_keys),
        "fit_all": _fit_doc(fit_all, heldout["compute_flops"], defn.level, [r["key"] for r in records]),
        "heldout": heldout,
        "recommendation": recommendation,
        "timing": timing,
        "warnings": warnings,
    }


def _si(x: float) -> str:
    from ..base.units import format_si

    return format_si(x)


def summary_lines(doc: dict) -> list[str]:
    """What a user reads at the end of a sweep."""
    runs = doc["runs"]
    roles = {k: sum(r["role"] == k for r in runs) for k in ("isoflop", "extension", "suggested", "heldout")}
    tuned = doc.get("lr_tuning") or {}
    n_tune = sum(len(x["grid"]) for x in tuned.get("sizes", []))
    t = doc["timing"]
    lines = [f"sweep: {roles['isoflop']} isoFLOP + {roles['extension']} row-extension + {roles['suggested']} "
             f"suggested + {roles['heldout']} held-out rungs, {n_tune} learning-rate tuning runs "
             f"({t['rungs_trained_now']} trained now, {t['rungs_reused']} reused) in {t['wall_s'] / 60:.1f} min"
             + (f" ({t['total_wall_s'] / 60:.1f} min over {len(t['sessions'])} sessions)"
                if len(t.get("sessions", [])) > 1 else "")
             + f"; corpus {doc['corpus']['name']}, loss in {LOSS_UNITS}"]
    f = doc["fit"]
    iv = f.get("intervals", {})
    level = round(100 * doc["definition"]["level"])

    def with_iv(k, fmt):
        return f"{k} {fmt(f[k])}" + (f" [{fmt(iv[k]['low'])}, {fmt(iv[k]['high'])}]" if k in iv else "")

    lines.append(f"fit on {f['runs']['used']} rungs (N non-embedding, C = 6ND): "
                 + ", ".join(with_iv(k, (lambda x: f"{x:.4g}")) for k in ("E", "A", "B", "alpha", "beta"))
                 + f" ({level}% bootstrap intervals)")
    h = doc["heldout"]
    verdict = "inside" if h["inside"] else f"OUTSIDE, {h['miss']:.4f} {h['direction']} the interval"
    lines.append(f"held-out N={_si(h['N'])} D={_si(h['D'])} ({h['compute_flops']:.3g} FLOPs, "
                 f"{h['extrapolation_compute_factor']:.1f}x the largest fitted): predicted {h['predicted']:.4f} "
                 f"[{h['predicted_low']:.4f}, {h['predicted_high']:.4f}] ({level}%), measured {h['measured']:.4f}: "
                 f"{verdict} (error {h['error']:+.4f}, {h['relative_error']:+.1%})")
    if h.get("calibrated"):
        lines.append(f"  interval widened x{h['calibration_factor']:.2f} by the backtests (split-conformal); the "
                     f"bootstrap's own [{h['stated_low']:.4f}, {h['stated_high']:.4f}] "
                     f"{'holds' if h['inside_stated'] else 'misses'} the measurement")
    bts = h.get("backtests")
    if bts and bts.get("n"):
        lines.append(f"backtests: {bts['n']} rungs predicted from fits of the rows below them: "
                     f"{bts['coverage_stated']:.0%} inside the stated {level}% intervals, "
                     f"{bts['coverage_calibrated_loo']:.0%} inside the calibrated ones (each calibrated without "
                     f"itself); mean error {bts['mean_relative_error']:+.1%}")
    elif bts is not None:
        lines.append("backtests: none (fewer than two budgets below the top one hold enough rungs to fit)")
    if tuned:
        lines.append(f"learning rate: {tuned['rule']['text']}")
    br = doc.get("bracketing")
    if br:
        rows = br["rows"]
        lines.append(f"isoFLOP rows: {sum(r['bracketed'] for r in rows)} of {len(rows)} bracket their minimum "
                     f"({sum(r['extended'] for r in rows)} extension rung(s)); optima N "
                     + ", ".join(f"{_si(r['N_opt'])} at {r['budget_flops']:.2g}" for r in rows if r["bracketed"]))
    if not h["predicted_before_measured"]:
        lines.append("note: the held-out prediction file was missing and was recomputed after the measurement")
    bt = h.get("backtest")
    if bt:
        lines.append(f"backtest: fitted to the {bt['fit_rungs']} rungs up to {bt['split_flops']:.2g} FLOPs, the law "
                     f"predicted the {bt['predicted_rungs']} above ({bt['extrapolation_compute_factor']:.1f}x up) with "
                     f"mean error {bt['mean_relative_error']:+.1%} ({bt['measured_below_prediction']} measured below)")
    bc = h.get("backtest_corrected")
    if bc:
        lines.append(f"backtest-corrected (secondary; assumes the next step up is biased like the last): predicted "
                     f"{bc['predicted']:.4f} [{bc['predicted_low']:.4f}, {bc['predicted_high']:.4f}], measured "
                     f"{h['measured']:.4f}: {'inside' if h.get('backtest_corrected_inside') else 'outside'}")
    lines += [f"  likely: {r}" for r in h["reasons"]]
    rec = doc["recommendation"]
    if "error" in rec:
        lines.append(f"recommendation: not made: {rec['error']}")
    else:
        obj = rec["objective"]
        what = (f"target loss {obj['target_loss']:g}" if "target_loss" in obj
                else f"budget {obj['budget_flops']:.3g} FLOPs")
        ivs = rec.get("intervals", {})

        def r_iv(name, k, v, fmt):
            i = ivs.get(k)
            return f"{name} {fmt(v)}" + (f" [{fmt(i['low'])}, {fmt(i['high'])}]" if i else "")

        parts = [r_iv("N", "N_opt", rec["params"], _si), r_iv("D", "D_opt", rec["tokens"], _si),
                 r_iv("loss", "loss_at_budget", rec["loss"], lambda x: f"{x:.4f}")]
        line = f"recommendation for {what}: " + ", ".join(parts) + f" at {rec['compute_flops']:.3g} FLOPs"
        if "estimated_train_s_here" in rec:
            line += f"; about {rec['estimated_train_s_here'] / 60:.1f} min to train here"
        lines.append(line)
        dc = rec.get("data_constrained")
        if dc and "error" not in dc:
            lines.append(f"  that D is {rec['tokens'] / dc['unique_tokens']:.0f} epochs of this corpus; with its "
                         f"{_si(dc['unique_tokens'])} unique tokens (Muennighoff 2023, decay constants borrowed): "
                         f"N {_si(dc['params'])}, D {_si(dc['tokens'])} ({dc['epochs']:.0f} epochs), "
                         f"loss {dc['loss']:.4f}")
        elif dc:
            lines.append(f"  data-constrained plan: not made: {dc['error']}")
    for w in doc["warnings"]:
        lines.append(f"warning: {w}")
    lines.append(f"results: {Path(doc['out_dir']) / 'runs.csv'} (planner fit reads it), "
                 f"{Path(doc['out_dir']) / 'sweep.json'}")
    if doc.get("plots"):
        lines.append("plots: " + ", ".join(doc["plots"]))
    return lines


# -- figures -------------------------------------------------------------------------------------------

def _xy(records, role=None):
    rs = [r for r in records if role is None or r["role"] == role]
    N = np.array([r["result"]["params_nonembedding"] for r in rs], dtype=float)
    D = np.array([r["result"]["tokens_seen"] for r in rs], dtype=float)
    L = np.array([r["result"]["final_val_loss"] for r in rs], dtype=float)
    return N, D, L


def fit_figure(doc: dict, fit, records: list[dict]):
    from ..render.plots import _matplotlib

    Figure, _ = _matplotlib()
    fig = Figure(figsize=(11.5, 5.0))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
    p = point_params(fit)
    rows = doc["ladder"]["rows"]
    colors = _colors(len(rows))
    iso = [r for r in records if r["role"] in ("isoflop", "extension")]
    for color, row in zip(colors, rows, strict=True):
        C = row["budget_flops"]
        pts = [r for r in iso if r["rung"]["budget_flops"] == C]
        N, D, L = _xy(pts)
        grid = np.geomspace(N.min() / 1.6, N.max() * 1.6, 100)
        ax.plot(grid, law_loss(p, grid, C / (6 * grid)), color=color, lw=1.3)
        ax.scatter(N, L, color=color, s=30, zorder=3, label=f"isoFLOP C = {C:.2g}")
        ext = [r for r in pts if r["role"] == "extension"]
        if ext:
            Ne, _, Le = _xy(ext)
            ax.scatter(Ne, Le, facecolor="none", edgecolor=color, s=90, lw=1.2, zorder=4)
    if any(r["role"] == "extension" for r in iso):
        ax.scatter([], [], facecolor="none", edgecolor="grey", s=90, lw=1.2, label="row extension (bracketing)")
    N, D, L = _xy(records, "suggested")
    if N.size:
        ax.scatter(N, L, marker="s", facecolor="none", edgecolor="black", s=46, zorder=4,
                   label="suggested (C = " + ", ".join(f"{c:.2g}" for c in 6 * N * D) + ")")
    h = doc["heldout"]
    Ch = h["compute_flops"]
    grid = np.geomspace(h["N"] / 6, h["N"] * 6, 100)
    ax.plot(grid, law_loss(p, grid, Ch / (6 * grid)), color="crimson", lw=1.1, ls="--",
            label=f"fit at the held-out C = {Ch:.2g}")
    ax.errorbar([h["N"]], [h["predicted"]], yerr=[[h["predicted"] - h["predicted_low"]],
                                                   [h["predicted_high"] - h["predicted"]]],
                fmt="o", color="crimson", mfc="white", capsize=4, zorder=5,
                label=f"held-out predicted ({round(100 * h['level'])}%)")
    ax.scatter([h["N"]], [h["measured"]], marker="*", s=160, color="crimson", zorder=6, label="held-out measured")
    ax.set_xscale("log")
    ax.set_xlabel("N, non-embedding parameters")
    ax.set_ylabel(f"final validation loss ({LOSS_UNITS})")
    ax.set_title("IsoFLOP rows and the law fitted to them (D = C / 6N)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="upper left")

    fitted = [r for r in records if r["role"] != "heldout"]
    N, D, L = _xy(fitted)
    pred = law_loss(p, N, D)
    lo, hi = min(L.min(), pred.min(), h["measured"], h["predicted_low"]), max(L.max(), pred.max())
    pad = 0.03 * (hi - lo)
    ax2.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=1, ls=":")
    roles = [r["role"] for r in fitted]
    for role, marker in (("isoflop", "o"), ("suggested", "s")):
        m = np.array([x == role or (role == "isoflop" and x == "extension") for x in roles])
        if m.any():
            ax2.scatter(pred[m], L[m], marker=marker, s=28, color="tab:blue" if role == "isoflop" else "black",
                        label=f"{role} rungs (fitted)")
    ax2.errorbar([h["predicted"]], [h["measured"]], xerr=[[h["predicted"] - h["predicted_low"]],
                                                           [h["predicted_high"] - h["predicted"]]],
                 fmt="*", ms=12, color="crimson", capsize=4, label="held-out (not fitted)")
    rms = float(np.sqrt(np.mean(np.log(L / pred) ** 2)))
    ax2.set_xlabel(f"fitted L̂(N, D) ({LOSS_UNITS})")
    ax2.set_ylabel(f"measured loss ({LOSS_UNITS})")
    ax2.set_title(f"Measured vs fitted (RMS log residual {rms:.4f})")
    ax2.grid(True, alpha=0.25)
    ax2.legend(fontsize=7.5, loc="upper left")
    f = doc["fit"]
    fig.suptitle(f"L = {f['E']:.3g} + {f['A']:.3g}/N^{f['alpha']:.3f} + {f['B']:.3g}/D^{f['beta']:.3f}  "
                 f"(fitted to {f['runs']['used']} rungs; the held-out rung is not in the fit)", fontsize=10)
    fig.tight_layout()
    return fig


def heldout_figure(doc: dict, fit, records: list[dict]):
    from ..laws.chinchilla import frontier_loss
    from ..render.plots import _matplotlib

    Figure, _ = _matplotlib()
    fig = Figure(figsize=(8.6, 5.4))
    ax = fig.subplots()
    h = doc["heldout"]
    N, D, L = _xy([r for r in records if r["role"] != "heldout"])
    C = 6 * N * D
    sc = ax.scatter(C, L, c=np.log10(N), cmap="viridis", s=30, zorder=3, label="fitted rungs")
    cbar = fig.colorbar(sc, ax=ax, pad=0.01)
    cbar.set_label("log10 N")
    law = fit.law()
    grid = np.geomspace(C.min() / 1.5, h["compute_flops"] * 3, 160)
    ax.plot(grid, frontier_loss(law, grid), color="black", lw=1.3, label="fitted frontier L*(C)")
    if fit.samples is not None and len(fit.samples) >= 10:
        draws = law.draws()
        band = np.array([frontier_loss(draws, c) for c in grid])  # (grid, K)
        tail = 100 * (1 - h["level"]) / 2
        lo, hi = np.nanpercentile(band, [tail, 100 - tail], axis=1)
        ax.fill_between(grid, lo, hi, color="black", alpha=0.12, lw=0,
                        label=f"frontier, {round(100 * h['level'])}% of bootstrap draws")
    x = h["compute_flops"]
    ax.errorbar([x], [h["predicted"]], yerr=[[h["predicted"] - h["predicted_low"]],
                                             [h["predicted_high"] - h["predicted"]]],
                fmt="o", color="crimson", mfc="white", capsize=5, lw=1.6, zorder=5,
                label=f"held-out predicted L̂(N, D), {round(100 * h['level'])}% prediction interval"
                      + (" (backtest-calibrated)" if h.get("calibrated") else ""))
    ax.errorbar([x * 1.15], [h["predicted"]], yerr=[[h["predicted"] - h["confidence_low"]],
                                                    [h["confidence_high"] - h["predicted"]]],
                fmt="none", ecolor="crimson", alpha=0.5, capsize=3, lw=3, label="confidence interval (law only)")
    bc = h.get("backtest_corrected")
    if bc:
        ax.errorbar([x / 1.15], [bc["predicted"]], yerr=[[bc["predicted"] - bc["predicted_low"]],
                                                         [bc["predicted_high"] - bc["predicted"]]],
                    fmt="D", ms=5, color="grey", capsize=3, lw=1, zorder=4,
                    label="backtest-corrected prediction (secondary)")
    ax.scatter([x], [h["measured"]], marker="*", s=220, color="crimson", zorder=6, label="held-out measured")
    bts = h.get("backtests") or {}
    pts = bts.get("points") or []
    if pts:
        pc = np.array([6 * p["N"] * p["D"] for p in pts]) * np.geomspace(0.93, 1.07, len(pts))  # spread, same C
        mid = np.array([p["median"] for p in pts])
        ax.errorbar(pc, mid, yerr=[mid - np.array([p["low"] for p in pts]), np.array([p["high"] for p in pts]) - mid],
                    fmt="_", color="tab:orange", capsize=2, lw=1, zorder=4,
                    label=f"backtests: predicted from the rows below, stated {round(100 * h['level'])}% interval")
        ax.scatter(pc, [p["measured"] for p in pts], marker="x", s=36, color="tab:orange", zorder=5,
                   label=f"backtests measured ({bts['coverage_stated']:.0%} inside stated, "
                         f"{bts['coverage_calibrated_loo']:.0%} calibrated)")
    verdict = "inside" if h["inside"] else f"outside by {h['miss']:.3f}"
    kind = f"x{h['calibration_factor']:.2f} backtest-calibrated " if h.get("calibrated") else ""
    ax.set_title(f"Held-out N={_si(h['N'])}, D={_si(h['D'])}: predicted {h['predicted']:.3f} "
                 f"[{h['predicted_low']:.3f}, {h['predicted_high']:.3f}] ({kind}{round(100 * h['level'])}%), "
                 f"measured {h['measured']:.3f} ({verdict})", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("compute C = 6·N·D (FLOPs, N non-embedding)")
    ax.set_ylabel(f"final validation loss ({LOSS_UNITS})")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower left", framealpha=0.85)
    fig.tight_layout()
    return fig


def _colors(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["plasma"]
    return [cmap(0.1 + 0.75 * i / max(1, n - 1)) for i in range(n)]


def write_plots(doc: dict, fit, records: list[dict], out_dir) -> list[str]:
    """Write fit.png and heldout.png (both from the fit that made the prediction); the paths."""
    from ..render.plots import _save

    out = Path(out_dir)
    paths = []
    for name, make in (("fit.png", fit_figure), ("heldout.png", heldout_figure)):
        paths.append(str(_save(make(doc, fit, records), out / name)))
    return paths
