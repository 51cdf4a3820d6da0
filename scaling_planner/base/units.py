"""Parsing and formatting of quantities at the edges of the program.

Inside the code everything is SI: FLOPs as a count, seconds, bytes, US dollars. Conversions happen
here and only here. Decided once: ``GB`` is 1e9 bytes (vendor memory bandwidth, link speeds),
``GiB`` is 2**30 bytes (device memory capacity as CUDA reports it).
"""

from __future__ import annotations

import math
import re

from .errors import InputError

GB = 1e9
GIB = float(2**30)
TIB = float(2**40)
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0
J_PER_KWH = 3.6e6  # joules in a kilowatt-hour
TERA = 1e12  # FLOP/s in a TFLOP/s (profiles and papers quote TFLOP/s; the code works in FLOP/s)

# Decimal magnitude suffixes. "B" means billion (as in "7B parameters"), never bytes. No "E" (exa):
# "1e" must be an error, not 1e18.
_MAGNITUDE = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}
_DURATION_S = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}

_NUMBER = r"[+-]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY_RE = re.compile(rf"^\s*(\$)?\s*({_NUMBER})\s*([KMBGTP]?)\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(rf"^\s*({_NUMBER})\s*(s|min|m|h|d|w)?\s*$", re.IGNORECASE)


def parse_quantity(text: str | float | int, field: str = "value", *, allow_dollar: bool = False) -> float:
    """Parse ``1e22``, ``2.5T``, ``70B``, ``$1.2M``, ``400k`` into a float.

    Suffixes are decimal (K=1e3, M=1e6, B=G=1e9, T=1e12, P=1e15). A leading ``$`` is
    accepted only where ``allow_dollar`` is set. NaN and infinity are rejected.
    """
    if isinstance(text, bool):
        raise InputError(field, f"expected a number, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _QUANTITY_RE.match(str(text))
        if not match:
            raise InputError(field, f"expected a number like 1e22, 2.5T, 70B or $1.2M, got {text!r}")
        dollar, number, suffix = match.groups()
        if dollar and not allow_dollar:
            raise InputError(field, f"a dollar amount is not allowed here, got {text!r}")
        value = float(number.replace("_", "")) * _MAGNITUDE[suffix.upper()]
    if not math.isfinite(value):
        raise InputError(field, f"must be a finite number, got {text!r}")
    return value


def parse_positive(text: str | float | int, field: str, *, allow_dollar: bool = False) -> float:
    """Parse a quantity that must be strictly positive."""
    value = parse_quantity(text, field, allow_dollar=allow_dollar)
    if value <= 0:
        raise InputError(field, f"must be > 0, got {text!r}")
    return value


def parse_duration_s(text: str | float | int, field: str = "duration", default_unit: str = "d") -> float:
    """Parse ``30d``, ``12h``, ``90min``, ``45s``, ``2w`` (or a bare number in ``default_unit``) to seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text) * _DURATION_S[default_unit]
    else:
        match = _DURATION_RE.match(str(text))
        if not match:
            raise InputError(field, f"expected a duration like 30d, 12h, 90min or 45s, got {text!r}")
        number, unit = match.groups()
        seconds = float(number.replace("_", "")) * _DURATION_S[(unit or default_unit).lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(field, f"must be a positive, finite duration, got {text!r}")
    return seconds


def format_si(value: float, unit: str = "", digits: int = 3) -> str:
    """Format with a decimal prefix: 7.0e10 -> '70.0 B' style for counts (K, M, B, T, P, E)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}{(' ' + unit) if unit else ''}"
    value = float(f"{value:.{digits}g}")  # 999,960 -> 1.00e6: '1M', not '1e+03K'
    for suffix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}{suffix}{(' ' + unit) if unit else ''}"
    return f"{value:.{digits}g}{(' ' + unit) if unit else ''}"


def format_rate(value: float, unit: str = "FLOP/s", digits: int = 3) -> str:
    """A rate with an SI prefix glued to its unit: 5.97e10 -> '59.7 GFLOP/s', 2.3e10 B/s -> '23 GB/s'."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    for prefix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def format_usd(value: float) -> str:
    """Format dollars: $1.23M, $45.6K, $12.34."""
    if abs(value) >= 1e3:
        return "$" + format_si(value, digits=3)
    return f"${value:,.2f}"
