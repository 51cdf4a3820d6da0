"""Pydantic output models of the serving cost model (``planner serve`` and :func:`serving_capacity`).

SI units, the unit in every field name. Pydantic only: no numpy here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Percentiles(_Out):
    p50: float
    p90: float
    p99: float
    mean: float


class ModelInfo(_Out):
    name: str
    params: float
    active_params: float
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    source: str = ""


class HardwareInfo(_Out):
    profile: str
    display_name: str
    price_usd_per_device_hour: float
    memory_bytes_per_device: float
    memory_bandwidth_bytes_per_s: float


class MemoryPerDevice(_Out):
    """Per device of a replica, bytes."""

    usable_bytes: float
    weights_bytes: float
    kv_cache_bytes: float
    kv_bytes_per_token: float
    kv_capacity_tokens: float


class StepBreakdown(_Out):
    """One decode step at the stated batch and mean context, seconds (the roofline parts are per device)."""

    memory_s: float  # weights + KV bytes / achievable HBM bandwidth
    compute_s: float  # FLOPs / achievable FLOP/s
    elementwise_s: float
    kernel_overhead_s: float
    tp_comm_s: float
    total_s: float
    bound: str  # "memory" or "compute"


class FixedEstimate(_Out):
    """``planner serve --gpus G --batch-size B``: one replica, one batch of identical requests."""

    model: ModelInfo
    hardware: HardwareInfo
    gpus: int
    tensor_parallel: int
    batch_size: int
    prompt_tokens: int
    output_tokens: int
    precision: str
    kv_precision: str
    ttft_s: float  # prefill of the whole batch in one iteration
    tpot_s: float  # mean decode step over the generation
    request_latency_s: float
    throughput_output_tokens_per_s: float
    throughput_total_tokens_per_s: float  # prompt + output tokens over the request latency
    throughput_output_tokens_per_s_per_device: float
    throughput_total_tokens_per_s_per_device: float
    max_batch_size: int  # KV blocks for sequences of prompt + output tokens, capped at 256
    memory: MemoryPerDevice
    decode_step: StepBreakdown
    cost_usd_per_million_output_tokens: float
    assumptions: dict
    notes: list[str] = Field(default_factory=list)


class Demand(_Out):
    tokens_per_day: float  # prompt + answer tokens users send and receive (thinking tokens excluded)
    mean_qps: float
    peak_factor: float
    peak_qps: float
    prompt_tokens: float
    output_tokens: float
    thinking_tokens: float = 0.0
    samples_per_query: int = 1
    sequence_qps_peak: float  # decode sequences per second at peak: peak_qps × samples


class SLO(_Out):
    p99_ttft_s: float
    p99_tpot_s: float


class ReplicaOption(_Out):
    """One tensor-parallel degree: its capacity under the SLO and what it costs."""

    tensor_parallel: int
    max_batch_size: int
    kv_capacity_tokens: float
    analytic_max_qps: float  # mean-latency fixed point, see load.analytic_capacity
    simulated_max_qps: float | None = None  # bisection over load with the event simulation
    max_qps: float  # what the plan uses: the simulated value when there is one
    meets_slo: bool
    zero_load_ttft_s: float
    zero_load_tpot_s: float
    replicas: int
    devices: int
    cost_usd_per_day: float
    reason: str = ""


class LatencyAtLoad(_Out):
    """The simulated replica at the load the plan puts on it (peak QPS / replicas)."""

    qps: float
    ttft_s: Percentiles
    tpot_s: Percentiles
    queue_s: Percentiles
    utilization: float
    mean_batch: float
    requests_simulated: int


class TestTimeCompute(_Out):
    thinking_tokens_per_query: float
    samples_per_query: int
    decode_tokens_per_query: float  # samples × (output + thinking)
    decode_multiplier: float  # vs one sample without thinking
    devices_without: int
    devices_with: int
    cost_usd_per_day_without: float
    cost_usd_per_day_with: float
    extra_cost_usd_per_day: float
    cost_usd_per_query_with: float
    cost_usd_per_query_without: float
    single_sample_accuracy: float | None = None
    pass_at_k: float | None = None


class ServingPlan(_Out):
    """GPUs, latency, cost and energy to serve ``model`` on ``hardware`` at ``demand`` under ``slo``."""

    model: ModelInfo
    hardware: HardwareInfo
    precision: str
    kv_precision: str
    demand: Demand
    slo: SLO
    tensor_parallel: int
    devices_per_replica: int
    replicas: int
    devices: int
    max_qps_per_replica: float
    max_batch_size: int
    memory: MemoryPerDevice
    latency_at_peak: LatencyAtLoad | None = None
    mean_utilization: float  # mean load / capacity of the fleet
    cost_usd_per_day: float
    cost_usd_per_month: float
    cost_usd_per_million_tokens: float  # per million demand tokens (prompt + answer)
    cost_usd_per_million_output_tokens: float  # per million answer tokens
    cost_usd_per_query: float
    energy_kwh_per_day: float  # facility energy, PUE included
    energy_j_per_token: float  # per demand token
    device_power_w: float
    pue: float
    options: list[ReplicaOption]
    test_time_compute: TestTimeCompute | None = None
    capacity_method: str
    assumptions: dict
    notes: list[str] = Field(default_factory=list)
