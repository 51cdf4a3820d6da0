"""The requests a serving replica sees: arrival times, prompt and output lengths, generated up front
(Poisson arrivals with fixed, uniform or exponential lengths) or read from a trace (Vidur's
``arrived_at, num_prefill_tokens, num_decode_tokens``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...base.errors import InputError

LENGTH_KINDS = ("fixed", "uniform", "exponential")


@dataclass(frozen=True)
class Workload:
    """Requests sorted by arrival: times in seconds, prompt and output lengths in tokens (output >= 1)."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __post_init__(self):
        n = len(self.arrival_s)
        if n == 0:
            raise InputError("workload", "needs at least one request")
        if len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise InputError("workload", "arrival_s, prompt_tokens and output_tokens must have the same length")
        if np.any(np.diff(self.arrival_s) < 0) or not np.all(np.isfinite(self.arrival_s)):
            raise InputError("arrival_s", "must be finite and sorted")
        if np.any(self.prompt_tokens < 1) or np.any(self.output_tokens < 1):
            raise InputError("lengths", "prompt and output lengths must be >= 1 token")

    @property
    def n(self) -> int:
        return len(self.arrival_s)


def sample_lengths(kind: str, mean: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` integer lengths >= 1 with the given mean: ``fixed``; ``uniform`` on [1, 2·mean − 1];
    ``exponential`` (geometric, the memoryless length distribution of chat outputs)."""
    if not (mean >= 1 and math.isfinite(mean)):
        raise InputError("mean_tokens", f"must be >= 1, got {mean!r}")
    if kind == "fixed":
        return np.full(n, round(mean), dtype=np.int64)
    if kind == "uniform":
        hi = max(1, round(2 * mean - 1))
        return rng.integers(1, hi + 1, size=n)
    if kind == "exponential":
        return np.maximum(1, rng.geometric(1.0 / mean, size=n))
    raise InputError("length_distribution", f"must be one of {', '.join(LENGTH_KINDS)}, got {kind!r}")


def poisson_workload(qps: float, n: int, prompt_tokens: float, output_tokens: float, *,
                     prompt_dist: str = "fixed", output_dist: str = "fixed", seed: int = 0) -> Workload:
    """Poisson arrivals at ``qps``. The unit-rate exponential gaps come from ``seed`` and are divided
    by ``qps``, so runs at different loads share their random numbers (common random numbers: the
    capacity bisection sees a monotone response)."""
    if not (qps > 0 and math.isfinite(qps)):
        raise InputError("qps", f"must be > 0, got {qps!r}")
    if n < 1:
        raise InputError("requests", f"must be >= 1, got {n!r}")
    rng = np.random.default_rng(seed)
    gaps = rng.standard_exponential(n)
    p = sample_lengths(prompt_dist, prompt_tokens, n, rng)
    o = sample_lengths(output_dist, output_tokens, n, rng)
    return Workload(np.cumsum(gaps) / qps, p, o)


def trace_workload(arrival_s, prompt_tokens, output_tokens) -> Workload:
    """A workload from a trace (Vidur's ``arrived_at, num_prefill_tokens, num_decode_tokens``)."""
    a = np.asarray(arrival_s, dtype=float)
    order = np.argsort(a, kind="stable")
    return Workload(a[order], np.asarray(prompt_tokens, dtype=np.int64)[order],
                    np.asarray(output_tokens, dtype=np.int64)[order])
