"""Helpers shared by the CLI verbs: number arguments, JSON output, plain tables."""

from __future__ import annotations

import json
import math
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


def positive(field: str, *, allow_dollar: bool = False):
    """An argparse ``type`` for a strictly positive quantity (1e22, 2.5T, $1.2M)."""
    return _argument_type(lambda text: parse_positive(text, field, allow_dollar=allow_dollar), field)


def quantity(field: str):
    """An argparse ``type`` for any finite quantity."""
    return _argument_type(lambda text: parse_quantity(text, field), field)


def bounded(field: str, minimum: float = 0.0, maximum: float | None = None):
    """An argparse ``type`` for a finite number in [minimum, maximum] (e.g. a fraction: 0, 1)."""
    from ..base.checks import finite_array

    return _argument_type(
        lambda text: float(finite_array(parse_quantity(text, field), field, minimum=minimum, inclusive=True,
                                        maximum=maximum)), field)


def positive_int(field: str, allow_zero: bool = False):
    def convert(text: str) -> int:
        import argparse

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field}: expected a whole number, got {text!r}") from None
        if value < (0 if allow_zero else 1):
            raise argparse.ArgumentTypeError(f"{field}: must be >= {0 if allow_zero else 1}, got {text!r}")
        return value

    convert.__name__ = field
    return convert


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
