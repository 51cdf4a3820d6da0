"""Pydantic models of the planner's outputs (imports nothing but pydantic).

``SimulationResult`` is what ``planner simulate --json`` prints. Contract fields (DESIGN.md):
top-level ``compute_flops``; ``model.params``, ``model.tokens``; ``training.gpu_hours``,
``training.wall_clock_days``, ``training.mfu``, ``training.cost_usd``, ``training.energy_kwh``;
``search.candidates``, ``search.feasible``.
"""

from __future__ import annotations

from typing import Literal

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
    accumulation + bubble + exposed dp + optimizer + embedding sync + stack elementwise
    (``dp_comm_hidden`` is overlapped, not added); ``grad_accumulation`` is non-zero only with DeepSpeed's
    pipeline engine, ``stack_elementwise`` only for the realised (end-to-end) estimate. With a measured MFU
    ``total`` is the measured step and the parts are the model's."""

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
    stack_elementwise: float = Field(0.0, description="an eager stack's extra elementwise traffic (realised only)")


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

    source: str = Field(description="'realised' (end-to-end prior), 'tuned' (step model) or 'measured' (an MFU)")
    curve: str
    achievable_matmul_fraction: float
    achievable_matmul_source: str
    measured_mfu: float | None = None
    predicted_mfu: float = Field(description="the tuned step model's MFU on its best layout, before any measurement")
    unfused_bytes_per_element: float = Field(0.0, description="an eager stack's extra elementwise traffic used")
    end_to_end_factor: float = Field(1.0, description="the fitted factor for what published runs spend beyond "
                                                      "steady state, failures and checkpoints")
    band_p10: float = Field(1.0, description="P10 / P50 of GPU-hours, wall-clock and cost")
    band_p90: float = Field(1.0, description="P90 / P50")
    prior_source: str = ""


class EnergyAssumptions(_Out):
    """The power model behind ``energy_kwh`` and ``co2_kg`` (``simulate/energy.py``), as used."""

    device_power_w: float = Field(description="average accelerator power while training")
    host_w_per_device: float = Field(description="CPU, memory, NICs and fans per accelerator")
    pue: float = Field(description="facility power usage effectiveness")
    grid_kg_co2_per_kwh: float = Field(description="grid carbon intensity")


class TrainingEstimate(_Out):
    """The training estimate: P50 figures of a real end-to-end run with their P10 / P90 band, and the
    tuned-stack figures beside them (``efficiency_source`` says which prior or measurement set them)."""

    gpu: str
    gpus: int
    precision: str
    layout: Layout
    step_time_s: float = Field(description="steady-state seconds per step of the chosen layout")
    tokens_per_s: float
    steps: float
    ideal_time_s: float = Field(description="steady-state training time, no failures")
    goodput: float = Field(description="useful time / (useful + failures, checkpoints, restarts)")
    end_to_end_factor: float = Field(description="what published runs spend beyond steady state and failures "
                                                 "(1 for tuned and measured)")
    wall_clock_days: float = Field(description="P50: ideal time / goodput x end_to_end_factor")
    wall_clock_days_p10: float
    wall_clock_days_p90: float
    gpu_hours: float = Field(description="P50 GPU-hours (GPUs x wall-clock)")
    gpu_hours_p10: float
    gpu_hours_p90: float
    mfu: float = Field(description="expected realised MFU end to end: model FLOPs / (P50 GPU-hours x dense peak)")
    mfu_steady_state: float = Field(description="MFU of the chosen layout's steady-state step")
    mfu_tuned: float = Field(description="the step model's MFU for a tuned Megatron-class stack (its best layout)")
    hfu: float = Field(description="hardware FLOPs utilisation of the steady-state step (with recompute FLOPs)")
    model_tflops_per_gpu: float = Field(description="steady-state model TFLOP/s per GPU")
    model_flops: float = Field(description="model FLOPs of the run (Megatron count, a count)")
    peak_flops_per_s: float = Field(description="dense peak per device at this precision (a rate)")
    gpu_hours_tuned: float = Field(description="tuned stack: steady state plus failures and checkpoints")
    wall_clock_days_tuned: float
    cost_usd: float = Field(description="P50")
    cost_usd_p10: float
    cost_usd_p90: float
    cost_usd_tuned: float
    efficiency_mode: Literal["realised", "tuned", "measured"] = Field(
        description="realised: the end-to-end prior; tuned: the step model alone; measured: a measured MFU")
    efficiency_source: str = Field(description="the prior or measurement behind the figures, as a sentence")
    price_usd_per_device_hour: float
    price_source: str
    energy_kwh: float = Field(description="facility energy over the P50 wall-clock (PUE and host power included)")
    co2_kg: float
    energy_assumptions: EnergyAssumptions
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
