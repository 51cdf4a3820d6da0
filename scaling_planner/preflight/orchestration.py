"""The pre-flight, step by step, without Prefect or Ray: its request and result, which hardware to plan
for, which measured MFU the gate checks, and the summary a user reads. The flow
(:mod:`scaling_planner.flows.preflight`) runs these steps as tasks.

The request is the planner's (:class:`~scaling_planner.planning.request.PlanRequest`) plus a fixed job,
the gate's limits and how to measure, so the pre-flight's form, its script flags, ``planner recommend``
and :func:`~scaling_planner.planning.recommend.recommend` share one definition of every option.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from ..base.errors import InputError
from ..planning.request import OBJECTIVES, PlanRequest
from .gate import GateDecision, GateLimits
from .sizing import RayJobSize

FALLBACK_GPU = "h100-sxm"
DEFAULT_TARGET_LOSS = 2.0  # the pre-flight's objective when none is given (nats/token)


class PreflightRequest(PlanRequest):
    """What to plan and which limits the job must meet: the planner's request
    (:class:`~scaling_planner.planning.request.PlanRequest`, every field of ``planner recommend``) plus
    a fixed job, the gate's limits and how to measure. Give one objective (target loss or a budget), a
    fixed cluster (gpus and deadline_days), or a fixed job (``params`` and ``tokens``); with none the
    target loss is 2.0."""

    gpu: str = Field("auto", description="hardware profile; 'auto' = what the measurement found")
    calibration: Literal["latest", "none"] = Field(
        "latest", description="latest: plan with the newest measured MFU and matmul rate of the profile in the "
                              "calibration history; none: with the profile's prior alone")
    params: float | None = Field(None, gt=0, description="fixed job: parameters N")
    tokens: float | None = Field(None, gt=0, description="fixed job: training tokens D")
    arch: dict | None = Field(None, description="fixed job: the exact transformer shape (Architecture fields)")
    law: str | None = Field(None, description="scaling-law preset (default besiroglu2024)")
    law_file: str | None = Field(None, description="a law fitted by planner fit --out")
    limits: GateLimits = Field(default_factory=GateLimits, description="what the job must stay within (the "
                               "plan's deadline_days is a limit too)")
    measure: bool = Field(True, description="probe the cluster first")
    ray_address: str | None = Field(None, description="Ray cluster address (HOST:PORT); none = a local Ray "
                                                      "instance")
    quick_probes: bool = Field(True, description="a short probe set (seconds); off = longer, steadier probes")
    save_measurement: bool = Field(False, description="append the probe results to the calibration history")
    size_job: bool = Field(True, description="size the Ray job against the cluster when the plan targets it")
    cpus_per_worker: float = Field(1.0, ge=0, description="CPUs each Ray worker of the job asks for")

    def check_objective(self) -> None:
        """One objective, a fixed cluster or a fixed job (both params and tokens); none: target loss 2.0."""
        fixed = self.params is not None or self.tokens is not None
        if fixed and (self.params is None or self.tokens is None):
            raise InputError("params", "a fixed job needs both params and tokens")
        objectives = [k for k in OBJECTIVES if getattr(self, k) is not None]
        if objectives and fixed:
            raise InputError("objective", f"give one objective or a fixed job, got {', '.join(objectives)} and "
                                          "params")
        if fixed:
            return
        if not objectives and not (self.gpus and self.deadline_days):
            self.target_loss = DEFAULT_TARGET_LOSS
        super().check_objective()

    @model_validator(mode="after")
    def _deadline_is_a_limit(self):
        if self.deadline_days is not None and self.limits.deadline_days is None:
            self.limits = self.limits.model_copy(update={"deadline_days": self.deadline_days})
        return self

    def plan_request(self, **given) -> PlanRequest:
        """The planner's request of this pre-flight (the fields set here, plus ``given``)."""
        fields = {k: getattr(self, k) for k in PlanRequest.model_fields if k in self.model_fields_set}
        return PlanRequest.validated(**{**fields, **given})


class PreflightResult(BaseModel):
    kind: str = Field(description="'recommend' (an objective) or 'simulate' (a fixed job)")
    gpu: str
    plan: dict | None = Field(None, description="the Recommendation or SimulationResult, dumped")
    gate: GateDecision
    job: RayJobSize | None = None
    job_note: str | None = None
    measurement: dict | None = Field(None, description="totals, stragglers and what is missing")
    calibration: list[str] = Field(default_factory=list, description="the measurements the plan used")
    notes: list[str] = Field(default_factory=list)

    def training(self) -> dict | None:
        return (self.plan or {}).get("training")


