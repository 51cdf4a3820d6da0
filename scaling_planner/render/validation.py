"""``planner validate``'s tables: one per group of the tuned-stack validation and one for the published
end-to-end runs, each with its summary rows."""

from __future__ import annotations

from .text import table


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def group_table(g) -> str:
    """One group of tuned-stack cases: predicted, published, error, and its summary line."""
    rows = []
    for c in g.cases:
        mark = {"strict": "", "miss": "", "unsupported": " (not modelled)"}[c.status]
        flag = "" if c.within_tolerance is None else ("ok" if c.within_tolerance else
                                                      ("known miss" if c.status == "miss" else "MISS"))
        rows.append([c.name + mark, _fmt(c.predicted), _fmt(c.published), _pct(c.error), flag])
    med = "-" if g.median_abs_error is None else f"{g.median_abs_error:.1%}"
    mx = "-" if g.max_abs_error is None else f"{g.max_abs_error:.1%}"
    metric = g.cases[0].metric if g.cases else ""
    misses = f" ({g.known_misses} known misses, what was checked in the data)" if g.known_misses else ""
    return (f"\n{g.title} [{metric}]\n  source: {g.source}\n" + table(rows, ["case", "predicted", "published",
                                                                              "error", ""])
            + f"\n  summary: {g.within_tolerance}/{g.scored_cases} within {g.tolerance:.0%}{misses}, median |error| "
              f"{med}, max {mx}")


def published_table(p) -> str:
    """The published end-to-end runs, leave-one-out, and the summary rows the acceptance reads."""
    from ..base.units import format_si

    rows = []
    for r in p.runs:
        how = "LOO" if r.role == "scored" else r.role
        rows.append([r.name, r.tier, how, f"{r.gpus} x {r.gpu}", format_si(r.published_gpu_hours),
                     format_si(r.predicted_gpu_hours), f"{format_si(r.p10)} .. {format_si(r.p90)}",
                     f"{r.log_error:+.2f}", "in" if r.in_band else "out", format_si(r.tuned_gpu_hours)])
    s, m, tc = p.summary, p.mechanism, p.tier_c
    lines = ["\nPublished end-to-end pre-training runs: GPU-hours, predicted P50 and P10 .. P90 "
             "(scored runs leave-one-out)", f"  source: {p.source}",
             table(rows, ["run", "tier", "scored", "GPUs", "published", "predicted", "P10 .. P90",
                          "log err", "band", "tuned"]),
             "",
             f"  summary (tiers A+B, {s['runs']} runs, leave-one-out): median |log(predicted/published)| "
             f"{s['loo_median_abs_log_error']:.3f}, max {s['loo_max_abs_log_error']:.3f}, mean log error "
             f"{s['loo_mean_log_error']:+.3f}",
             f"  best single constant MFU fitted the same way ({s['constant_mfu']:.3f}): median |log error| "
             f"{s['constant_mfu_loo_median_abs_log_error']:.3f}; ratio {s['ratio_to_constant_mfu']:.2f}",
             f"  P10-P90 band: coverage {s['band_coverage_p10_p90']:.0%}, median P90/P10 "
             f"{s['median_p90_over_p10']:.2f}",
             f"  the tuned stack alone under-predicts a median "
             f"{s['tuned_median_ratio_published_over_predicted']:.2f}x; "
             f"without the eager-stack traffic the leave-one-out error is {m['without_unfused_traffic']:.3f} "
             f"(with: {m['with_unfused_traffic']:.3f})"]
    if tc["runs"]:
        lines.append(f"  tier C (not fitted, shipped prior): {tc['runs']} runs, median |log error| "
                     f"{tc['median_abs_log_error']:.3f}, P10-P90 coverage {tc['band_coverage_p10_p90']:.0%}")
    lines += [f"  bound: {b}" for b in p.bounds]
    return "\n".join(lines)
