"""Discrete-event simulation of one continuous-batching replica (vLLM / Orca / Sarathi style).

Requests arrive (Poisson, or a trace of arrival times), wait in a FCFS queue, are admitted while the
batch has a free slot (``max_batch``) and the paged KV cache has blocks for the whole sequence
(prompt + output, ``block_tokens`` per block; reserving the full sequence up front means no
preemption is ever needed -- a conservative stand-in for vLLM's allocate-as-you-go + recompute),
get their prompt prefilled, then produce one token per decode iteration until done.

Schedulers (Vidur's ``vllm`` and ``sarathi`` replica schedulers, reference §4):

* default (vLLM v0): an iteration is either a prefill of the newly admitted prompts (decodes pause)
  or a decode step of every running sequence;
* ``chunked_prefill`` (Sarathi-Serve): each iteration runs every decode plus up to
  ``chunk_tokens − batch`` prompt tokens of the admitted prompts, so decodes never stall.

Speed: the simulation is event-driven over *runs* of decode iterations, not per token. Between two
events (an arrival that can be admitted, a completion) the batch is fixed and the step time is
``max(A1 + S1·K, A2 + S2·K) + C`` in the cached tokens K, which grow by the batch size each step
(:meth:`ServingModel.decode_coefficients`), so a run of m steps is summed in closed form and the step at
which an arrival is admitted is found by solving a quadratic. Work per request is O(log batch).
Arrivals and lengths are generated up front with numpy; statistics are computed vectorised.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from ...base.errors import InfeasibleError, InputError
from .iteration import (
    DEFAULT_BLOCK_TOKENS,
    DEFAULT_MAX_BATCH,
    ServingModel,
    attention_flops,
    elementwise_bytes_per_token,
    matmul_params_dense,
)
from .workload import Workload

# --- scalar iteration time (the hot path) ---------------------------------------------------------

class _Costs:
    """Scalar version of :meth:`ServingModel.iteration_time_s` for the event loop (tested equal)."""

    def __init__(self, m: ServingModel):
        a = m.arch
        self.comp_tok = 2.0 * a.matmul_params_per_token() / m.tp / m.flops_per_s
        self.comp_pair = float(attention_flops(a, 1, 1.0)) / m.tp / m.flops_per_s
        self.w_dense = matmul_params_dense(a) * m.w_bytes / m.tp / m.hbm_bytes_per_s
        self.moe = a.is_moe
        self.E, self.k = float(a.n_experts), float(a.top_k)
        self.w_expert = (a.n_moe_layers * a.expert_params() * m.w_bytes / m.tp / m.hbm_bytes_per_s) if a.is_moe else 0.0
        self.kv_tok = m.kv_bytes_per_token / m.hbm_bytes_per_s
        self.elem_tok = elementwise_bytes_per_token(a) / m.tp / m.elementwise_bytes_per_s
        self.fixed = m.fixed_overhead_s
        if m.tp > 1:
            self.comm_c = 2.0 * a.n_layers * m.link_latency_s
            self.comm_tok = (2.0 * a.n_layers * 2.0 * (m.tp - 1) / m.tp * a.d_model * 2.0
                             / (m.link_fraction * m.link_bytes_per_s))
        else:
            self.comm_c = self.comm_tok = 0.0
        self._coef: dict[int, tuple[float, float, float, float, float]] = {}

    def weights(self, tokens: float) -> float:
        if self.moe:
            return self.w_dense + self.w_expert * self.E * (1.0 - (1.0 - self.k / self.E) ** tokens)
        return self.w_dense

    def iteration(self, tokens: float, kv_tokens: float, pairs: float) -> float:
        """Time of an iteration of ``tokens`` tokens reading ``kv_tokens`` cached tokens, ``pairs``
        attention (query, key) pairs in all."""
        mem = self.weights(tokens) + self.kv_tok * kv_tokens
        comp = self.comp_tok * tokens + self.comp_pair * pairs
        core = mem if mem > comp else comp
        return core + self.elem_tok * tokens + self.fixed + self.comm_c + self.comm_tok * tokens

    def decode(self, b: int):
        c = self._coef.get(b)
        if c is None:
            c = (self.weights(b), self.kv_tok, self.comp_tok * b, self.comp_pair,
                 self.elem_tok * b + self.fixed + self.comm_c + self.comm_tok * b)
            self._coef[b] = c
        return c


def _run_pieces(b: int, K0: float, coef):
    """Per-step time ``f(i) = max(a1 + s1·i, a2 + s2·i) + c`` of a run of decode steps of batch ``b``
    starting from K0 cached tokens, as (ic, (a, s) before ic, (a, s) from ic on)."""
    A1, S1, A2, S2, C = coef
    a1, s1 = A1 + S1 * K0 + C, S1 * b
    a2, s2 = A2 + S2 * K0 + C, S2 * b
    first, second = ((a1, s1), (a2, s2)) if a1 >= a2 else ((a2, s2), (a1, s1))
    ds = second[1] - first[1]
    if ds <= 0:
        return math.inf, first, second
    ic = math.ceil((first[0] - second[0]) / ds)  # second branch >= first from here on
    return max(ic, 0), first, second


def _lin_sum(a: float, s: float, i0: float, i1: float) -> float:
    """``Σ_{i=i0}^{i1−1} (a + s·i)``."""
    n = i1 - i0
    return n * a + s * (i0 + i1 - 1) * n * 0.5


def _run_time(b, K0, coef, m):
    ic, (a, s), (a2, s2) = _run_pieces(b, K0, coef)
    if m <= ic:
        return _lin_sum(a, s, 0, m)
    return _lin_sum(a, s, 0, ic) + _lin_sum(a2, s2, ic, m)


def _steps_to_cover(a: float, s: float, i0: float, dt: float) -> float:
    """Smallest n >= 1 with ``Σ_{i=i0}^{i0+n−1} (a + s·i) >= dt`` (quadratic, then fixed up)."""
    a0 = a + s * i0
    if dt <= 0:
        return 1
    if s <= 0:
        n = math.ceil(dt / a0)
    else:
        p = a0 - 0.5 * s
        n = math.ceil(2.0 * dt / (p + math.sqrt(p * p + 2.0 * s * dt)))
    n = max(n, 1)
    # The closed form is off by rounding only: a few steps at most. Where n is so large that a step is
    # below the float resolution of the sum (a sparse load of 1e-30 queries/s), no step count is better.
    for _ in range(8):
        if not (n > 1 and (n - 1) * a0 + s * (n - 1) * (n - 2) * 0.5 >= dt):
            break
        n -= 1
    for _ in range(8):
        if not (n * a0 + s * n * (n - 1) * 0.5 < dt):
            break
        n += 1
    return n


def _steps_until(b, K0, coef, dt):
    """Smallest number of decode steps whose total time reaches ``dt``."""
    ic, (a, s), (a2, s2) = _run_pieces(b, K0, coef)
    if ic > 0:
        t_ic = _lin_sum(a, s, 0, ic) if ic != math.inf else math.inf
        if t_ic >= dt:
            return _steps_to_cover(a, s, 0, dt)
        return ic + _steps_to_cover(a2, s2, ic, dt - t_ic)
    return _steps_to_cover(a2, s2, 0, dt)


# --- the simulation ------------------------------------------------------------------------------

@dataclass
class SimResult:
    """Per-request times (seconds) and run totals of one simulation."""

    arrival_s: np.ndarray
    admit_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    busy_s: float
    end_s: float
    area_in_system: float  # ∫ N(t) dt, integrated by the event loop itself (Little's law check)
    area_running: float  # ∫ batch(t) dt
    iterations: int
    max_batch: int
    kv_blocks: int
    extra: dict = field(default_factory=dict)

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def queue_s(self) -> np.ndarray:
        return self.admit_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Mean time per output token after the first, per request with >= 2 output tokens."""
        sel = self.output_tokens > 1
        return (self.finish_s[sel] - self.first_token_s[sel]) / (self.output_tokens[sel] - 1)

    @property
    def latency_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    def summary(self, warmup_fraction: float = 0.1) -> dict:
        """Percentiles (p50/p90/p99) of TTFT, TPOT, queueing delay over the requests after a warm-up
        share; utilization, mean batch, throughput; Little's law terms over the whole run."""
        n = len(self.arrival_s)
        k = int(n * warmup_fraction) if n >= 20 else 0
        sel = slice(k, n)
        ttft = self.ttft_s[sel]
        o = self.output_tokens[sel]
        multi = o > 1
        tpot = ((self.finish_s[sel] - self.first_token_s[sel])[multi] / (o[multi] - 1)) if multi.any() else np.zeros(1)
        q = self.queue_s[sel]

        def pct(x):
            v = np.percentile(x, [50, 90, 99]) if len(x) else np.zeros(3)
            mean = float(np.mean(x)) if len(x) else 0.0
            return {"p50": float(v[0]), "p90": float(v[1]), "p99": float(v[2]), "mean": mean}

        span = self.end_s - self.arrival_s[0] if self.end_s > self.arrival_s[0] else self.end_s
        lam = n / self.end_s if self.end_s > 0 else 0.0
        w = float(np.mean(self.latency_s))
        return {
            "requests": n,
            "ttft_s": pct(ttft),
            "tpot_s": pct(tpot),
            "queue_s": pct(q),
            "utilization": self.busy_s / self.end_s if self.end_s > 0 else 0.0,
            "mean_batch": self.area_running / self.busy_s if self.busy_s > 0 else 0.0,
            "throughput_output_tokens_per_s": float(self.output_tokens.sum()) / span if span > 0 else 0.0,
            "throughput_requests_per_s": n / span if span > 0 else 0.0,
            "little_L": self.area_in_system / self.end_s if self.end_s > 0 else 0.0,
            "little_lambda_W": lam * w,
            "iterations": self.iterations,
        }


