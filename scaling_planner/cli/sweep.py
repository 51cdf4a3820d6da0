"""``planner sweep``: train a ladder of small real GPTs, fit the law, predict the held-out rung, recommend.

The same code path as ``flows/scaling_sweep.py`` (:func:`scaling_planner.sweep.runner.run_sweep`).
A bad definition (a budget too small for the smallest model, a corpus too small for the tokens asked,
an unknown config key...) is one line on stderr and exit 2, before anything trains.
"""

from __future__ import annotations

import sys
import time

from .common import positive, positive_int

# flag -> SweepDefinition field (each flag overrides the preset and --config)
_FIELDS = {
    "budgets": "budgets_flops", "sizes_per_budget": "sizes_per_budget", "size_span": "size_span",
    "tokens_per_param": "tokens_per_param", "suggested_runs": "suggested_runs", "heldout_flops": "heldout_flops",
    "corpus": "corpus", "max_epochs": "max_epochs", "min_steps": "min_steps", "seed": "seed", "lr": "lr",
    "threads_per_rung": "threads_per_rung", "bootstrap": "bootstrap", "tied": "tied", "target_loss": "target_loss",
    "target_budget_flops": "target_budget_flops", "batch_size": "batch_size", "seq_len": "seq_len",
    "dtype": "dtype", "level": "level",
}


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train a ladder of small GPTs, fit the law, predict the held-out rung before training it",
        description=(
            "Train an isoFLOP ladder of small byte-level GPTs (Ray tasks, one per rung) on one corpus, fit "
            "L = E + A/N^alpha + B/D^beta with bootstrap intervals (N non-embedding params, D tokens, C = 6ND), "
            "train the runs the fit suggests to narrow its prediction, predict the largest (held-out) rung with a "
            "90% interval before training it, then train it and report the error; recommend for a target. "
            "The learning rate is tuned on the smallest row and carried to every size; a row whose minimum sits "
            "at an edge is extended; backtests (fit the rows below each budget, predict the next) report the "
            "intervals' coverage and widen the held-out interval to match. "
            "Results as they finish: DIR/runs.csv (planner fit reads it), DIR/runs/*.json, DIR/sweep.json, "
            "DIR/fit.png, DIR/heldout.png. An interrupted sweep continues with --resume."),
    )
    p.add_argument("--config", metavar="SWEEP.yaml", help="YAML (or JSON) mapping of definition fields "
                   "(budgets_flops, sizes_per_budget, tokens_per_param, ...); flags override it")
    p.add_argument("--ci", action="store_true", help="start from the small CI sweep (3.8-4.0 min on 2 idle "
                   "cores, measured) instead of the default (9.5 min)")
    p.add_argument("--out", metavar="DIR", default="sweep-results", help="results directory (default ./sweep-results)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out, skipping finished rungs")
    p.add_argument("--summary", metavar="FILE.json", help="also write sweep.json here (e.g. benchmarks/results/)")
    p.add_argument("--dry-run", action="store_true", help="check the definition and print the ladder; train nothing")
    p.add_argument("--no-plots", action="store_true", help="skip fit.png and heldout.png")
    p.add_argument("--ray-address", metavar="ADDR", help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--json", action="store_true", help="print the sweep.json document instead of the summary")
    g = p.add_argument_group("definition (override the preset and --config)")
    g.add_argument("--budgets", type=_budgets, metavar="C1,C2,...", help="isoFLOP budgets in FLOPs, C = 6ND")
    g.add_argument("--sizes-per-budget", type=positive_int("sizes_per_budget"), metavar="K")
    g.add_argument("--size-span", type=positive("size_span"), metavar="X", help="largest / smallest N in a row")
    g.add_argument("--tokens-per-param", type=positive("tokens_per_param"), metavar="R", help="D/N at a row's centre")
    g.add_argument("--suggested-runs", type=int, metavar="K", help="extra rungs chosen by the fitter")
    g.add_argument("--heldout-flops", type=positive("heldout_flops"), metavar="C", help="compute of the held-out rung")
    g.add_argument("--corpus", metavar="FILE", help="training text, .xz read decompressed (default: docs_large.txt.xz, "
                   "shipped with the package)")
    g.add_argument("--max-epochs", type=positive("max_epochs"), metavar="E")
    g.add_argument("--min-steps", type=positive_int("min_steps"), metavar="S")
    g.add_argument("--seed", type=int)
    g.add_argument("--lr", type=positive("lr"))
    g.add_argument("--threads-per-rung", type=positive_int("threads_per_rung"), metavar="T")
    g.add_argument("--bootstrap", type=positive_int("bootstrap"), metavar="K")
    g.add_argument("--tied", action="store_const", const=True, default=None, help="fit with alpha = beta")
    g.add_argument("--level", type=positive("level"), metavar="P", help="interval level (default 0.9)")
    g.add_argument("--batch-size", type=positive_int("batch_size"), metavar="B")
    g.add_argument("--seq-len", type=positive_int("seq_len"), metavar="T")
    g.add_argument("--dtype", choices=("auto", "fp32", "bf16", "tf32"))
    obj = g.add_mutually_exclusive_group()
    obj.add_argument("--target-loss", type=positive("target_loss"), metavar="L", help="recommend for this loss")
    obj.add_argument("--target-budget-flops", type=positive("target_budget_flops"), metavar="C",
                     help="recommend for this compute (default 10x the held-out rung's)")
    p.set_defaults(func=run)


def _budgets(text: str) -> list[float]:
    import argparse

    from ..base.errors import InputError
    from ..base.units import parse_positive
    from .common import in_range

    try:
        return [in_range(parse_positive(part.strip(), "budgets"), "budgets", part.strip())
                for part in text.split(",") if part.strip()]
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_config(path: str) -> dict:
    """The mapping in a YAML or JSON file (InputError naming the file when it is not one)."""
    from pathlib import Path

    import yaml

    from ..base.errors import InputError

    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise InputError("config", f"no such file: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("config", f"cannot read {p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise InputError("config", f"{p} is not YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("config", f"{p} must hold a mapping of definition fields, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def definition_from_arguments(args):
    """The SweepDefinition of a command line: preset (default or --ci) < --config < flags."""
    from ..sweep.design import SweepDefinition

    fields = load_config(args.config) if args.config else {}
    for flag, field in _FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            fields[field] = value
    if args.target_loss is not None:  # a flag's objective replaces the config's
        fields.pop("target_budget_flops", None)
    if args.target_budget_flops is not None:
        fields.pop("target_loss", None)
    return SweepDefinition.ci(**fields) if args.ci else SweepDefinition.default(**fields)


class Progress:
    """Progress on stderr: a redrawn bar on a terminal; elsewhere (logs, CI) one line per message."""

    WIDTH = 24

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.line = ""

    def __call__(self, event: dict) -> None:
        if not self.tty:
            return
        done, total = event["done"], event["total"]
        filled = self.WIDTH * done // max(total, 1)
        elapsed = int(event["elapsed_s"])
        running = f" | running {len(event['running'])}" if event["running"] else ""
        self.line = (f"sweep [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} rungs "
                     f"{elapsed // 60}m{elapsed % 60:02d}s {event['phase']}: {event['label']}{running}")[:150]
        self.stream.write("\r\033[K" + self.line)
        self.stream.flush()

    def log(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self.tty:
            self.stream.write("\r\033[K" + f"[{stamp}] {message}\n" + self.line)
        else:
            self.stream.write(f"[{stamp}] {message}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.line:
            self.stream.write("\r\033[K")
            self.stream.flush()


def render_ladder(defn, csize, ladder) -> str:
    from ..base.units import format_si
    from .common import table

    rows = []
    for C, row in ladder.rows.items():
        for r in row:
            rows.append([f"{C:.3g}", r.role, f"{r.n_layer}x{r.d_model}", format_si(r.params), format_si(r.tokens),
                         f"{r.tokens / r.params:.3g}", f"{r.tokens // defn.tokens_per_step}",
                         f"{r.tokens / csize.train_tokens:.2f}", f"{r.compute_flops:.3g}"])
    h = ladder.heldout
    rows.append([f"{h.budget_flops:.3g}", "heldout", f"{h.n_layer}x{h.d_model}", format_si(h.params),
                 format_si(h.tokens), f"{h.tokens / h.params:.3g}", f"{h.tokens // defn.tokens_per_step}",
                 f"{h.tokens / csize.train_tokens:.2f}", f"{h.compute_flops:.3g}"])
    head = (f"Sweep ladder on {csize.name} ({csize.train_tokens:,} train tokens), C = 6ND with N non-embedding; "
            f"+ {defn.suggested_runs} rung(s) the fit will suggest")
    return head + "\n" + table(rows, ["budget", "role", "LxD", "N", "D", "D/N", "steps", "epochs", "6ND"])


def require_training_stack(dry_run: bool = False) -> None:
    """InputError (one line, exit 2) when the packages a sweep needs are missing: torch (the GPTs, their
    shapes: also for --dry-run) and Ray (the rungs run as Ray tasks), from the ``flows`` extra."""
    import importlib

    from ..base.errors import InputError

    for module in ("torch",) if dry_run else ("torch", "ray"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = isinstance(exc, ModuleNotFoundError) and (exc.name or module).split(".")[0] == module
            why = "is not installed" if missing else f"cannot be imported ({' '.join(str(exc).split())[:120]})"
            raise InputError("sweep", f"needs {module}, which {why}; install the flows extra: "
                                      "pip install 'scaling-planner[flows]'") from None


def ladder_document(defn, csize, ladder) -> dict:
    """The ``--dry-run --json`` document: the definition, the corpus sizes and every planned rung."""
    rung = lambda r: {**r.model_dump(mode="json"), "compute_flops": r.compute_flops,  # noqa: E731
                      "steps": r.tokens // defn.tokens_per_step, "epochs": r.tokens / csize.train_tokens}
    return {
        "dry_run": True,
        "definition": defn.model_dump(mode="json"),
        "corpus": {"name": csize.name, "train_tokens": csize.train_tokens, "val_tokens": csize.val_tokens},
        "rungs": [rung(r) for row in ladder.rows.values() for r in row],
        "heldout": rung(ladder.heldout),
        "suggested_runs": defn.suggested_runs,
    }


def run(args) -> int:
    from .common import print_json

    defn = definition_from_arguments(args)
    require_training_stack(dry_run=args.dry_run)
    from ..sweep.report import summary_lines
    from ..sweep.runner import prepare, run_sweep

    if args.dry_run:
        _, csize, ladder = prepare(defn)
        if args.json:
            print_json(ladder_document(defn, csize, ladder))
        else:
            print(render_ladder(defn, csize, ladder))
        return 0
    progress = Progress()
    command = "planner " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("planner") else None
    try:
        doc = run_sweep(defn, args.out, resume=args.resume, ray_address=args.ray_address, progress=progress,
                        log=progress.log, summary_path=args.summary, plots=not args.no_plots, command=command)
    finally:
        progress.close()
    if args.json:
        print_json(doc)
    else:
        print("\n".join(summary_lines(doc)))
    return 0
