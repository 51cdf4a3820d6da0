"""The MoE section of a plan (``--experts X [--top-k K]``): Krajewski et al. 2024, "Scaling Laws for
Fine-Grained Mixture of Experts" (arXiv:2402.07871), via :mod:`scaling_planner.laws.moe`.

Krajewski's parameterisation: a dense base model with FFN width d_ff = 4·d_model is expanded into
E·G experts of width d_ff/G, G of them active per token; E = N_MoE/N_ff is the expansion rate and
G the granularity. So X routed experts with top-k K are E = X/K and G = K, and the active expert
parameters per token equal the dense FFN's. For the plan's training compute C (their Eq. 10 FLOPs,
routing included) the law (their Eq. 9) gives the loss-minimising total size N, active size and
tokens D; without ``--top-k`` the granularity is chosen too, among the powers of two K that divide X
with X/K <= 64 (the fitted expansion rate; the law would otherwise always pick top-1, the largest E).

What the section does *not* claim:

* Krajewski fitted the law at E = 64 only; at another expansion rate it is an extrapolation (said
  in a note). Their loss is on their C4 setup (N non-embedding), so it is compared with their own
  dense row (Table 1), not with the plan's law; the figure that carries over is the ratio: the
  compute a dense model needs to match the MoE's loss, over C.
* The training simulator runs the MoE shape (d_model = 64·n_blocks rounded to whole 128-wide heads,
  GeLU experts, every layer MoE, the dense plan's vocabulary and sequence length) on the plan's
  GPUs with balanced routing, or on the smallest doubling of them that holds all the experts.
  When no count up to 64x fits, the section says so and reports no time or cost rather than a
  guess. A measured (calibrated) MFU of the dense run is not carried over to the MoE run.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from ..base.errors import InfeasibleError, InputError
from ..simulate.results import TrainingEstimate

FITTED_EXPANSION_RATE = 64  # Krajewski 2024 fit every law coefficient at E = 64
HEAD_DIM = 128
MAX_GPU_DOUBLINGS = 6  # an MoE that does not fit on the plan's GPUs is tried on up to 64x as many


class MoETraining(TrainingEstimate):
    """The training simulator's estimate on the MoE shape (best layout on the plan's GPUs): the same
    :class:`~scaling_planner.simulate.results.TrainingEstimate` as the plan's, plus the shape."""

    shape: str
    params: float = Field(description="all parameters of the simulated shape, embeddings included")
    active_params: float = Field(description="parameters touched per token, embeddings included")


class MoEChoice(BaseModel):
    """The ``moe`` section: the compute-optimal fine-grained MoE at the plan's compute."""

    model_config = ConfigDict(defer_build=True)

    law: str
    source: str
    experts: int = Field(description="routed experts per MoE layer, E·G")
    top_k: int = Field(description="experts active per token, G")
    expansion_rate: float = Field(description="E = experts / top_k")
    granularity: float = Field(description="G = top_k (d_ff / d_expert)")
    granularity_chosen: bool = Field(description="True when --top-k was not given and the law chose it")
    compute_flops: float = Field(description="training FLOPs of Krajewski Eq. 10 (the plan's C)")
    params_non_embedding: float = Field(description="N: all experts, no embeddings (the law's N)")
    active_params_non_embedding: float = Field(description="12·d_model²·n_blocks: per token, no embeddings")
    tokens: float
    n_blocks: float = Field(description="continuous optimum; the simulated shape rounds it")
    d_model: float
    loss: float = Field(description="Krajewski Eq. 9 loss (their C4 setup; not the plan's law)")
    dense_loss: float = Field(description="Krajewski's dense row at the same compute, compute-optimal")
    dense_compute_for_same_loss: float | None = Field(
        None, description="compute a dense model needs to reach the MoE's loss (Krajewski dense row)")
    compute_multiplier: float | None = Field(None, description="dense_compute_for_same_loss / compute_flops")
    training: MoETraining | None = None
    notes: list[str] = Field(default_factory=list)


def check(experts, top_k) -> tuple[int, int | None]:
    """(experts, top_k) validated: whole numbers, experts >= 2, 1 <= top_k < experts, top_k | experts."""
    def whole(v, field):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
            raise InputError(field, f"must be a whole number, got {v!r}")
        return int(v)

    x = whole(experts, "experts")
    if x < 2:
        raise InputError("experts", f"must be >= 2 (a mixture), got {x}")
    if top_k is None:
        return x, None
    k = whole(top_k, "top_k")
    if not 1 <= k < x:
        raise InputError("top_k", f"must be in [1, {x - 1}] for {x} experts, got {k}")
    if x % k:
        raise InputError("top_k", f"must divide experts={x}: Krajewski's parameterisation has experts = E·G "
                                  f"with top-k = G (E, the expansion rate, a whole number), got {k}")
    return x, k


def _candidates(x: int, k: int | None) -> list[int]:
    """The top-k (granularities) to try: the one given, else every power of two dividing X whose
    expansion rate X/G is at most the fitted 64 (the law rewards a larger E without bound, which
    it was never fitted for); all powers of two dividing X when none is (X > 64·largest G)."""
    if k is not None:
        return [k]
    powers = [g for g in (2**i for i in range(0, 12)) if g < x and x % g == 0]
    fitted = [g for g in powers if x / g <= FITTED_EXPANSION_RATE]
    return fitted or powers