def detected_profile(measurement) -> str | None:
    """The most common GPU profile the measurement found, else 'cpu' when only CPUs reported."""
    if measurement is None:
        return None
    profiles = Counter(d.profile for d in measurement.devices() if d.profile)
    gpu = [(p, n) for p, n in profiles.most_common() if p != "cpu"]
    if gpu:
        return gpu[0][0]
    return "cpu" if profiles else None


def choose_gpu(req: PreflightRequest, measurement, notes: list[str]) -> tuple[str, bool]:
    """(profile, whether the plan targets the measured cluster)."""
    detected = detected_profile(measurement)
    if req.gpu != "auto":
        return req.gpu, detected is not None and detected == req.gpu
    if detected and (detected != "cpu" or req.params is not None):
        return detected, True
    found = "the cluster was not measured" if measurement is None else "no GPU found on the cluster"
    notes.append(f"{found}: planning for {FALLBACK_GPU}; the job is not sized against this cluster "
                 "(give gpu= to choose the hardware)")
    return FALLBACK_GPU, False


def gate_mfu(records, profile: str, precision: str | None = None) -> tuple[float | None, str | None]:
    """(MFU, its description) of the training record the plan itself would use: the newest of the
    profile's records at the plan's precision (default: the profile's training precision, bf16 or fp32
    on a CPU) with MFU <= 1 (:func:`~scaling_planner.calibration.choice.resolve`), so that the gate's
    ``min_mfu`` never checks a record the plan rejected; (None, None) without one."""
    if not records:
        return None, None
    from ..calibration.choice import resolve
    from ..hardware.profiles import load_profile

    use = resolve(list(records), None, profile, precision or load_profile(profile).training_precision)
    return (use.mfu, use.used[0]) if use.mfu is not None else (None, None)


def measurement_summary(m) -> dict | None:
    if m is None:
        return None
    return {"measured_at": m.measured_at, "partial": m.partial, "totals": m.totals.model_dump(),
            "stragglers": [s.model_dump() for s in m.stragglers], "missing": list(m.missing),
            "elapsed_s": m.elapsed_s}


def summary_lines(result: PreflightResult) -> list[str]:
    """What a user reads at the end of the run: the plan, the gate and the job size."""
    from scaling_planner.base.units import format_rate, format_si, format_usd

    lines = []
    p = result.plan or {}
    model = p.get("model", {})
    if model:
        loss = f", predicted loss {model['loss']:.4f}" if "loss" in model else ""
        lines.append(f"plan ({result.kind}): N {format_si(model['params'])} params, D {format_si(model['tokens'])} "
                     f"tokens, {p['compute_flops']:.3e} FLOPs{loss}")
    t = p.get("training")
    if t:
        days = f"{t['wall_clock_days']:.4g} days [{t['wall_clock_days_p10']:.3g}-{t['wall_clock_days_p90']:.3g}]"
        lines.append(f"training (P50 [P10-P90]): {t['gpus']} x {t['gpu']}, MFU {t['mfu']:.1%} end to end, {days}, "
                     f"{t['gpu_hours']:,.4g} GPU-hours, {format_usd(t['cost_usd'])} "
                     f"[{format_usd(t['cost_usd_p10'])}-{format_usd(t['cost_usd_p90'])}], {t['energy_kwh']:,.4g} kWh")
        lines.append(f"tuned stack: MFU {t['mfu_tuned']:.1%}, {t['wall_clock_days_tuned']:.4g} days; efficiency: "
                     f"{t['efficiency_source']}")
    lines.append(result.gate.summary())
    if result.job:
        args = ", ".join(f"{k}={v!r}" for k, v in result.job.scaling_config_kwargs().items())
        lines.append(f"Ray job: ScalingConfig({args})")
    elif result.job_note:
        lines.append(result.job_note)
    m = result.measurement
    if m:
        rates = ", ".join(f"{k} {format_rate(v)}" for k, v in m["totals"]["achieved_flops_per_s"].items())
        lines.append(f"measured: {m['totals']['devices_ok']}/{m['totals']['devices']} devices ok"
                     + (f", {rates}" if rates else "") + (" (partial)" if m["partial"] else ""))
    lines += [f"calibration: {c}" for c in result.calibration]
    lines += [f"note: {n}" for n in result.notes]
    return lines


