"""``planner fit RUNS.csv``: fit the Chinchilla law to your own runs, with bootstrap intervals."""

from __future__ import annotations

import argparse

from .common import positive


def register(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit L = E + A/N^alpha + B/D^beta to runs (CSV with N, D, loss)",
        description=(
            "Fit E, A, B, alpha, beta by summed Huber (delta 1e-3) on log-loss residuals from the full "
            "4500-start Hoffmann grid (Besiroglu et al. 2024's procedure), with bootstrap intervals."
        ),
    )
    p.add_argument("runs", metavar="RUNS.csv", help="CSV with a header holding N, D and loss columns")
    p.add_argument("--bootstrap", type=_non_negative_int, default=0, metavar="K",
                   help="bootstrap replicates for intervals (e.g. 1000; 0 = none)")
    p.add_argument("--drop-highest", type=_non_negative_int, default=0, metavar="K",
                   help="drop the K highest-loss runs first (Epoch drop 5 on the Chinchilla data)")
    p.add_argument("--tied", action="store_true", help="tie the exponents, alpha = beta")
    p.add_argument("--loss", choices=("huber", "asymmetric"), default="huber",
                   help="huber (default) or asymmetric: a lower envelope that penalises over-predictions")
    p.add_argument("--overestimate-penalty", type=positive("overestimate_penalty"), default=10.0, metavar="P",
                   help="weight of over-predicted runs with --loss asymmetric (default 10)")
    p.add_argument("--budget-flops", type=positive("budget_flops"), default=None, metavar="C",
                   help="report N*, D*, tokens/param and loss at this compute (default 100x the largest run)")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=_non_negative_int, default=42, help="bootstrap seed, a whole number >= 0 "
                   "(default 42)")
    p.add_argument("--out", metavar="FIT.json", help="write the fit (a law file for --law-file) here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value



def run(args) -> int:
    import numpy as np

    from ..base.errors import InputError
    from ..base.io import write_json_atomic
    from ..laws.fit import bootstrap, check_bootstrap, fit_law, fit_report
    from ..laws.runs import load_runs
    from .common import print_json

    if not 0 < args.level < 1:
        raise InputError("level", f"must be between 0 and 1, got {args.level}")
    runs = load_runs(args.runs).drop_highest(args.drop_highest)
    if args.bootstrap:  # before the fit: a count that cannot fit in memory is refused at once
        check_bootstrap(len(runs), args.bootstrap, tied=args.tied)
    fit = fit_law(runs, tied=args.tied, loss_function=args.loss, overestimate_penalty=args.overestimate_penalty)
    if args.bootstrap:
        fit = bootstrap(runs, fit, args.bootstrap, seed=args.seed)
    budget = args.budget_flops or float(100 * np.max(6.0 * runs.N * runs.D))
    doc = fit_report(fit, budget, args.level)
    if args.out:
        write_json_atomic(args.out, doc)
    if args.json:
        shown = dict(doc)
        if "bootstrap" in shown:
            shown["bootstrap"] = {k: v for k, v in shown["bootstrap"].items() if k != "samples"}
        print_json(shown)
        return 0
    print(render(doc, args.out))
    return 0


def render(doc: dict, out: str | None) -> str:
    from ..base.units import format_si
    from .common import table

    lines = [f"Fit of L = E + A/N^alpha + B/D^beta to {doc['runs']['used']} runs from {doc['runs']['path']}"]
    if doc["runs"]["dropped_rows"]:
        lines.append(f"  dropped rows (highest loss): {', '.join(map(str, doc['runs']['dropped_rows']))}")
    loss = doc["loss_function"] + (" (alpha = beta)" if doc["tied_exponents"] else "")
    lines.append(f"  objective: summed {loss} loss on log L, delta {doc['huber_delta']:g}: {doc['objective']:.6g}")
    intervals = doc.get("intervals")
    header = ["param", "value"] + (["se", f"{int(100 * intervals['E']['level'])}% interval"] if intervals else [])
    rows = []
    for k in ("E", "A", "B", "alpha", "beta"):
        row = [k, f"{doc[k]:.6g}"]
        if intervals:
            iv = intervals[k]
            row += [f"{iv['se']:.3g}", f"[{iv['low']:.5g}, {iv['high']:.5g}]"]
        rows.append(row)
    lines.append(table(rows, header))
    lines.append(f"\nAt a budget of {doc['budget_flops']:.3g} FLOPs (C = 6ND):")
    names = {"a": "a = beta/(alpha+beta)", "N_opt": "N* (params)", "D_opt": "D* (tokens)",
             "tokens_per_param": "tokens per param", "loss_at_budget": "loss L*(C)"}
    derived_iv = doc.get("derived_intervals")
    rows = []
    for k, label in names.items():
        v = doc["derived"][k]
        fmt = (lambda x: format_si(x)) if k in ("N_opt", "D_opt") else (lambda x: f"{x:.4g}")
        row = [label, fmt(v)]
        if derived_iv:
            iv = derived_iv[k]
            row.append(f"[{fmt(iv['low'])}, {fmt(iv['high'])}]")
        rows.append(row)
    lines.append(table(rows, ["quantity", "value"] + (["interval"] if derived_iv else [])))
    d = doc["diagnostics"]
    lines.append(
        f"\nConvergence: {d['converged_starts']}/{d['starts']} starts converged, {d['agreeing_starts']} reached "
        f"the best optimum; gradient norm {d['grad_norm']:.1e} after {d['iterations']} iterations."
    )
    if "bootstrap" in doc:
        b = doc["bootstrap"]
        lines.append(f"Bootstrap: {b['replicates']} replicates (seed {b['seed']}), {b['failed']} failed to converge.")
    for w in d["warnings"]:
        lines.append(f"warning: {w}")
    if out:
        lines.append(f"Wrote {out} (use it with --law-file).")
    return "\n".join(lines)
