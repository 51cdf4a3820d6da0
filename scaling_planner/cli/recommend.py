"""``planner recommend``: from a target loss, a budget or a fixed cluster to the model to train and
what training it costs on real GPUs (the law picks N and D, the training simulator the layout)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "recommend",
        help="the model, GPUs, time and cost for a target loss, a budget or a fixed cluster",
        description="Plan a training run: the compute-optimal model (Hoffmann 2022 Eq. 4) for a target loss, "
        "a FLOP / dollar / GPU-hour budget, or a fixed cluster and deadline, simulated on real GPUs "
        "(layout, MFU, wall-clock, GPU-hours, cost, energy), with alternatives and the law's uncertainty.",
    )
    add_plan_arguments(p)
    p.add_argument("--explain", action="store_true", help="print the arithmetic with the numbers put in")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def add_plan_arguments(p) -> None:
    """The flags of a plan (shared by ``recommend`` and ``plot``): one per field of
    :class:`~scaling_planner.planning.request.PlanRequest` (:mod:`.options`), and the law."""
    from ..planning.request import PlanRequest
    from .options import add_model_arguments

    add_model_arguments(p, PlanRequest)
    p.add_argument("--law", metavar="NAME", help="scaling law preset (default besiroglu2024; see planner law list)")
    p.add_argument("--law-file", metavar="FIT.json", help="a law fitted by planner fit --out")


def plan_from_arguments(args):
    """The Recommendation the plan flags ask for (an InputError names the flag)."""
    from ..laws.presets import resolve_law
    from ..planning.recommend import recommend
    from ..planning.request import PlanRequest
    from .options import build_request

    request = build_request(PlanRequest, args)
    return recommend(resolve_law(args.law, args.law_file), request)


def run(args) -> int:
    from ..render.explain import explain_lines
    from ..render.plan import render
    from .common import print_json

    rec = plan_from_arguments(args)
    if args.json:
        print_json(rec)
        return 0
    print(render(rec))
    if args.explain:
        print("\nThe arithmetic")
        print("\n".join(f"  {line}" for line in explain_lines(rec)))
    return 0
