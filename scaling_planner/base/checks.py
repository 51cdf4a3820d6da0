"""Checks of numeric arguments shared by the pure modules: one InputError naming the field and range."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InputError


def finite_array(value, field: str, *, minimum: float = 0.0, inclusive: bool = False,
                 maximum: float | None = None) -> np.ndarray:
    """``value`` as a float array; InputError naming ``field`` and the allowed range unless every entry
    is finite, above ``minimum`` (or at it, when ``inclusive``) and at most ``maximum``."""
    low = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    allowed = low if maximum is None else f"{low} and <= {maximum:g}"
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(field, f"must be a finite number {allowed}, got {value!r}") from None
    ok = np.isfinite(arr) & ((arr >= minimum) if inclusive else (arr > minimum))
    if maximum is not None:
        ok &= arr <= maximum
    if not np.all(ok):
        raise InputError(field, f"must be a finite number {allowed}, got {value!r}")
    return arr


def positive_array(value, field: str) -> np.ndarray:
    """``value`` as a float array of finite numbers > 0."""
    return finite_array(value, field)


def positive_number(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> float:
    """``value`` as a float: finite and > 0 (>= 0 with ``allow_zero``; whole with ``integer``), else
    InputError naming ``name``."""
    if isinstance(value, bool):
        raise InputError(name, f"must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise InputError(name, f"must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    if integer and x != int(x):
        raise InputError(name, f"must be a whole number, got {value!r}")
    return x
