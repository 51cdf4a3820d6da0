"""``planner validate``: every validation case, predicted from the model alone, against what was published.

One table per group of the tuned-stack validation (predicted, published, error, with a summary row:
median and max error, how many within the group's tolerance), then the published end-to-end runs
scored leave-one-out (summary: median and max error, the best constant MFU fitted the same way,
band coverage, band width). Imports only argparse at the top.
"""

from __future__ import annotations

import argparse

from .common import print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate", help="how far to trust the training estimates: every validation case and its error",
        description="Predict every validation case (validation/data: Korthikanti 2022, PTD-P, vTrain, MT-NLG, "
                    "Megatron-Core and NeMo on H100, Megatron-Bridge on Blackwell, published end-to-end "
                    "pre-training runs) from the hardware profiles and the model alone and print the errors. "
                    "The published runs are scored leave-one-out.")
    parser.add_argument("--group", metavar="ID", action="append",
                        help="only these groups (repeatable; 'published' for the end-to-end runs)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..base.errors import InputError
    from ..validation.report import build

    report = build()
    if args.group:
        known = {g.id for g in report.groups} | {"published"}
        for g in args.group:
            if g not in known:
                raise InputError("group", f"unknown group {g!r}; known: {', '.join(sorted(known))}")
        report.groups = [g for g in report.groups if g.id in args.group]
    if args.json:
        print_json(report)
        return 0
    from ..render.validation import group_table, published_table

    for g in report.groups:
        print(group_table(g))
    if not args.group or "published" in args.group:
        print(published_table(report.published))
    print(f"\n({report.seconds:.1f} s)")
    return 0
