"""Sample percentiles without numpy.ma (``np.percentile`` imports it on first use, ~10 ms of the CLI's
start-up): the one copy the planner's bands and the validation's bands use."""

from __future__ import annotations

import numpy as np


def percentiles(v, qs):
    """numpy's default ("linear") percentiles of a 1-D array, by one sort: the value at rank
    q/100·(n − 1), interpolated between neighbours (inf where a +inf neighbour is involved).
    ``np.percentile`` gives the same numbers but imports ``numpy.ma`` on first use (~10 ms of
    ``planner recommend``'s start-up)."""
    v = np.sort(v)
    pos = np.asarray(qs, dtype=float) / 100.0 * (v.size - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, v.size - 1)
    frac = pos - lo
    with np.errstate(invalid="ignore"):  # +inf values (unreachable draws) sort last and stay inf
        inner = v[lo] + (v[hi] - v[lo]) * frac
    return np.where(frac == 0, v[lo], np.where(np.isinf(v[hi]), v[hi], inner))
