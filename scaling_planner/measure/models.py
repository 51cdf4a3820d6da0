"""Pydantic models of what the cluster was measured to do (imports nothing but pydantic).

These are the contract between ``scaling_planner.measure`` (the only package that touches NVML,
torch and Ray), the calibration history (:mod:`scaling_planner.calibration`), the planner, the CLI
(``planner measure --json`` prints a :class:`ClusterMeasurement`) and the Prefect tasks.

Units are in the field names (DESIGN.md): ``_flops_per_s``, ``_bytes_per_s``, ``_bytes``, ``_w``,
``_mhz``, ``_pct``, ``_s``. ``fraction_of_peak`` is achieved / the profile's *dense* peak for the
same dtype.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProbeResult(_Model):
    """One micro-benchmark on one device: a matrix multiply (FLOP/s) or a memory copy (bytes/s)."""

    kind: Literal["matmul", "memory_bandwidth"]
    backend: str = Field(description="numpy, torch-cpu or torch-cuda")
    dtype: str = Field(description="fp32, tf32, bf16, fp16, fp8 (matmul) or the element type copied")
    size: int = Field(description="matmul: n of the n x n x n product; bandwidth: bytes per copy")
    unit: Literal["flops_per_s", "bytes_per_s"]
    median: float = Field(description="median achieved rate over the timed repeats, in ``unit``")
    samples: list[float] = Field(description="achieved rate of each timed repeat, in ``unit``")
    spread: float = Field(description="(max - min) / median of the samples")
    warmup: int
    repeats: int
    timed_s: float = Field(description="seconds inside the timed region (the work being measured)")
    total_s: float = Field(description="seconds for the whole probe: allocation, warm-up, timing")
    peak: float | None = Field(None, description="the profile's dense peak for this dtype, in ``unit``")
    fraction_of_peak: float | None = None
    threads: int | None = Field(None, description="CPU threads used (CPU backends)")
    error: str | None = Field(None, description="why the probe did not run (dtype unsupported, timeout, ...)")


class GpuDevice(_Model):
    """What NVML reports about one GPU; a field is ``None`` where the driver does not support it."""

    index: int
    name: str | None = None
    uuid: str | None = None
    profile: str | None = Field(None, description="hardware profile matched from the NVML name")
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    sm_clock_mhz: int | None = None
    sm_clock_max_mhz: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    utilization_gpu_pct: float | None = None
    utilization_memory_pct: float | None = None
    temperature_c: float | None = None
    ecc_uncorrected_volatile: int | None = None
    compute_capability: tuple[int, int] | None = None
    nvlink_active_links: int | None = None
    pcie_generation: int | None = None
    pcie_width: int | None = None
    gpm_supported: bool | None = None
    tensor_active_pct: float | None = Field(None, description="GPM ANY_TENSOR_UTIL over the sample window")
    sm_occupancy_pct: float | None = Field(None, description="GPM SM_OCCUPANCY over the sample window")
    errors: list[str] = Field(default_factory=list, description="NVML calls that failed on this device")


class NvmlReport(_Model):
    """One NVML read of a host: no GPU is a result (``available`` False with the reason), not a crash."""

    available: bool
    reason: str | None = None
    driver_version: str | None = None
    cuda_driver_version: int | None = None
    devices: list[GpuDevice] = Field(default_factory=list)


class DeviceMeasurement(_Model):
    """The probes of one device (a GPU, or a node's CPU when it has no GPU)."""

    node_id: str
    hostname: str | None = None
    device: str = Field(description="'cuda:<i>' or 'cpu'")
    name: str | None = Field(None, description="device name (NVML name or CPU model)")
    profile: str | None = None
    status: Literal["ok", "failed", "timeout"]
    error: str | None = None
    probes: list[ProbeResult] = Field(default_factory=list)
    nvml: GpuDevice | None = None
    elapsed_s: float | None = None

    def best_matmul(self, dtype: str | None = None) -> ProbeResult | None:
        """The matmul probe with the highest median (of ``dtype`` when given)."""
        ok = [p for p in self.probes if p.kind == "matmul" and p.error is None
              and (dtype is None or p.dtype == dtype)]
        return max(ok, key=lambda p: p.median, default=None)


class NodeMeasurement(_Model):
    node_id: str
    address: str | None = None
    hostname: str | None = None
    alive: bool
    resources: dict[str, float] = Field(default_factory=dict)
    devices: list[DeviceMeasurement] = Field(default_factory=list)
    error: str | None = None


class Straggler(_Model):
    node_id: str
    device: str
    dtype: str
    achieved_flops_per_s: float
    median_flops_per_s: float
    shortfall: float = Field(description="1 - achieved / median of all devices for this dtype")


class ClusterTotals(_Model):
    nodes: int
    nodes_alive: int
    devices: int
    devices_ok: int
    gpus: int
    achieved_flops_per_s: dict[str, float] = Field(
        default_factory=dict, description="sum over devices of the median matmul rate, per dtype")


class ClusterMeasurement(_Model):
    """``planner measure --json``: every node and device, totals, stragglers, what is missing."""

    measured_at: str = Field(description="UTC ISO 8601")
    ray_address: str | None = None
    elapsed_s: float
    partial: bool = Field(description="True when a node or device did not report (dead, timed out, failed)")
    nodes: list[NodeMeasurement]
    totals: ClusterTotals
    stragglers: list[Straggler] = Field(default_factory=list)
    straggler_margin: float = Field(description="a device slower than the median by more than this is a straggler")
    missing: list[str] = Field(default_factory=list, description="nodes or devices that did not report, and why")
    load_average: list[float] | None = Field(None, description="os.getloadavg() of the driver when it ran")
    notes: list[str] = Field(default_factory=list)

    def devices(self) -> list[DeviceMeasurement]:
        return [d for n in self.nodes for d in n.devices]


class MfuReport(_Model):
    """What the MFU meter measured over a real training loop (``scaling_planner.measure.mfu``)."""

    device: str
    device_name: str | None = None
    profile: str | None = None
    dtype: str
    steps: int
    tokens: int
    elapsed_s: float
    tokens_per_s: float
    flops_per_token: float = Field(description="model FLOPs per token, forward + backward")
    flops_convention: str = Field(description="e.g. '6N + 12LHQT (attention not halved for the causal mask)'")
    achieved_flops_per_s: float = Field(description="model FLOP/s (MFU's numerator), not hardware FLOP/s")
    peak_flops_per_s: float | None = None
    peak_source: str | None = None
    mfu: float | None = Field(None, description="achieved model FLOP/s / dense peak")
    power_w_mean: float | None = None
    utilization_gpu_pct_mean: float | None = None
    tensor_active_pct_mean: float | None = None
    nvml_samples: int = 0
