"""``planner recommend``: from a target loss or a budget to the model to train."""

from __future__ import annotations

from .common import positive


def register(sub) -> None:
    p = sub.add_parser(
        "recommend",
        help="the model size and tokens for a target loss or a compute budget",
        description="Recommend the compute-optimal model (Hoffmann 2022 Eq. 4) for a target loss or a FLOP budget.",
    )
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-loss", type=positive("target_loss"), metavar="L",
                      help="the cheapest model that reaches this loss (nats/token)")
    goal.add_argument("--budget-flops", type=positive("budget_flops"), metavar="C",
                      help="the lowest loss this many training FLOPs buy (1e22, 5.76e23)")
    p.add_argument("--law", metavar="NAME", help="scaling law preset (default besiroglu2024; see planner law list)")
    p.add_argument("--law-file", metavar="FIT.json", help="a law fitted by planner fit --out")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..laws.presets import resolve_law
    from ..planner import recommend
    from .common import print_json

    law = resolve_law(args.law, args.law_file)
    rec = recommend(law, target_loss=args.target_loss, budget_flops=args.budget_flops)
    if args.json:
        print_json(rec)
    else:
        print(render(rec))
    return 0


def render(rec) -> str:
    from ..units import format_si
    from .common import table

    m, law = rec.model, rec.law
    goal = (f"target loss {rec.target_loss:g}" if rec.objective == "target_loss"
            else f"budget {rec.budget_flops:.3g} FLOPs")
    lines = [f"Compute-optimal plan for {goal}, law {law.name} "
             f"(E={law.E:.4g}, A={law.A:.4g}, B={law.B:.4g}, alpha={law.alpha:.4g}, beta={law.beta:.4g})"]
    u = rec.uncertainty
    rows = [
        ["model size N", format_si(m.params, "params"),
         f"{format_si(u.optimal_params.p10)} .. {format_si(u.optimal_params.p90)}" if u else ""],
        ["training tokens D", format_si(m.tokens, "tokens"),
         f"{format_si(u.optimal_tokens.p10)} .. {format_si(u.optimal_tokens.p90)}" if u else ""],
        ["tokens per parameter", f"{m.tokens_per_param:.1f}", ""],
        ["training compute C = 6ND", f"{rec.compute_flops:.3g} FLOPs",
         f"{u.compute_flops.p10:.3g} .. {u.compute_flops.p90:.3g}" if u and u.compute_flops else ""],
        ["predicted loss", f"{m.loss:.4f}", f"{m.loss_band.p10:.4f} .. {m.loss_band.p90:.4f}" if m.loss_band else ""],
        [f"N within {100 * m.near_optimal_rel_tol:g}% of min loss",
         f"{format_si(m.params_near_optimal_low)} .. {format_si(m.params_near_optimal_high)}", ""],
    ]
    lines.append(table(rows, ["", "plan", "P10 .. P90 over the law's spread" if u else ""]))
    if u and u.probability_target_met is not None:
        lines.append(f"\n  Probability that N, D above reach the target under the law's spread: "
                     f"{100 * u.probability_target_met:.0f}% ({u.draws} bootstrap draws)")
    for note in rec.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
