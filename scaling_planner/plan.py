"""Pydantic models of the planner's outputs (imports nothing but pydantic).

``SimulationResult`` is what ``planner simulate --json`` prints. Contract fields (DESIGN.md):
top-level ``compute_flops``; ``model.params``, ``model.tokens``; ``training.gpu_hours``,
``training.wall_clock_days``, ``training.mfu``, ``training.cost_usd``, ``training.energy_kwh``;
``search.candidates``, ``search.feasible``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Out):
    """The model being trained: size, data and shape, and how its FLOPs were counted."""

    name: str
    params: float = Field(description="total parameters (all experts)")
    active_params: float = Field(description="parameters used per token (MoE: top-k + shared)")
    tokens: float = Field(description="training tokens D")
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_hidden: int
    ffn_kind: str
    vocab_size: int
    seq_len: int
    n_experts: int = 1
    top_k: int = 1
    flops_per_token: float = Field(description="model FLOPs per token, forward + backward")
    flops_convention: str
    palm_flops_per_token: float = Field(description="6N + 12 L H Q T (PaLM App. B), for comparison")
    shape_source: str


class Layout(_Out):
    """One parallel layout: TP x PP x DP (x EP), micro-batching, recompute, ZeRO."""

    tp: int
    pp: int
    dp: int
    ep: int = 1
    micro_batch: int
    micro_batches: int = Field(description="micro-batches per pipeline per step (gradient accumulation)")
    interleave: int = Field(description="virtual pipeline chunks per GPU (1 = plain 1F1B)")
    recompute: str = Field(description="none, selective (attention core), full, or partial (full recompute of "
                                       "some layers per stage, the rest selective)")
    recompute_fraction: float = Field(0.0, description="share of each stage's layers recomputed fully "
                                                       "(1 for full, 0 for none and selective)")
    zero_stage: int = Field(description="0 none; 1 optimizer (= Megatron distributed optimizer); 2 +grads; 3 +weights")
    sequence_parallel: bool
    global_batch: int = Field(description="sequences per optimizer step")
    global_batch_tokens: int


class TimeBreakdown(_Out):
    """Seconds per optimizer step. ``total`` = compute + elementwise + recompute + tp + a2a + pp + gradient
    accumulation + bubble + exposed dp + optimizer + embedding sync (``dp_comm_hidden`` is overlapped,
    not added); ``grad_accumulation`` is non-zero only with DeepSpeed's pipeline engine."""

    total: float
    compute: float
    elementwise: float
    recompute: float
    tp_comm: float
    moe_all_to_all: float
    pp_comm: float
    grad_accumulation: float
    bubble: float
    dp_comm: float
    dp_comm_hidden: float
    optimizer: float
    embedding_sync: float


class MemoryBreakdown(_Out):
    """GiB per GPU on the most-loaded pipeline stage."""

    total: float
    weights: float
    gradients: float
    optimizer: float
    activations: float
    activations_embedding_output: float
    overhead: float
    capacity: float


class EfficiencyProvenance(_Out):
    """Where the achieved efficiency came from."""

    source: str = Field(description="'model' (GEMM-size curve of the profile) or 'measured MFU'")
    curve: str
    achievable_matmul_fraction: float
    achievable_matmul_source: str
    measured_mfu: float | None = None
    predicted_mfu: float = Field(description="what the model predicts for this layout, before any measurement")


class TrainingEstimate(_Out):
    gpu: str
    gpus: int
    precision: str
    layout: Layout
    step_time_s: float
    tokens_per_s: float
    steps: float
    ideal_time_s: float = Field(description="failure-free training time")
    goodput: float = Field(description="useful time / wall-clock (failures, checkpoints, restarts)")
    wall_clock_days: float
    gpu_hours: float
    mfu: float = Field(description="model FLOPs utilisation (no recompute FLOPs), dense peak")
    hfu: float = Field(description="hardware FLOPs utilisation (with recompute FLOPs)")
    model_tflops_per_gpu: float
    cost_usd: float
    price_usd_per_gpu_hour: float
    price_source: str
    energy_kwh: float
    co2_kg: float
    time_breakdown_s: TimeBreakdown
    memory_gib: MemoryBreakdown
    efficiency: EfficiencyProvenance
    notes: list[str] = Field(default_factory=list)


class LayoutScore(_Out):
    layout: Layout
    step_time_s: float
    tokens_per_s: float
    mfu: float
    memory_gib: float


class Rejection(_Out):
    """A layout that was not feasible, with what failed and by how much."""

    layout: Layout
    reason: str
    detail: str


class SearchSummary(_Out):
    candidates: int
    feasible: int
    rejected: dict[str, int] = Field(description="infeasible candidates per reason")
    next_best: list[LayoutScore]
    closest_rejected: list[Rejection] = Field(description="per reason, the candidate that missed by the least")
    search_s: float


class SimulationResult(_Out):
    compute_flops: float = Field(description="model FLOPs of the whole run (flops_per_token x tokens)")
    model: ModelSpec
    training: TrainingEstimate
    search: SearchSummary
