"""Test-time compute: decode multiplier, pass@k (closed form and Chen et al. estimator), log-linear fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaling_planner.base.errors import InputError
from scaling_planner.simulate.serving.test_time_compute import (
    decode_tokens_per_query,
    fit_log_linear,
    pass_at_k,
    pass_at_k_unbiased,
)


def test_decode_multiplier():
    assert decode_tokens_per_query(256, 0, 1) == 256
    assert decode_tokens_per_query(256, 2000, 4) == 4 * 2256
    with pytest.raises(InputError):
        decode_tokens_per_query(256, -1, 1)


def test_pass_at_k_values():
    assert pass_at_k(0.5, 1) == pytest.approx(0.5)
    assert pass_at_k(0.5, 3) == pytest.approx(0.875)  # 1 - 1/8
    assert pass_at_k(0.1, 10) == pytest.approx(1 - 0.9**10)
    with pytest.raises(InputError):
        pass_at_k(1.5, 2)


def test_unbiased_estimator_matches_closed_form_exactly_for_k1_and_limits():
    # k = 1: c / n exactly; all correct: 1; none correct: 0
    assert pass_at_k_unbiased(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k_unbiased(10, 10, 5) == 1.0
    assert pass_at_k_unbiased(10, 0, 5) == 0.0
    # n=4, c=2, k=2: 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert pass_at_k_unbiased(4, 2, 2) == pytest.approx(5 / 6)


@given(st.integers(1, 60), st.data())
def test_unbiased_estimator_equals_combinatorial_form(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    want = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k_unbiased(n, c, k) == pytest.approx(want, abs=1e-12)


def test_log_linear_fit_recovers_line_and_inverts():
    k = np.array([1, 2, 4, 8, 16, 32])
    acc = 0.2 + 0.05 * np.log(k)
    fit = fit_log_linear(k, acc)
    assert fit.intercept == pytest.approx(0.2)
    assert fit.slope == pytest.approx(0.05)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.samples_for(0.2 + 0.05 * math.log(64)) == pytest.approx(64)
    with pytest.raises(InputError):
        fit_log_linear([4, 4], [0.1, 0.2])
