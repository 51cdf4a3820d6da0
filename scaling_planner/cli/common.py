"""Helpers shared by the CLI verbs: number arguments, JSON output, plain tables."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys

from ..base.units import parse_positive, parse_quantity


def _argument_type(parse, field: str):
    """An argparse ``type`` from a parser that raises InputError: the error becomes a usage error."""

    def convert(text: str):
        import argparse

        from ..base.errors import InputError

        try:
            return parse(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = field
    return convert


# Every number the command line reads is 0 or lies within these magnitudes: any product or ratio of a few
# of them stays a finite float64 (1e308 of a price made "$inf"; a subnormal 5e-324 of tokens divided by zero).
MAGNITUDE_MIN = 1e-100
MAGNITUDE_MAX = 1e100
# The largest whole number a flag takes (devices, tokens per query, batch, sequence length...): a C int,
# far above any real count, so that numpy's int64 products of a few of them cannot wrap around.
INT_MAX = 2**31 - 1


def in_range(value: float, field: str, text=None) -> float:
    """``value``, or InputError when it is not 0 and its magnitude lies outside [1e-100, 1e100]."""
    from ..base.errors import InputError

    if value != 0 and not MAGNITUDE_MIN <= abs(value) <= MAGNITUDE_MAX:
        raise InputError(field, f"{text if text is not None else value!r} is out of range: a number's magnitude "
                                f"must lie between {MAGNITUDE_MIN:g} and {MAGNITUDE_MAX:g} (or be 0)")
    return value


def positive(field: str, *, allow_dollar: bool = False):
    """An argparse ``type`` for a strictly positive quantity (1e22, 2.5T, $1.2M)."""
    return _argument_type(lambda text: in_range(parse_positive(text, field, allow_dollar=allow_dollar), field, text),
                          field)


def quantity(field: str):
    """An argparse ``type`` for any finite quantity."""
    return _argument_type(lambda text: in_range(parse_quantity(text, field), field, text), field)


def bounded(field: str, minimum: float = 0.0, maximum: float | None = None):
    """An argparse ``type`` for a finite number in [minimum, maximum] (e.g. a fraction: 0, 1)."""
    from ..base.checks import finite_array

    return _argument_type(
        lambda text: float(finite_array(in_range(parse_quantity(text, field), field, text), field, minimum=minimum,
                                        inclusive=True, maximum=maximum)), field)


def positive_int(field: str, allow_zero: bool = False, maximum: int = INT_MAX):
    def convert(text: str) -> int:
        import argparse

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field}: expected a whole number, got {text!r}") from None
        if value < (0 if allow_zero else 1):
            raise argparse.ArgumentTypeError(f"{field}: must be >= {0 if allow_zero else 1}, got {text!r}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{field}: must be <= {maximum:,}, got {text!r}")
        return value

    convert.__name__ = field
    return convert


@contextlib.contextmanager
def stdout_to_stderr():
    """While inside, file descriptor 1 is stderr: whatever a library writes to stdout (Ray's raylet-death
    banner from its log monitor, its C++ logs) lands on stderr, so that ``--json`` leaves exactly one JSON
    object on stdout. Python's buffered stdout is flushed into the redirect before fd 1 is restored."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        try:
            sys.stdout.flush()
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def print_json(obj) -> None:
    """One JSON object on stdout and nothing else (pydantic models, dicts, lists). Strict JSON: a
    non-finite float (a percentile among draws that cannot reach the target) is written ``null``."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    json.dump(_finite_or_null(obj), sys.stdout, indent=2, allow_nan=False, default=_default)
    sys.stdout.write("\n")


def _finite_or_null(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


from ..render.text import table  # noqa: E402,F401  (the CLI modules import it from here)


def add_efficiency_argument(parser) -> None:
    """``--efficiency realised|tuned``: which training estimate (``simulate``, ``recommend``, ``plot``)."""
    parser.add_argument("--efficiency", choices=("realised", "tuned"), default="realised",
                        help="realised (default): what published runs really spent end to end, with a P10-P90 band; "
                             "tuned: a tuned Megatron-class stack in steady state (plus failures)")
