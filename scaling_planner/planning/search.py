"""Bisection in log space, the one search the planner runs: the compute that meets a simulated
budget (:mod:`.compute`), the least compute and the tokens that reach a loss under a unique-token
cap (:mod:`.data_constrained`). Each quantity (FLOPs, tokens) spans many decades and its test is
monotone in it, so halving the bracket in log x gives a relative, not an absolute, resolution.
"""

from __future__ import annotations

import math


def bisect_log(passes, good_log: float, bad_log: float, steps: int, tol_log: float) -> float:
    """The x nearest the boundary of ``passes`` on its passing side, between ln x = ``good_log``
    (where ``passes`` holds) and ``bad_log`` (where it does not), by at most ``steps`` halvings of
    the bracket in ln x, stopping once it is narrower than ``tol_log``; ``good_log`` may lie above
    or below ``bad_log``. Neither end is tested: the caller has."""
    good, bad = good_log, bad_log
    for _ in range(steps):
        mid = 0.5 * (good + bad)
        if passes(math.exp(mid)):
            good = mid
        else:
            bad = mid
        if abs(good - bad) < tol_log:
            break
    return math.exp(good)


def bisect_log_each(passes, good_log, bad_log, steps: int):
    """:func:`bisect_log` for many independent boundaries at once: ``good_log`` and ``bad_log`` are
    arrays (one bracket per element), ``passes`` maps an array of x to an array of booleans, and
    every bracket is halved ``steps`` times in ln x. Returns x on each passing side."""
    import numpy as np

    good, bad = np.array(good_log, dtype=float), np.array(bad_log, dtype=float)
    for _ in range(steps):
        mid = 0.5 * (good + bad)
        ok = np.asarray(passes(np.exp(mid)), dtype=bool)
        good = np.where(ok, mid, good)
        bad = np.where(ok, bad, mid)
    return np.exp(good)
