import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaling_planner.base.errors import InputError
from scaling_planner.base.units import format_si, format_usd, parse_duration_s, parse_positive, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e22", 1e22), ("2.5T", 2.5e12), ("70B", 70e9), ("70b", 70e9), ("400k", 4e5), ("1.2M", 1.2e6),
     ("3P", 3e15), (" 5.76e23 ", 5.76e23), ("1_000", 1000.0), (".5", 0.5), ("7G", 7e9), (12, 12.0)],
)
def test_parse_quantity(text, value):
    assert parse_quantity(text) == pytest.approx(value, rel=1e-15)


def test_dollars_only_where_allowed():
    assert parse_quantity("$1.2M", "budget_usd", allow_dollar=True) == pytest.approx(1.2e6)
    with pytest.raises(InputError, match="budget_flops.*dollar"):
        parse_quantity("$1.2M", "budget_flops")


@pytest.mark.parametrize("text", ["abc", "", "1e", "2.5X", "nan", "inf", "--1", "1,000", True])
def test_parse_quantity_rejects(text):
    with pytest.raises(InputError) as err:
        parse_quantity(text, "tokens")
    assert str(err.value).startswith("tokens:")


@pytest.mark.parametrize("text", ["0", "-1", "-2.5T"])
def test_parse_positive_rejects_non_positive(text):
    with pytest.raises(InputError, match="must be > 0"):
        parse_positive(text, "params")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90min", 5400), ("45s", 45), ("2w", 14 * 86400),
                          ("3", 3 * 86400), (1.5, 1.5 * 86400)],
)
def test_parse_duration(text, seconds):
    assert parse_duration_s(text, "deadline") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["0d", "-1h", "soon", "5y"])
def test_parse_duration_rejects(text):
    with pytest.raises(InputError, match="deadline"):
        parse_duration_s(text, "deadline")


def test_format():
    assert format_si(7.0e10) == "70B"
    assert format_si(1.4e12, "tokens") == "1.4T tokens"
    assert format_si(512) == "512"
    assert format_si(999_960) == "1M" and format_usd(999_960) == "$1M"  # rounds up into the next prefix
    assert format_usd(1.23e6) == "$1.23M"
    assert format_usd(12.345) == "$12.35"


@given(st.floats(min_value=1e-3, max_value=1e30, allow_nan=False))
def test_round_trip_through_text(x):
    assert parse_quantity(repr(x)) == x
    assert math.isclose(parse_quantity(f"{x / 1e12:.17g}T"), x, rel_tol=1e-12)


def test_format_rate_uses_si_prefixes_on_the_unit():
    from scaling_planner.base.units import format_rate

    assert format_rate(5.97e10) == "59.7 GFLOP/s"
    assert format_rate(9.89e14) == "989 TFLOP/s"
    assert format_rate(2.3e10, "B/s") == "23 GB/s"
    assert format_rate(512.0) == "512 FLOP/s"
