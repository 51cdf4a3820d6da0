"""Load on one replica: the analytic fixed point of a continuous-batching server (mean batch, QPS, TPOT and
TTFT as functions of each other) and the simulated capacity (bisection over Poisson load with the event
simulation of :mod:`.eventsim`, Vidur's capacity search)."""

from __future__ import annotations

import math

import numpy as np

from .iteration import DEFAULT_MAX_BATCH, ServingModel

#: Default SLOs: the Vidur paper's (reference §4: TTFT P90 < 2 s, TBT P99 < 200 ms), applied at p99.
DEFAULT_P99_TTFT_S = 2.0
DEFAULT_P99_TPOT_S = 0.2
#: Peak-to-mean ratio of the daily demand the fleet is sized for (diurnal chat traffic peaks at about
#: twice its mean; a stated prior, override with --peak-factor).
DEFAULT_PEAK_FACTOR = 2.0
DEFAULT_PROMPT_TOKENS = 1024
DEFAULT_OUTPUT_TOKENS = 256
DEFAULT_SIM_REQUESTS = 2000


def analytic_curve(model: ServingModel, prompt_tokens: float, output_tokens: float, batch):
    """Steady state of a vLLM-style replica holding ``batch`` sequences on average (fixed point of
    the load): a request's prompt is prefilled alone in ``t_p`` and its ``O − 1`` other tokens come
    from decode steps of ``t_d(B)`` at the mean context ``P + O/2``; decodes pause during prefills.
    Token balance ``λ (O − 1) t_d = (1 − λ t_p) B`` gives

        ``λ(B) = B / ((O − 1) t_d(B) + B t_p)``,   ``TPOT(B) = t_d(B) + B t_p / (O − 1)``,

    and the mean TTFT ≈ ``t_p + t_d(B)/2`` (wait for the running step, then the prefill).
    Returns (qps, tpot_s, ttft_s) arrays over ``batch``."""
    b = np.asarray(batch, dtype=float)
    tp_ = float(model.prefill_time_s(prompt_tokens))
    td = model.decode_step_time_s(b, prompt_tokens + output_tokens / 2.0)
    o1 = max(output_tokens - 1.0, 1.0)
    qps = b / (o1 * td + b * tp_)
    tpot = td + b * tp_ / o1
    ttft = tp_ + td / 2.0
    return qps, tpot, ttft


def analytic_capacity(model: ServingModel, prompt_tokens: float, output_tokens: float, max_batch: int,
                      p99_ttft_s: float, p99_tpot_s: float) -> tuple[float, int]:
    """Largest ``λ(B)`` of :func:`analytic_curve` over ``B = 1 … max_batch`` whose mean TPOT and TTFT
    meet the SLO values (means against p99 targets: optimistic; the simulation refines it).
    (0, 0) when even batch 1 misses them."""
    b = np.arange(1, max(int(max_batch), 1) + 1)
    qps, tpot, ttft = analytic_curve(model, prompt_tokens, output_tokens, b)
    ok = (tpot <= p99_tpot_s) & (ttft <= p99_ttft_s)
    if not ok.any():
        return 0.0, 0
    i = int(np.argmax(np.where(ok, qps, -1.0)))
    return float(qps[i]), int(b[i])


def analytic_batch_at(model: ServingModel, prompt_tokens: float, output_tokens: float, qps: float,
                      max_batch: int) -> tuple[float, float]:
    """Mean batch and TPOT the fixed point predicts at load ``qps`` (bisection on real B);
    (inf, inf) beyond the saturation load ``λ(max_batch)``."""
    lo, hi = 1e-6, float(max_batch)
    if analytic_curve(model, prompt_tokens, output_tokens, hi)[0] < qps:
        return math.inf, math.inf
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if analytic_curve(model, prompt_tokens, output_tokens, mid)[0] < qps:
            lo = mid
        else:
            hi = mid
    _, tpot, _ = analytic_curve(model, prompt_tokens, output_tokens, hi)
    return hi, float(tpot)


def simulated_max_qps(model: ServingModel, prompt_tokens: float, output_tokens: float, p99_ttft_s: float,
                      p99_tpot_s: float, *, guess_qps: float, max_batch: int = DEFAULT_MAX_BATCH,
                      requests: int = DEFAULT_SIM_REQUESTS, seed: int = 0, chunked_prefill: bool = False,
                      output_dist: str = "fixed", iterations: int = 9):
    """Largest Poisson load whose simulated p99 TTFT and p99 TPOT meet the SLO: bisection over QPS
    (Vidur's capacity search, reference §4) with common random numbers across loads.
    Returns (qps, summary at that qps); (0, summary at the lowest load tried) when none does."""
    from .eventsim import simulate
    from .workload import poisson_workload

    def run(q):
        wl = poisson_workload(q, requests, prompt_tokens, output_tokens, output_dist=output_dist, seed=seed)
        s = simulate(model, wl, max_batch=max_batch, chunked_prefill=chunked_prefill).summary()
        return s["ttft_s"]["p99"] <= p99_ttft_s and s["tpot_s"]["p99"] <= p99_tpot_s, s

    hi = max(guess_qps, 1e-9) * 1.25
    ok, s_hi = run(hi)
    lo, s_lo = None, None
    for _ in range(8):
        if not ok:
            break
        lo, s_lo = hi, s_hi
        hi *= 1.6
        ok, s_hi = run(hi)
    if lo is None:
        lo = hi / 2.0
        for _ in range(10):
            ok, s = run(lo)
            if ok:
                s_lo = s
                break
            hi, lo = lo, lo / 2.0
        else:
            return 0.0, s
    for _ in range(iterations):
        mid = math.sqrt(lo * hi)
        ok, s = run(mid)
        if ok:
            lo, s_lo = mid, s
        else:
            hi = mid
    return lo, s_lo
