"""``planner law list | show NAME``: the scaling laws the planner knows, with their provenance."""

from __future__ import annotations

REFERENCE_BUDGETS_FLOPS = (1e21, 5.76e23, 1e25)  # 5.76e23: Chinchilla's own budget (Hoffmann Table 3)


def register(sub) -> None:
    p = sub.add_parser("law", help="list the scaling laws or show one with its provenance")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("name", nargs="?", help="law name (for show)")
    p.add_argument("--law-file", metavar="FIT.json", help="show a law fitted by planner fit")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def describe(law) -> dict:
    """A law's parameters, provenance and the allocation it implies at reference budgets."""
    doc = law.to_dict()
    doc["form"] = "L(N, D) = E + A/N^alpha + B/D^beta (N all parameters, D training tokens)"
    doc["allocation"] = [
        {
            "budget_flops": C,
            "params": float(law.optimal_params(C)),
            "tokens": float(law.optimal_tokens(C)),
            "tokens_per_param": float(law.tokens_per_param(C)),
            "loss": float(law.frontier_loss(C)),
        }
        for C in REFERENCE_BUDGETS_FLOPS
    ]
    doc["parameter_draws"] = 0 if law.samples is None else len(law.samples)
    return doc


def run(args) -> int:
    from ..base.errors import InputError
    from ..base.units import format_si
    from ..laws.presets import DEFAULT_LAW, get_law, law_names, resolve_law
    from .common import print_json, table

    if args.action == "list" and not args.law_file:
        laws = [get_law(n, with_samples=False) for n in law_names()]
        if args.json:
            print_json({"default": DEFAULT_LAW, "laws": [law.to_dict() for law in laws]})
            return 0
        rows = [[f"{law.name}{' (default)' if law.name == DEFAULT_LAW else ''}", f"{law.E:.4g}", f"{law.A:.5g}",
                 f"{law.B:.5g}", f"{law.alpha:.4g}", f"{law.beta:.4g}"] for law in laws]
        print(table(rows, ["law", "E", "A", "B", "alpha", "beta"]))
        print("\n  planner law show NAME  prints a law's provenance and the allocation it implies.")
        return 0
    if not args.name and not args.law_file:
        raise InputError("name", "planner law show needs a law name (see planner law list) or --law-file")
    law = resolve_law(None, args.law_file) if args.law_file else get_law(args.name)
    doc = describe(law)
    if args.json:
        print_json(doc)
        return 0
    print(f"{law.name}: {doc['form']}")
    print(f"  E = {law.E:.6g}, A = {law.A:.6g}, B = {law.B:.6g}, alpha = {law.alpha:.6g}, beta = {law.beta:.6g}")
    for k, v in law.extra.items():
        print(f"  {k} = {v:g}")
    print(f"  source: {law.source}")
    if doc["parameter_draws"]:
        print(f"  carries {doc['parameter_draws']} parameter draws (bootstrap) for uncertainty bands")
    rows = [[f"{a['budget_flops']:.3g}", format_si(a["params"]), format_si(a["tokens"]),
             f"{a['tokens_per_param']:.1f}", f"{a['loss']:.3f}"] for a in doc["allocation"]]
    print("\n  Compute-optimal allocation (Hoffmann Eq. 4):")
    print(table(rows, ["budget FLOPs", "N*", "D*", "D*/N*", "L*(C)"], indent="    "))
    return 0
