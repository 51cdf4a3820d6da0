"""The pre-flight flow: measure the cluster, plan, gate, and size the training job.

Run it as the first step of a training flow (``flows/train.py`` does), serve or deploy it on its own, or
run it here with the defaults::

    python flows/preflight.py                      # measure local Ray, plan --target-loss 2.0, gate, size
    python flows/preflight.py --params 2e6 --tokens 3e7 --gpu cpu --deadline-days 0.01

Parameters are one pydantic model, :class:`PreflightRequest`, so the Prefect UI renders a form. A gate
that rejects raises :class:`~scaling_planner.base.errors.GateRejectedError`; the flow run then ends Failed with
the limits broken and by how much in its message. With no address the flow starts a local Ray instance
and Prefect's embedded server; nothing is fetched from the network.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter

from .common import one_line_errors, quiet_environment, run_script

quiet_environment()

from prefect import flow, get_run_logger  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, model_validator  # noqa: E402

from scaling_planner import tasks  # noqa: E402
from scaling_planner.base.errors import InfeasibleError, InputError  # noqa: E402
from scaling_planner.preflight.gate import GateDecision, GateLimits  # noqa: E402
from scaling_planner.preflight.sizing import RayJobSize  # noqa: E402

FALLBACK_GPU = "h100-sxm"


class PreflightRequest(BaseModel):
    """What to plan and which limits the job must meet. Give one objective (target loss or a budget) or a
    fixed job (``params`` and ``tokens``)."""

    model_config = ConfigDict(extra="forbid")

    target_loss: float | None = Field(None, gt=0, description="cheapest plan that reaches this loss")
    budget_flops: float | None = Field(None, gt=0, description="lowest loss this many FLOPs buy")
    budget_usd: float | None = Field(None, gt=0, description="lowest loss this many dollars buy")
    gpu_hours: float | None = Field(None, gt=0, description="lowest loss this many GPU-hours buy")
    params: float | None = Field(None, gt=0, description="fixed job: parameters N")
    tokens: float | None = Field(None, gt=0, description="fixed job: training tokens D")
    arch: dict | None = Field(None, description="fixed job: the exact transformer shape (Architecture fields)")
    gpu: str = Field("auto", description="hardware profile; 'auto' = what the measurement found")
    gpus: int | None = Field(None, ge=1, description="devices to train on (default: what the plan chooses)")
    deadline_days: float | None = Field(None, gt=0, description="plan and gate against this wall-clock")
    law: str | None = Field(None, description="scaling-law preset (default besiroglu2024)")
    law_file: str | None = Field(None, description="a law fitted by planner fit --out")
    limits: GateLimits = Field(default_factory=GateLimits, description="what the job must stay within")
    efficiency: str = Field("realised", pattern="^(realised|tuned)$",
                            description="realised: what teams really spend end to end (P50 and band); tuned: a "
                                        "tuned Megatron-class stack. A measured MFU (calibration) replaces both")
    measure: bool = Field(True, description="probe the cluster first")
    ray_address: str | None = Field(None, description="Ray cluster address; none = a local Ray instance")
    quick_probes: bool = Field(True, description="a short probe set (seconds); off = longer, steadier probes")
    save_measurement: bool = Field(False, description="append the probe results to the calibration history")
    use_calibration: bool = Field(True, description="plan with the latest measured MFU for the profile")
    calibration_dir: str | None = None
    size_job: bool = Field(True, description="size the Ray job against the cluster when the plan targets it")
    cpus_per_worker: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _one_objective(self):
        objectives = [k for k in ("target_loss", "budget_flops", "budget_usd", "gpu_hours") if getattr(self, k)]
        fixed = self.params is not None or self.tokens is not None
        if fixed and (self.params is None or self.tokens is None):
            raise ValueError("a fixed job needs both params and tokens")
        if len(objectives) > 1 or (objectives and fixed):
            given = objectives + (["params"] if fixed else [])
            raise ValueError(f"give one objective or a fixed job, got {', '.join(given)}")
        if not objectives and not fixed and not (self.gpus and self.deadline_days):
            self.target_loss = 2.0
        return self

    def objective(self) -> dict:
        keys = {"target_loss": "target_loss", "budget_flops": "budget_flops", "budget_usd": "budget_usd",
                "gpu_hours": "budget_gpu_hours"}
        out = {v: getattr(self, k) for k, v in keys.items() if getattr(self, k) is not None}
        if self.gpus is not None:
            out["gpus"] = self.gpus
        if self.deadline_days is not None:
            out["deadline_days"] = self.deadline_days
        return out


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


def _detected_profile(measurement) -> str | None:
    """The most common GPU profile the measurement found, else 'cpu' when only CPUs reported."""
    if measurement is None:
        return None
    profiles = Counter(d.profile for d in measurement.devices() if d.profile)
    gpu = [(p, n) for p, n in profiles.most_common() if p != "cpu"]
    if gpu:
        return gpu[0][0]
    return "cpu" if profiles else None


def _choose_gpu(req: PreflightRequest, measurement, notes: list[str]) -> tuple[str, bool]:
    """(profile, whether the plan targets the measured cluster)."""
    detected = _detected_profile(measurement)
    if req.gpu != "auto":
        return req.gpu, detected is not None and detected == req.gpu
    if detected and (detected != "cpu" or req.params is not None):
        return detected, True
    found = "the cluster was not measured" if measurement is None else "no GPU found on the cluster"
    notes.append(f"{found}: planning for {FALLBACK_GPU}; the job is not sized against this cluster "
                 "(give gpu= to choose the hardware)")
    return FALLBACK_GPU, False


@flow(name="preflight", log_prints=True)
def preflight(request: PreflightRequest | None = None) -> PreflightResult:
    """Measure, plan, gate, size. Raises GateRejectedError (flow Failed) when the job breaks a limit."""
    from scaling_planner.measure.ray_session import ray_session

    req = request or PreflightRequest()
    logger = get_run_logger()
    notes: list[str] = []
    needs_ray = req.measure or req.size_job
    with ray_session(req.ray_address) if needs_ray else contextlib.nullcontext():
        measurement = None
        if req.measure:
            measurement = tasks.measure_cluster(req.ray_address, quick=req.quick_probes, save=req.save_measurement,
                                                calibration_dir=req.calibration_dir)
        gpu, on_cluster = _choose_gpu(req, measurement, notes)
        calibration = tasks.load_calibration(gpu, req.calibration_dir) if req.use_calibration else []
        if req.use_calibration and not calibration:
            notes.append(f"no calibration for {gpu}: the plan uses the profile's assumed efficiency")
        plan, infeasible = None, None
        try:
            if req.params is not None:
                kind = "simulate"
                plan = tasks.simulate_training(req.params, req.tokens, gpu, req.gpus or 1, calibration=calibration,
                                               arch=req.arch, efficiency=req.efficiency)
            else:
                kind = "recommend"
                plan = tasks.recommend_plan(req.objective(), law=req.law, law_file=req.law_file, gpu=gpu,
                                            calibration=calibration, efficiency=req.efficiency)
        except InfeasibleError as exc:
            if isinstance(exc, InputError):
                raise
            infeasible = str(exc)
        measured = next(((r.mfu, r.describe()) for r in calibration if r.source == "training" and r.mfu), (None, None))
        gate = tasks.preflight_gate(plan, req.limits, measured_mfu=measured[0], mfu_source=measured[1],
                                    infeasible_reason=infeasible)
        job, job_note = None, None
        if req.size_job and on_cluster and plan is not None:
            workers = int(plan.training.gpus)
            from scaling_planner.planning.recommend import load_profile
            from scaling_planner.preflight.sizing import accelerator_type_for_profile

            profile = load_profile(gpu)
            use_gpu = profile.kind != "cpu"
            job = tasks.size_ray_job(workers, ray_address=req.ray_address, use_gpu=use_gpu,
                                     cpus_per_worker=req.cpus_per_worker,
                                     accelerator_type=accelerator_type_for_profile(profile) if use_gpu else None,
                                     devices_per_node=int(profile.devices_per_node))
        elif req.size_job:
            job_note = "not sized: the plan is not for the measured cluster's hardware"
    result = PreflightResult(
        kind=kind, gpu=gpu, plan=plan.model_dump(mode="json") if plan is not None else None, gate=gate, job=job,
        job_note=job_note, calibration=[r.describe() for r in calibration],
        measurement=_measurement_summary(measurement), notes=notes)
    for line in summary_lines(result):
        logger.info(line)
    return result


def _measurement_summary(m) -> dict | None:
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


def _parse_args(argv: list[str]) -> PreflightRequest | None:
    import argparse

    ap = argparse.ArgumentParser(prog="python flows/preflight.py", description=__doc__.splitlines()[0])
    for name in ("target-loss", "budget-flops", "budget-usd", "gpu-hours", "params", "tokens", "deadline-days",
                 "max-cost-usd", "min-mfu", "max-overrun-probability"):
        ap.add_argument(f"--{name}", type=float)
    ap.add_argument("--efficiency", choices=("realised", "tuned"), default="realised")
    ap.add_argument("--gpu", default="auto")
    ap.add_argument("--gpus", type=int)
    ap.add_argument("--law")
    ap.add_argument("--ray-address")
    ap.add_argument("--no-measure", action="store_true")
    ap.add_argument("--save-measurement", action="store_true")
    ap.add_argument("--calibration-dir")
    ap.add_argument("--serve", action="store_true",
                    help="serve the flow as a deployment named 'preflight' (runs from the Prefect UI/API) instead")
    a = ap.parse_args(argv)
    if a.serve:
        return None
    limits = GateLimits(max_cost_usd=a.max_cost_usd, deadline_days=a.deadline_days, min_mfu=a.min_mfu,
                        max_overrun_probability=a.max_overrun_probability)
    return PreflightRequest(target_loss=a.target_loss, budget_flops=a.budget_flops, budget_usd=a.budget_usd,
                            gpu_hours=a.gpu_hours, params=a.params, tokens=a.tokens, gpu=a.gpu, gpus=a.gpus,
                            deadline_days=a.deadline_days, law=a.law, limits=limits, measure=not a.no_measure,
                            efficiency=a.efficiency,
                            ray_address=a.ray_address, save_measurement=a.save_measurement,
                            calibration_dir=a.calibration_dir)


def main(argv: list[str] | None = None) -> int:
    def build():
        request = _parse_args(sys.argv[1:] if argv is None else argv)
        if request is None:  # --serve: a long-lived process that runs the flow with the form's values
            one_line_errors()
            preflight.serve(name="preflight", description=__doc__.splitlines()[0])
        return request

    return run_script("preflight", build, preflight, summary_lines)


if __name__ == "__main__":
    sys.exit(main())
