"""``planner plot``: the figures of a plan (loss-compute frontier, isoFLOP curves, cost of the
alternatives, and MoE against dense when the plan has experts) as PNG files. Takes the same
objective flags as ``planner recommend``."""

from __future__ import annotations


def register(sub) -> None:
    from .recommend import add_plan_arguments

    p = sub.add_parser(
        "plot",
        help="PNG figures of a plan: loss-compute frontier, isoFLOP curves, cost of the alternatives",
        description="Plan as planner recommend does (same objective flags), then write frontier.png (compute-optimal "
        "loss vs FLOPs with the law's P10-P90 band, the plan and the alternatives), isoflops.png (loss vs model "
        "size at budgets around the plan's) and costs.png (training vs lifetime inference/serving cost of the "
        "alternatives) into --out; with --experts also moe.png (Krajewski 2024's MoE against dense over compute). "
        "Needs matplotlib (pip install 'scaling-planner[plot]').",
    )
    add_plan_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the PNG files (created if missing)")
    p.add_argument("--json", action="store_true", help='print one JSON object {"files": [...]}')
    p.set_defaults(func=run)


def run(args) -> int:
    from ..laws.presets import resolve_law
    from ..render.plots import _matplotlib, check_out_dir, write_plots
    from .common import print_json
    from .recommend import plan_from_arguments

    _matplotlib()  # fail before planning when matplotlib is missing
    check_out_dir(args.out)  # and when the directory is unusable
    plan = plan_from_arguments(args)
    files = write_plots(plan, resolve_law(args.law, args.law_file), args.out)
    if args.json:
        print_json({"files": files})
    else:
        print("\n".join(files))
    return 0
