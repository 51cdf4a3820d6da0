"""The ``planner`` command: parse, call the API, print a table or ``--json``.

Each verb lives in its own module ``scaling_planner.cli.<verb>`` with ``register(subparsers)``;
modules import nothing heavy at the top so that ``planner recommend`` starts fast. Errors the
user can cause become one line on stderr and an exit code: 2 bad input, 3 infeasible,
4 measurement failed (``scaling_planner.base.errors``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from ..base.errors import PlannerError

VERBS = ("recommend", "simulate", "serve", "fit", "measure", "profiles", "law", "plot", "sweep", "validate")

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr with exit code 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``planner`` parser: every verb, or with ``only`` just that verb (what a command line that
    names its verb needs: the other verbs' modules are not imported, for the cold start)."""
    parser = OneLineParser(
        prog="planner",
        description="Plan LLM training and serving from scaling laws: model size, tokens, GPUs, time, cost.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"planner (scaling-planner) {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    sub.required = True
    for verb in VERBS if only not in VERBS else (only,):
        name = f"{__name__}.{verb}"
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except PlannerError as exc:
        print(f"planner {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"planner {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
