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
import re
import sys

from ..base.errors import PlannerError

VERBS = ("recommend", "simulate", "serve", "fit", "measure", "profiles", "law", "plot", "sweep", "validate")

EXIT_USAGE = 2


# A token that is a value, never a flag: a negative number in any form a quantity takes (-5e23, -1.5T,
# -.5, -1e400) or -inf / -nan. argparse's own test (-5, -0.5 only) would read "--budget-flops -5e23" as
# two flags ("expected one argument"); taken as a value, the field's check says what is allowed.
_VALUE_TOKEN = re.compile(r"^-(?:\.?\d.*|inf(?:inity)?|nan)$", re.IGNORECASE | re.DOTALL)


# Characters str.splitlines() breaks a line at: a file name or word echoed in an error keeps the error on
# one line with these written as escapes.
_LINE_BREAKS = {ord(c): c.encode("unicode_escape").decode() for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: object) -> str:
    """``text`` on one line: line breaks (from a user's file name, say) written as escapes."""
    return str(text).translate(_LINE_BREAKS)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr with exit code 2 (no usage dump), and a
    negative number (``-5e23``, ``-inf``) is an argument's value, not an unknown flag."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {one_line(self.prog)} --help)\n")

    def _parse_optional(self, arg_string):
        if _VALUE_TOKEN.match(arg_string):
            return None  # a positional / an option's value
        return super()._parse_optional(arg_string)


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
    nul = next((a for a in argv if "\x00" in str(a)), None)
    if nul is not None:  # no file name or word holds one (a shell cannot even pass one): refused up front
        print(f"planner: error: argument {nul!r} holds a NUL character", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser(argv[0] if argv else None)
    if not argv:  # no verb: the usage and the verbs, as an error (exit 2)
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except PlannerError as exc:
        print(f"planner {args.verb}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"planner {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
