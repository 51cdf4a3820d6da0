"""Regenerate README.md's "How far to trust the training estimates" section from ``planner validate``'s output.

    python scripts/validation_readme.py          # rewrites the section between the markers, prints it
    python scripts/validation_readme.py --check  # exit 1 when README.md differs from the generated text

The section sits between ``<!-- validate:begin -->`` and ``<!-- validate:end -->``; tests/test_readme_ci.py runs
the check, so the README cannot drift from what the code computes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scaling_planner.validation.report import build

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- validate:begin -->", "<!-- validate:end -->"


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def section(report=None) -> str:
    r = report or build()
    lines = [BEGIN, "",
             "Tuned stacks: published step times and throughputs, each case predicted from the hardware profile and",
             "the step model alone (`planner validate` prints every case).", "",
             "| group | scored cases | within tolerance | median error | max error |",
             "|---|---|---|---|---|"]
    misses = []
    for g in r.groups:
        lines.append(f"| {g.title} | {g.scored_cases} | {g.within_tolerance} (±{g.tolerance:.0%}) | "
                     f"{_pct(g.median_abs_error)} | {_pct(g.max_abs_error)} |")
        for c in g.cases:
            if c.status == "miss":
                misses.append(f"{g.id} {c.name} {c.error:+.1%}")
            if c.status == "unsupported":
                misses.append(f"{g.id} {c.name}: {c.note}")
    s, m, tc = r.published.summary, r.published.mechanism, r.published.tier_c
    lines += ["", "Known misses (what was checked is in `scaling_planner/validation/data/tuned_stack.yaml`): "
              + "; ".join(misses) + ".", "",
              f"End to end: {s['runs']} published pre-training runs (tiers A and B of "
              "`../shared/data/published_training_runs.csv`), GPU-hours scored leave-one-out:", "",
              "| figure | value |", "|---|---|",
              f"| median \\|log(predicted / published)\\| | {s['loo_median_abs_log_error']:.3f} "
              f"(max {s['loo_max_abs_log_error']:.3f}, mean {s['loo_mean_log_error']:+.3f}) |",
              f"| the best single constant MFU ({s['constant_mfu']:.3f}), fitted the same way | "
              f"{s['constant_mfu_loo_median_abs_log_error']:.3f} (ratio {s['ratio_to_constant_mfu']:.2f}) |",
              f"| P10-P90 band: coverage, median P90 / P10 | {s['band_coverage_p10_p90']:.0%}, "
              f"{s['median_p90_over_p10']:.2f} |",
              f"| the tuned stack alone | {s['tuned_median_ratio_published_over_predicted']:.2f}x too cheap (median) |",
              f"| without the eager-stack traffic (mechanism 1) | {m['without_unfused_traffic']:.3f} |"]
    if tc["runs"]:
        lines.append(f"| tier C runs, not fitted (out of sample) | {tc['median_abs_log_error']:.3f}, band coverage "
                     f"{tc['band_coverage_p10_p90']:.0%} ({tc['runs']} runs) |")
    lines += ["", "Distilled (Llama 3.2) and implausibly efficient (Phi-2, TinyLlama) rows are predicted and shown, "
              "not scored; GLM-130B's hours are an upper bound: " + "; ".join(r.published.bounds) + ".", "", END]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"README.md has no {BEGIN} ... {END} section", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + section() + tail
    if "--check" in argv:
        if new != text:
            print("README.md's validation section is stale: run python scripts/validation_readme.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    print(section())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