def allocate(compute_flops: float, experts: int, top_k: int | None):
    """The best (granularity, :class:`~scaling_planner.laws.moe.MoEAllocation`) over the allowed top-k."""
    from ..laws import moe

    best = None
    for g in _candidates(experts, top_k):
        a = moe.compute_optimal(compute_flops, expansion_rate=experts / g, granularities=[float(g)])
        if best is None or a.loss < best[1].loss:
            best = (g, a)
    return best


def architecture(alloc, experts: int, top_k: int):
    """The simulator's Architecture for an allocation (module docstring), or InputError."""
    from ..simulate.architecture import DEFAULT_SEQ_LEN, DEFAULT_VOCAB, Architecture

    n = max(1, round(alloc.n_blocks))
    d = max(HEAD_DIM, round(alloc.d_model / HEAD_DIM) * HEAD_DIM)
    heads = d // HEAD_DIM
    return Architecture(
        name=f"moe-{experts}x-top{top_k}", n_layers=n, d_model=d, n_heads=heads, n_kv_heads=heads, head_dim=HEAD_DIM,
        ffn_hidden=4 * d, ffn_kind="gelu", vocab_size=DEFAULT_VOCAB, seq_len=DEFAULT_SEQ_LEN, attention="mha",
        n_experts=experts, top_k=top_k, n_moe_layers=n, expert_ffn=4 * d // top_k,
        source=f"Krajewski 2024 compute-optimal MoE: n_blocks {alloc.n_blocks:.1f} -> {n}, d_model "
               f"{alloc.d_model:.0f} -> {d} (whole 128-wide heads), experts of width 4·d/{top_k}",
    )


def section(compute_flops: float, experts, top_k, *, profile=None, gpus: int | None = None,
            price_usd_per_device_hour: float | None = None, precision: str = "bf16") -> MoEChoice:
    """The MoE section at the plan's compute; simulated on ``gpus`` x ``profile`` when given."""
    from ..laws import moe
    from ..laws.chinchilla import compute_for_loss, frontier_loss

    experts, top_k = check(experts, top_k)
    g, a = allocate(compute_flops, experts, top_k)
    E = experts / g
    dense = moe.dense_law()
    notes = []
    if E != FITTED_EXPANSION_RATE:
        notes.append(f"MoE: expansion rate E = {E:g} (Krajewski 2024 fitted the law at E = {FITTED_EXPANSION_RATE} "
                     "only): an extrapolation")
    notes.append("MoE: losses are Krajewski 2024's (their C4 setup, N non-embedding), comparable with their dense "
                 "row, not with the plan's law")
    dense_c = mult = None
    if a.loss > dense.E:
        dense_c = float(compute_for_loss(dense, a.loss))
        mult = dense_c / compute_flops
    out = MoEChoice(
        law=moe.KRAJEWSKI2024_MOE.name, source=moe.KRAJEWSKI2024_MOE.source, experts=experts, top_k=g,
        expansion_rate=E, granularity=float(g), granularity_chosen=top_k is None, compute_flops=compute_flops,
        params_non_embedding=a.params, active_params_non_embedding=a.active_params, tokens=a.tokens,
        n_blocks=a.n_blocks, d_model=a.d_model, loss=a.loss, dense_loss=float(frontier_loss(dense, compute_flops)),
        dense_compute_for_same_loss=dense_c, compute_multiplier=mult, notes=notes,
    )
    if profile is not None and gpus is not None:
        out.training = _simulate(out, a, profile, gpus, price_usd_per_device_hour, precision)
    return out


def _simulate(out: MoEChoice, alloc, profile, gpus: int, price, precision: str) -> MoETraining | None:
    """Simulate on the plan's GPUs; when the MoE does not fit there (all experts must be held), on
    the smallest of 2x .. 2^MAX_GPU_DOUBLINGS x as many that fits; otherwise say why, without a figure."""
    from ..simulate.training.estimate import simulate_training

    try:
        arch = architecture(alloc, out.experts, out.top_k)
    except InputError as exc:
        out.notes.append(f"MoE: no simulator shape for this allocation: {exc}")
        return None
    first = None
    for k in range(MAX_GPU_DOUBLINGS + 1):
        try:
            r = simulate_training(arch, out.tokens, profile, gpus * 2**k, precision=precision,
                                  price_usd_per_device_hour=price, top=0)
            break
        except (InfeasibleError, InputError) as exc:
            first = first or exc
    else:
        out.notes.append(f"MoE: not simulated: on {gpus} x {profile.name} {first}; no count up to "
                         f"{gpus * 2**MAX_GPU_DOUBLINGS} fits either (no time or cost is given rather than a guess)")
        return None
    if k:
        out.notes.append(f"MoE: does not fit on the plan's {gpus} x {profile.name} ({first}); simulated on "
                         f"{gpus * 2**k}, the smallest doubling that fits")
    t, m = r.training, r.model
    out.notes.append("MoE: simulated with balanced routing; the simulator counts model FLOPs on active parameters "
                     f"({r.compute_flops:.3g} FLOPs vs Krajewski's {out.compute_flops:.3g})")
    return MoETraining(**t.model_dump(), params=m.params, active_params=m.active_params,
                       shape=f"{m.n_layers} layers, d_model {m.d_model}, {out.experts} experts top-{out.top_k} "
                             f"of width {arch.expert_ffn}")
