"""The layout search: every TP x PP x DP (x EP) x micro-batch x interleave x recompute x ZeRO candidate of a
model on G devices, evaluated in one vectorised pass of the step model (:mod:`.step`) and the memory model
(:mod:`..memory`), ranked by time per token; partial recompute built from the selective and full
candidates (:func:`add_partial_recompute`). The estimate (:mod:`.estimate`), the validation and the
benchmark's per-candidate loop all call the very same ``step_time`` and ``memory_breakdown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import efficiency as eff
from ..architecture import Architecture
from ..memory import RECOMPUTE_FULL, RECOMPUTE_PARTIAL, RECOMPUTE_SELECTIVE, memory_breakdown
from .step import step_time

REASONS = ("feasible", "memory", "batch", "interleave", "expert")
REASON_MEMORY, REASON_BATCH, REASON_INTERLEAVE, REASON_EXPERT = 1, 2, 3, 4
MICRO_BATCHES = (1, 2, 4, 8)
INTERLEAVES = (1, 2, 4)
ZERO_STAGES = (0, 1, 2, 3)
RECOMPUTES = (0, 1, 2)
DEFAULT_BATCH_TOKENS = 4 * 2**20  # ~4M tokens per step (GPT-3 3.2M, Llama 2 4M; Llama 3 ramps to 16M)
BATCH_TOKENS_PER_DEVICE = 1024  # larger clusters need larger batches: Llama 3 405B, 16M tokens on 16k GPUs
MAX_BATCH_TOKENS = 32 * 2**20
BATCH_SLACK = 1.5  # a candidate may round the default batch up by at most this factor


def default_batch_tokens(n_devices: int) -> float:
    """Default global batch in tokens: max(4M, 1024 x G), capped at 32M."""
    return float(min(max(DEFAULT_BATCH_TOKENS, BATCH_TOKENS_PER_DEVICE * n_devices), MAX_BATCH_TOKENS))
DEFAULT_DP_OVERLAP = 0.8  # share of the DP gradient reduction hidden behind backward (bucketed overlap)
# Share of the TP collectives hidden behind the adjacent GEMMs (Megatron-Core's --tp-comm-overlap,
# Transformer Engine userbuffers, 2023 on). Off by default: the model is validated without it
# (Korthikanti, PTD-P, vTrain had no such overlap), and NVIDIA's H100 tables (validation data) sit
# between 0 and the DP overlap's 0.8 without a source for the hidden share.
DEFAULT_TP_OVERLAP = 0.0


def _divisors(n: int) -> list[int]:
    small = [i for i in range(1, int(n**0.5) + 1) if n % i == 0]
    return sorted(set(small + [n // i for i in small]))


def layout_grid(arch: Architecture, n_devices: int, *, global_batch: int | None = None,
                micro_batches=MICRO_BATCHES, interleaves=INTERLEAVES, zero_stages=ZERO_STAGES,
                recomputes=RECOMPUTES, max_tp: int = 64, pipeline_engine: str = "megatron") -> dict[str, np.ndarray]:
    """Every candidate TP x PP x DP (x EP) x micro-batch x interleave x recompute x ZeRO, as flat arrays.

    TP is a power-of-two divisor of the head count and of the KV groups (<= ``max_tp``), PP a divisor of G
    with at most one stage per layer, DP = G/(TP PP), EP a divisor of DP and of the expert count (MoE only). Sequence
    parallelism is on whenever TP > 1 (same TP traffic, less activation memory). With no
    ``global_batch`` each candidate takes the whole number of micro-batches closest to
    ``DEFAULT_BATCH_TOKENS``. With ``pipeline_engine="deepspeed"`` there is no interleaving and no
    ZeRO-2/3 once PP > 1 (DeepSpeed's pipeline engine refuses both).
    """
    if pipeline_engine == "deepspeed":
        interleaves = (1,)
    G = int(n_devices)
    # Megatron splits query heads and KV groups across TP ranks: both must divide (megatron/core/transformer/
    # attention.py: divide(num_query_groups, tensor parallel size) asserts it); MLA has no KV groups to split.
    tps = [t for t in _divisors(G) if t <= max_tp and t & (t - 1) == 0 and arch.n_heads % t == 0
           and (arch.attention == "mla" or arch.n_kv_heads % t == 0)]
    pps = [p for p in _divisors(G) if p <= arch.n_layers]
    tp_pp_dp = [(t, p, G // (t * p)) for t in tps for p in pps if G % (t * p) == 0]
    rows = []
    for t, p, d in tp_pp_dp:
        eps = [e for e in _divisors(d) if arch.n_experts % e == 0] if arch.is_moe else [1]
        rows.extend((t, p, d, e) for e in eps)
    base = np.array(rows, dtype=np.int64).reshape(-1, 4)
    opts = np.array(np.meshgrid(np.arange(len(base)), micro_batches, interleaves, recomputes, zero_stages,
                                indexing="ij")).reshape(5, -1)
    idx, b, v, rc, z = opts
    t, p, d, e = base[idx].T
    # PP = 1 has no interleaving to choose
    keep = (p > 1) | (v == 1)
    if pipeline_engine == "deepspeed":
        keep &= (p == 1) | (z <= 1)
    t, p, d, e, b, v, rc, z = (x[keep] for x in (t, p, d, e, b, v, rc, z))
    s = arch.seq_len
    if global_batch is None:
        target = max(1.0, default_batch_tokens(G) / s)
        m = np.maximum(1, np.rint(target / (b * d))).astype(np.int64)
        B = m * b * d
        B_target = np.full(t.shape, target)
    else:
        B = np.full(t.shape, int(global_batch), dtype=np.int64)
        m = np.maximum(1, B // (b * d))
        B_target = B.astype(float)
    return {"t": t, "p": p, "d": d, "e": e, "b": b, "v": v, "recompute": rc, "zero": z, "m": m, "B": B,
            "sp": t > 1, "B_target": B_target}


def evaluate_grid(arch: Architecture, rates: eff.DeviceRates, grid: dict[str, np.ndarray], *,
                  dp_overlap: float = DEFAULT_DP_OVERLAP, flash_attention: bool = True,
                  pipeline_engine: str = "megatron", tp_overlap: float = DEFAULT_TP_OVERLAP) -> dict[str, np.ndarray]:
    """Memory, step time, throughput, MFU and the rejection reason of every candidate (one numpy pass)."""
    g = grid
    s = arch.seq_len
    mem = memory_breakdown(arch, s=s, b=g["b"], t=g["t"], p=g["p"], d=g["d"], e=g["e"], v=g["v"], m=g["m"],
                           recompute=g["recompute"], zero=g["zero"], sp=g["sp"], flash_attention=flash_attention,
                           element_bytes=rates.element_bytes)
    st = step_time(arch, rates, s=s, b=g["b"], t=g["t"], p=g["p"], d=g["d"], e=g["e"], v=g["v"], m=g["m"],
                   recompute=g["recompute"], zero=g["zero"], sp=g["sp"], dp_overlap=dp_overlap,
                   flash_attention=flash_attention, pipeline_engine=pipeline_engine, tp_overlap=tp_overlap)
    n = g["t"] * g["p"] * g["d"]
    tokens = g["B"] * s
    model_flops = arch.megatron_flops_per_token(s) * tokens
    peak = rates.peak_flops_per_s
    mfu = model_flops / (st["total"] * n * peak)
    extra = st["hardware_flops_per_gpu"] - st["model_flops_per_gpu"]
    hfu = mfu + extra / (st["total"] * peak)
    # rejection reasons, first that applies, and by how much
    layers_per_stage = np.ceil(arch.n_layers / g["p"])
    bad_il = (g["v"] > 1) & ((g["m"] % g["p"] != 0) | (layers_per_stage % g["v"] != 0))
    too_big = g["B"] > BATCH_SLACK * g["B_target"]
    bad_batch = (g["B"] % (g["b"] * g["d"]) != 0) | (g["B"] < g["b"] * g["d"]) | too_big
    over = mem["total"] - rates.memory_bytes
    bad_mem = over > 0
    # the first reason that applies (memory, then batch, then interleave), and by how much
    reason = np.where(bad_mem, REASON_MEMORY, np.where(bad_batch, REASON_BATCH,
                                                       np.where(bad_il, REASON_INTERLEAVE, 0))).astype(np.int8)
    batch_excess = np.where(too_big, g["b"] * g["d"] - g["B_target"], g["B"] % (g["b"] * g["d"]))
    excess = np.where(bad_mem, over, np.where(bad_batch, batch_excess,
                                              np.where(bad_il, g["m"] % g["p"], 0.0))).astype(float)
    return {"mem": mem, "step": st, "mfu": mfu, "hfu": hfu, "tokens_per_step": tokens,
            "time_per_token": st["total"] / tokens, "reason": reason, "excess": excess}


def add_partial_recompute(arch: Architecture, rates: eff.DeviceRates, grid: dict[str, np.ndarray],
                          res: dict) -> tuple[dict[str, np.ndarray], dict]:
    """The grid and its results extended by *partial* recompute candidates (Megatron-LM's
    ``--recompute-method block --recompute-num-layers k``): for every layout evaluated both with
    selective and with full recompute whose selective form does not fit, full recompute of the
    fewest whole layers per stage that makes it fit. Memory and step time are linear in the number
    of recomputed layers, so both come from the pair by interpolation (no further evaluation); the
    candidate records the recomputed share in ``grid["recompute_fraction"]`` (1 for full, 0 for
    the others). Returns new dicts; the inputs are not changed.
    """
    g = dict(grid)
    g.setdefault("recompute_fraction", (grid["recompute"] == RECOMPUTE_FULL).astype(float))
    sel = np.flatnonzero(grid["recompute"] == RECOMPUTE_SELECTIVE)
    full = np.flatnonzero(grid["recompute"] == RECOMPUTE_FULL)
    if sel.size == 0 or sel.size != full.size:
        return g, res
    cols = ("t", "p", "d", "e", "b", "v", "zero", "B")
    sel = sel[np.lexsort(tuple(grid[c][sel] for c in reversed(cols)))]
    full = full[np.lexsort(tuple(grid[c][full] for c in reversed(cols)))]
    if not all(np.array_equal(grid[c][sel], grid[c][full]) for c in cols):
        return g, res
    cap = rates.memory_bytes
    ms, mf = res["mem"]["total"][sel], res["mem"]["total"][full]
    layers = np.ceil(arch.n_layers / grid["p"][sel])
    with np.errstate(divide="ignore", invalid="ignore"):
        need = (ms - cap) / (ms - mf)  # share of the stage's layers that must be recomputed fully
    k = np.ceil(need * layers - 1e-9)  # whole layers
    ok = (ms > cap) & (mf <= cap) & (k >= 1) & (k < layers) & (res["reason"][sel] == REASON_MEMORY)
    if not np.any(ok):
        return g, res
    a, b_ = sel[ok], full[ok]
    frac = (k / layers)[ok]

    def mix(x):
        x = np.asarray(x)
        if x.ndim == 0:
            return x
        return np.concatenate([x, x[a] + frac * (x[b_] - x[a])])

    for key, val in grid.items():
        if key != "recompute_fraction":
            g[key] = np.concatenate([val, val[a]])
    g["recompute"][-a.size:] = RECOMPUTE_PARTIAL
    g["recompute_fraction"] = np.concatenate([g["recompute_fraction"], frac])
    out = dict(res)
    out["mem"] = {key: mix(val) for key, val in res["mem"].items()}
    out["step"] = {key: mix(val) for key, val in res["step"].items()}
    for key in ("mfu", "hfu", "time_per_token"):
        out[key] = mix(res[key])
    out["tokens_per_step"] = np.concatenate([res["tokens_per_step"], res["tokens_per_step"][a]])
    over = out["mem"]["total"][-a.size:] - cap
    out["reason"] = np.concatenate([res["reason"], np.where(over > 0, REASON_MEMORY,
                                                            res["reason"][b_]).astype(np.int8)])
    out["excess"] = np.concatenate([res["excess"], np.where(over > 0, over, res["excess"][b_])])
    return g, out


@dataclass
class SearchOutcome:
    grid: dict
    result: dict
    order: np.ndarray  # feasible candidates, best first
    seconds: float
    notes: list = field(default_factory=list)


def search_layouts(arch: Architecture, rates: eff.DeviceRates, n_devices: int, *, global_batch: int | None = None,
                   dp_overlap: float = DEFAULT_DP_OVERLAP, flash_attention: bool = True,
                   pipeline_engine: str = "megatron", tp_overlap: float = DEFAULT_TP_OVERLAP) -> SearchOutcome:
    """Evaluate the whole grid and rank feasible layouts by time per token (then memory)."""
    import time

    t0 = time.perf_counter()
    grid = layout_grid(arch, n_devices, global_batch=global_batch, pipeline_engine=pipeline_engine)
    res = evaluate_grid(arch, rates, grid, dp_overlap=dp_overlap, flash_attention=flash_attention,
                        pipeline_engine=pipeline_engine, tp_overlap=tp_overlap)
    grid, res = add_partial_recompute(arch, rates, grid, res)
    feasible = np.flatnonzero(res["reason"] == 0)
    order = feasible[np.lexsort((res["mem"]["total"][feasible], res["time_per_token"][feasible]))]
    return SearchOutcome(grid, res, order, time.perf_counter() - t0)
