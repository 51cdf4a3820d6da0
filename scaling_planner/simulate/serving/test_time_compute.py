"""Test-time compute: what thinking tokens and repeated sampling cost, and what they buy.

* Decode demand: ``samples × (answer + thinking)`` tokens per query instead of ``answer``
  (:func:`decode_tokens_per_query`); the serving model turns that into devices and dollars.
* Coverage: with independent samples of single-sample success ``p``, ``pass@k = 1 − (1 − p)^k``
  (Brown et al. 2024, "Large Language Monkeys", arXiv:2407.21787, §2), and the unbiased estimator from
  ``n`` samples with ``c`` correct, ``1 − C(n−c, k) / C(n, k)`` (Chen et al. 2021, "Evaluating Large
  Language Models Trained on Code", arXiv:2107.03374, Eq. 1).
* Scaling: accuracy against samples is close to log-linear over the measured range (Brown et al. 2024
  Fig. 2; the o1 / DeepSeek-R1 test-time-compute plots): fit ``acc = a + b · ln k`` by least squares
  (:func:`fit_log_linear`) and invert it for the samples a target accuracy needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...base.errors import InputError


def decode_tokens_per_query(output_tokens, thinking_tokens=0.0, samples=1):
    """Decode tokens one query generates: ``samples · (output + thinking)``."""
    o = np.asarray(output_tokens, dtype=float)
    th = np.asarray(thinking_tokens, dtype=float)
    k = np.asarray(samples, dtype=float)
    if np.any(o < 1) or np.any(th < 0) or np.any(k < 1):
        raise InputError("test_time_compute", "needs output >= 1, thinking >= 0 and samples >= 1")
    return k * (o + th)


def pass_at_k(p, k):
    """``1 − (1 − p)^k``: chance that at least one of ``k`` independent samples succeeds."""
    p = np.asarray(p, dtype=float)
    k = np.asarray(k, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise InputError("single_sample_accuracy", f"must be in [0, 1], got {p!r}")
    if np.any(k < 1):
        raise InputError("samples", f"must be >= 1, got {k!r}")
    return 1.0 - (1.0 - p) ** k


def pass_at_k_unbiased(n: int, c: int, k: int) -> float:
    """Chen et al. 2021 Eq. 1: ``1 − C(n−c, k)/C(n, k)`` from ``n`` samples of which ``c`` passed,
    computed as a stable product ``1 − Π_{i=n−c+1}^{n} (1 − k/i)``."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise InputError("pass_at_k", f"needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass(frozen=True)
class LogLinearFit:
    """``accuracy = intercept + slope · ln(samples)`` fitted by least squares."""

    intercept: float
    slope: float
    r2: float

    def predict(self, samples):
        return self.intercept + self.slope * np.log(np.asarray(samples, dtype=float))

    def samples_for(self, accuracy: float) -> float:
        """Samples the fit needs for ``accuracy`` (inf when the slope is not positive)."""
        if self.slope <= 0:
            return math.inf
        return float(math.exp((accuracy - self.intercept) / self.slope))


def fit_log_linear(samples, accuracy) -> LogLinearFit:
    """Least-squares fit of ``accuracy = a + b · ln k`` to user points (at least two distinct k)."""
    k = np.asarray(samples, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    if k.shape != y.shape or k.ndim != 1 or len(k) < 2:
        raise InputError("points", "need at least two (samples, accuracy) points of equal length")
    if np.any(k < 1) or np.any(~np.isfinite(y)):
        raise InputError("points", "samples must be >= 1 and accuracies finite")
    x = np.log(k)
    if np.ptp(x) == 0:
        raise InputError("points", "need at least two different sample counts")
    A = np.column_stack([np.ones_like(x), x])
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - (a + b * x)
    ss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss if ss > 0 else 1.0
    return LogLinearFit(float(a), float(b), r2)