def simulate(model: ServingModel, workload: Workload, *, max_batch: int = DEFAULT_MAX_BATCH,
             block_tokens: int = DEFAULT_BLOCK_TOKENS, kv_blocks: int | None = None,
             chunked_prefill: bool = False, chunk_tokens: int = 512,
             max_prefill_tokens: int = 8192) -> SimResult:
    """Run the event simulation of one replica over ``workload``; every request completes.

    ``kv_blocks`` defaults to what fits beside the weights (``model.kv_capacity_tokens``);
    ``max_prefill_tokens`` caps the prompt tokens of one prefill iteration (vLLM
    ``max_num_batched_tokens``; one prompt is always admitted alone if it is longer).
    """
    if max_batch < 1:
        raise InputError("max_batch", f"must be >= 1, got {max_batch!r}")
    if chunked_prefill and chunk_tokens < 1:
        raise InputError("chunk_tokens", f"must be >= 1, got {chunk_tokens!r}")
    total_blocks = int(model.kv_capacity_tokens // block_tokens) if kv_blocks is None else int(kv_blocks)
    P_arr = workload.prompt_tokens.astype(np.int64)
    O_arr = workload.output_tokens.astype(np.int64)
    need_arr = -(-(P_arr + O_arr) // block_tokens)
    if int(need_arr.max()) > total_blocks:
        i = int(np.argmax(need_arr))
        raise InfeasibleError(
            f"a request of {int(P_arr[i] + O_arr[i])} tokens needs {int(need_arr[i])} KV blocks of {block_tokens} "
            f"tokens; the replica ({model.arch.name} on {model.tp} x {model.profile_name}) has {total_blocks}"
        )
    n = workload.n
    arr = workload.arrival_s.tolist()
    P = P_arr.tolist()
    O = O_arr.tolist()
    need = need_arr.tolist()
    costs = _Costs(model)
    admit = [0.0] * n
    first = [0.0] * n
    finish = [0.0] * n

    t = 0.0
    G = 0  # decode iterations run so far (each gives every running sequence one token)
    B = 0  # running (decoding) sequences
    K = 0.0  # cached tokens the next decode step reads, over the running sequences
    free = total_blocks
    heap: list[tuple[int, int]] = []  # (G at which the request finishes, index)
    nxt = 0  # next request to admit (FCFS)
    ia = 0  # requests arrived by time t
    insys = 0
    area = 0.0
    area_run = 0.0
    busy = 0.0
    iters = 0
    prefilling: list[list[int]] = []  # chunked mode: [index, prompt tokens done]
    heappush, heappop = heapq.heappush, heapq.heappop

    def advance(t_new):
        nonlocal area, ia, insys
        area += insys * (t_new - t)
        while ia < n and arr[ia] <= t_new:
            area += t_new - arr[ia]
            insys += 1
            ia += 1

    def complete(t_new):
        nonlocal B, K, free, insys
        while heap and heap[0][0] <= G:
            _, i = heappop(heap)
            finish[i] = t_new
            B -= 1
            K -= P[i] + O[i]
            free += need[i]
            insys -= 1

    def run_for(dt, iterations=1):
        """Advance the clock by ``dt`` of busy time spent on ``iterations`` iterations."""
        nonlocal t, busy, area_run, iters
        t_new = t + dt
        advance(t_new)
        busy += dt
        area_run += B * dt
        t = t_new
        iters += iterations

    def first_token(i):
        """Request i's prefill is done at t: it finishes (one output token) or joins the decoding batch."""
        nonlocal B, K, free, insys
        first[i] = t
        if O[i] == 1:
            finish[i] = t
            free += need[i]
            insys -= 1
        else:
            heappush(heap, (G + O[i] - 1, i))
            B += 1
            K += P[i] + 1

    while True:
        can_admit = nxt < ia and B + len(prefilling) < max_batch and need[nxt] <= free
        if not chunked_prefill and can_admit:
            # prefill iteration of the admissible FCFS prefix
            tokens = pairs = 0.0
            batch = []
            while (nxt < ia and B + len(batch) < max_batch and need[nxt] <= free
                   and (not batch or tokens + P[nxt] <= max_prefill_tokens)):
                i = nxt
                p = P[i]
                tokens += p
                pairs += p * (p + 1) * 0.5
                free -= need[i]
                admit[i] = t
                batch.append(i)
                nxt += 1
            dt = costs.iteration(tokens, 0.0, pairs)
            run_for(dt)
            for i in batch:
                first_token(i)
            continue
        if chunked_prefill and (prefilling or can_admit):
            while nxt < ia and B + len(prefilling) < max_batch and need[nxt] <= free:
                free -= need[nxt]
                admit[nxt] = t
                prefilling.append([nxt, 0])
                nxt += 1
            budget = max(chunk_tokens - B, 1)
            ptok = 0.0
            kv_read = K
            pairs = K
            done_now = []
            for item in prefilling:
                if budget <= 0:
                    break
                i, d = item
                c = min(P[i] - d, budget)
                ptok += c
                kv_read += d
                pairs += c * d + c * (c + 1) * 0.5
                budget -= c
                item[1] = d + c
                if item[1] >= P[i]:
                    done_now.append(i)
            dt = costs.iteration(B + ptok, kv_read, pairs)
            run_for(dt)
            if B:
                G += 1
                K += B
            complete(t)
            if done_now:
                prefilling = prefilling[len(done_now):]
                for i in done_now:
                    first_token(i)
            continue
        if B > 0:
            coef = costs.decode(B)
            m = heap[0][0] - G
            if nxt == ia and ia < n and B < max_batch and need[ia] <= free:
                m_arr = _steps_until(B, K, coef, arr[ia] - t)
                if m_arr < m:
                    m = m_arr
            dt = _run_time(B, K, coef, m)
            run_for(dt, m)
            G += m
            K += B * m
            complete(t)
            continue
        if nxt >= n:
            break
        # idle: jump to the next arrival
        advance(arr[ia])
        t = arr[ia - 1]

    return SimResult(
        arrival_s=workload.arrival_s, admit_s=np.array(admit), first_token_s=np.array(first),
        finish_s=np.array(finish), prompt_tokens=P_arr, output_tokens=O_arr, busy_s=busy, end_s=t,
        area_in_system=area, area_running=area_run, iterations=iters, max_batch=max_batch,
        kv_blocks=total_blocks,
    )


def simulate_per_token(model: ServingModel, workload: Workload, *, max_batch: int = DEFAULT_MAX_BATCH,
                       block_tokens: int = DEFAULT_BLOCK_TOKENS, max_prefill_tokens: int = 8192) -> SimResult:
    """The straightforward reference: one Python iteration per decode step, a loop over the running
    requests inside it, the vectorised :meth:`ServingModel.iteration_time_s` for each step's time.
    Same scheduler as :func:`simulate` (non-chunked); used by the tests and the benchmark baseline."""
    total_blocks = int(model.kv_capacity_tokens // block_tokens)
    n = workload.n
    arr, P, O = workload.arrival_s, workload.prompt_tokens, workload.output_tokens
    need = [-(-(int(P[i]) + int(O[i])) // block_tokens) for i in range(n)]
    admit, first, finish = np.zeros(n), np.zeros(n), np.zeros(n)
    t, free, nxt, busy, iters = 0.0, total_blocks, 0, 0.0, 0
    running: list[list[int]] = []  # [index, tokens generated]
    done = 0
    while done < n:
        arrived = int(np.searchsorted(arr, t, side="right"))
        if nxt < arrived and len(running) < max_batch and need[nxt] <= free:
            batch, tokens = [], 0
            while (nxt < arrived and len(running) + len(batch) < max_batch and need[nxt] <= free
                   and (not batch or tokens + P[nxt] <= max_prefill_tokens)):
                batch.append(nxt)
                tokens += int(P[nxt])
                free -= need[nxt]
                admit[nxt] = t
                nxt += 1
            p = np.array([P[i] for i in batch], dtype=float)
            dt = float(model.iteration_time_s(0.0, 0.0, p.sum(), (p * (p + 1) / 2).sum()))
            t += dt
            busy += dt
            iters += 1
            for i in batch:
                first[i] = t
                if O[i] == 1:
                    finish[i] = t
                    free += need[i]
                    done += 1
                else:
                    running.append([i, 1])
            continue
        if running:
            kv = sum(int(P[i]) + g for i, g in running)
            dt = float(model.iteration_time_s(len(running), kv))
            t += dt
            busy += dt
            iters += 1
            still = []
            for item in running:
                item[1] += 1
                i = item[0]
                if item[1] >= O[i]:
                    finish[i] = t
                    free += need[i]
                    done += 1
                else:
                    still.append(item)
            running = still
            continue
        t = float(arr[nxt])
    return SimResult(
        arrival_s=arr, admit_s=admit, first_token_s=first, finish_s=finish, prompt_tokens=P, output_tokens=O,
        busy_s=busy, end_s=t, area_in_system=float(np.sum(finish - arr)), area_running=float("nan"),
        iterations=iters, max_batch=max_batch, kv_blocks=total_blocks,
    )
