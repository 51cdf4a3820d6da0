"""Prefect tasks: thin wrappers over the scaling-planner API for pre-flight flows.

* ``measure_cluster``: probes every device of the Ray cluster (retried once: a busy node can time out);
* ``load_calibration``: the latest measured MFU / matmul rate for a profile from the calibration history;
* ``fit_scaling_law``: fit (and bootstrap) a law to a runs CSV (cached, below);
* ``recommend_plan``: a :class:`~scaling_planner.planning.request.PlanRequest` -> plan (cached);
* ``simulate_training``: a fixed (N, D, GPU, G) -> training estimate (cached);
* ``size_ray_job``: the ``ray.train.ScalingConfig`` arguments, checked against the Ray cluster;
* ``preflight_gate``: raises :class:`~scaling_planner.base.errors.GateRejectedError` when the job breaks a
  limit, so the flow run ends Failed with the reason in its message.

The cached tasks keep a result for an hour (:data:`PLAN_CACHE_POLICY`), keyed on their inputs *and on the
content of every file they read* (the law file, the runs CSV, the GPU's hardware profile, the calibration
records or history) and the package version: a file rewritten in place under the same path is a new
key, so a cached plan never outlives the data it was computed from.

Each task publishes what it found as a Prefect artifact (markdown or table) when it runs inside a flow.
prefect is imported here at module level (this module is an integration); ray, torch and pynvml only
inside the tasks that need them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, CachePolicy
from prefect.utilities.hashing import hash_objects

from .base.errors import InfeasibleError
from .calibration.store import CalibrationRecord
from .planning.request import PlanRequest
from .preflight.gate import GateDecision, GateLimits
from .preflight.sizing import RayJobSize
from .render import markdown

PLAN_CACHE = timedelta(hours=1)
FREE_RESOURCES_WAIT_S = 20.0
"""How long sizing waits for resources a job needs to become free (Ray's view of them lags)."""


def _file_digest(path: str | Path) -> str:
    """sha256 of the file's bytes, or a marker naming why it could not be read (the task will then fail
    on the same file, and a failed run is never cached)."""
    try:
        return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable {path}: {type(exc).__name__} {exc.errno}"


def _profile_digest(gpu: Any) -> str:
    """The content of the hardware profile ``gpu`` resolves to (its YAML file; a profile object without
    a file: its fields)."""
    from .base.errors import InputError
    from .hardware.profiles import get_profile

    try:
        profile = get_profile(gpu)
    except InputError as exc:
        return f"no profile: {exc}"
    if profile.path is not None:
        return f"{profile.path}:{_file_digest(profile.path)}"
    return hashlib.sha256(profile.model_dump_json().encode()).hexdigest()


def _calibration_digest(calibration: Any, calibration_dir: Any) -> list[str] | str | None:
    """The records a task plans with: each given record's JSON (``model_dump_json``), or for 'latest'
    the name and bytes of every record file in the history directory (:mod:`.calibration.store`)."""
    if calibration is None:
        return None
    if isinstance(calibration, str):
        from .calibration.store import SUFFIX
        from .calibration.store import calibration_dir as resolve_dir

        d = resolve_dir(calibration_dir)
        files = sorted(d.glob(f"*{SUFFIX}")) if d.is_dir() else []
        return [f"{d}"] + [f"{f.name}:{_file_digest(f)}" for f in files]
    records = [calibration] if isinstance(calibration, CalibrationRecord) else calibration
    try:
        return [r.model_dump_json() if isinstance(r, CalibrationRecord) else repr(r) for r in records]
    except TypeError:
        return repr(calibration)


def content_digests(inputs: dict[str, Any]) -> dict[str, Any]:
    """What a planning task reads besides its arguments, as digests: the package version, the law file,
    the runs CSV, the GPU's hardware profile and the calibration records (``fit_scaling_law``,
    ``recommend_plan``, ``simulate_training``)."""
    from . import __version__

    out: dict[str, Any] = {"scaling_planner": __version__}
    for name in ("law_file", "runs_csv"):
        if inputs.get(name):
            out[name] = _file_digest(inputs[name])
    request = inputs.get("request")
    gpu = inputs.get("gpu", getattr(request, "gpu", None))
    if gpu is not None:
        out["profile"] = _profile_digest(gpu)
    if request is not None:
        out["calibration"] = _calibration_digest(request.calibration, request.calibration_dir)
    elif inputs.get("calibration") is not None:
        out["calibration"] = _calibration_digest(inputs["calibration"], None)
    return out


@dataclass
class FileContents(CachePolicy):
    """Cache key part: the content of every file the task reads and the package version
    (:func:`content_digests`), so that a file rewritten in place under the same path misses the cache."""

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        return hash_objects(content_digests(inputs or {}), raise_on_failure=True)


PLAN_CACHE_POLICY = INPUTS + FileContents()
"""The planning tasks' cache: their inputs (records included) plus :class:`FileContents`."""


def _artifact_markdown(key: str, markdown: str, description: str) -> None:
    """Publish a markdown artifact when running inside a flow run; a no-op outside one (``.fn`` calls)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() or TaskRunContext.get():
        create_markdown_artifact(markdown=markdown, key=key, description=description)


def _artifact_table(key: str, rows: list[dict], description: str) -> None:
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if rows and (FlowRunContext.get() or TaskRunContext.get()):
        create_table_artifact(table=rows, key=key, description=description)


@task(name="measure-cluster", retries=1, retry_delay_seconds=2, timeout_seconds=300, cache_policy=NO_CACHE)
def measure_cluster(ray_address: str | None = None, *, quick: bool = True, dtypes: list[str] | None = None,
                    probe_timeout_s: float = 60.0, save: bool = False, calibration_dir: str | None = None):
    """Probe every device of the Ray cluster (``scaling_planner.measure.cluster``); optionally append
    the results to the calibration history. Returns a ClusterMeasurement."""
    from .calibration.store import append, records_from_cluster
    from .measure.cluster import measure_cluster as _measure

    m = _measure(ray_address=ray_address, quick=quick, dtypes=dtypes, probe_timeout_s=probe_timeout_s)
    if save:
        for rec in records_from_cluster(m):
            append(rec, calibration_dir)
    _artifact_markdown("cluster-measurement", markdown.measurement_markdown(m), "what the cluster achieved")
    _artifact_table("cluster-devices", markdown.measurement_rows(m), "per-device probe results")
    return m


@task(name="load-calibration", cache_policy=NO_CACHE)
def load_calibration(profile: str, calibration_dir: str | None = None) -> list[CalibrationRecord]:
    """The calibration records of ``profile`` (training MFUs and probes, oldest first); an empty list when
    there are none. The plan chooses among them (:func:`~scaling_planner.calibration.choice.resolve`: the
    median of the recent ones that qualify), so one contended run does not steer it."""
    from .calibration.store import history

    records, _ = history(calibration_dir, profile=profile)
    return records


@task(name="fit-scaling-law", cache_policy=PLAN_CACHE_POLICY, cache_expiration=PLAN_CACHE)
def fit_scaling_law(runs_csv: str, *, bootstrap: int = 0, budget_flops: float = 1e22, seed: int = 42) -> dict:
    """Fit E + A/N^alpha + B/D^beta to the runs in ``runs_csv``; the ``planner fit`` JSON document
    (also a law file for ``recommend_plan(law_file=...)``)."""
    from .laws.fit import bootstrap as _bootstrap
    from .laws.fit import fit_law, fit_report
    from .laws.runs import load_runs

    runs = load_runs(runs_csv)
    fit = fit_law(runs)
    if bootstrap:
        fit = _bootstrap(runs, fit, bootstrap, seed=seed)
    return fit_report(fit, budget_flops)


@task(name="recommend-plan", cache_policy=PLAN_CACHE_POLICY, cache_expiration=PLAN_CACHE)
def recommend_plan(request: PlanRequest, *, law: str | None = None, law_file: str | None = None):
    """``scaling_planner.recommend`` for one :class:`~scaling_planner.planning.request.PlanRequest` (the
    fields of ``planner recommend``: ``PlanRequest(target_loss=2.0, gpu="a100-sxm-80gb")``). Calibration
    records in ``request.calibration`` (from ``load_calibration``) replace the profile's prior; the
    plan's ``calibration`` section names them. Cached on the inputs, records included, and on the content
    of the law file, profile and calibration history read (:data:`PLAN_CACHE_POLICY`)."""
    from .laws.presets import resolve_law
    from .planning.recommend import recommend

    plan = recommend(resolve_law(law, law_file), request)
    _artifact_markdown("plan", markdown.plan_markdown(plan), "the pre-flight plan")
    return plan


@task(name="simulate-training", cache_policy=PLAN_CACHE_POLICY, cache_expiration=PLAN_CACHE)
def simulate_training(params: float, tokens: float, gpu: str, gpus: int, *,
                      calibration: list[CalibrationRecord] | None = None, arch: dict | None = None,
                      seq_len: int | None = None, global_batch: int | None = None,
                      price_usd_per_device_hour: float | None = None, efficiency: str = "realised"):
    """The training simulator for a fixed job: (N, D) on ``gpus`` x ``gpu``; a SimulationResult. ``arch``
    (the fields of :class:`~scaling_planner.simulate.architecture.Architecture`) gives the exact shape,
    else one is derived from N. It trains in the profile's precision (bf16; fp32 on a CPU); a measured
    training MFU of that precision or a matmul rate of its probe dtype among ``calibration`` replaces
    the profile's prior; ``efficiency`` is "realised" (end to end, the default) or "tuned"."""
    from .calibration.choice import resolve
    from .hardware.profiles import load_profile
    from .simulate.architecture import Architecture, shape_for_params
    from .simulate.training.estimate import simulate_training as _simulate

    profile = load_profile(gpu)
    precision = profile.training_precision
    use = resolve(calibration, None, profile.name, precision) if calibration else None
    if arch is not None:
        shape = Architecture(**arch)
    else:
        shape = shape_for_params(params, **({"seq_len": seq_len} if seq_len else {}))
    measured = use.simulator_inputs() if use else {}
    if use and use.measured_source() is not None:
        measured["measured_source"] = use.measured_source()
    result = _simulate(shape, tokens, profile, gpus, params=params, global_batch=global_batch, precision=precision,
                       price_usd_per_device_hour=price_usd_per_device_hour, **measured, top=0, efficiency=efficiency)
    if use:
        result.training.notes.extend(use.plan_notes())
    _artifact_markdown("training-estimate", markdown.simulation_markdown(result), "the simulated training run")
    return result


@task(name="size-ray-job", cache_policy=NO_CACHE)
def size_ray_job(workers: int, *, ray_address: str | None = None, use_gpu: bool = True, cpus_per_worker: float = 1.0,
                 accelerator_type: str | None = None, devices_per_node: int | None = None,
                 placement_strategy: str | None = None) -> RayJobSize:
    """ScalingConfig arguments for ``workers`` ranks, checked against the live Ray cluster
    (connects to ``ray_address`` or starts/uses a local Ray)."""
    import ray

    from .measure.ray_session import ray_session
    from .preflight.sizing import size_ray_job as _size

    kwargs = {"use_gpu": use_gpu, "cpus_per_worker": cpus_per_worker, "accelerator_type": accelerator_type,
              "devices_per_node": devices_per_node, "placement_strategy": placement_strategy}
    with ray_session(ray_address):
        resources, nodes = ray.cluster_resources(), ray.nodes()
        _size(workers, cluster_resources=resources, nodes=nodes, **kwargs)  # InputError/InfeasibleError: never fits
        # what is free: Ray's view lags the release of tasks that just ended (the measurement's probes),
        # so a job that does not fit what is free now is re-checked for FREE_RESOURCES_WAIT_S first
        deadline = time.monotonic() + FREE_RESOURCES_WAIT_S
        while True:
            try:
                size = _size(workers, cluster_resources=resources, available_resources=ray.available_resources(),
                             nodes=nodes, **kwargs)
                break
            except InfeasibleError as exc:
                if time.monotonic() >= deadline:
                    raise InfeasibleError(f"{exc} (still so after {FREE_RESOURCES_WAIT_S:g} s)") from None
                time.sleep(0.5)
    _artifact_table("ray-job-size", [{"argument": k, "value": str(v)} for k, v in size.scaling_config_kwargs().items()],
                    "ray.train.ScalingConfig arguments for the training job")
    return size


@task(name="preflight-gate", cache_policy=NO_CACHE)
def preflight_gate(plan=None, limits: GateLimits | None = None, *, measured_mfu: float | None = None,
                   mfu_source: str | None = None, infeasible_reason: str | None = None,
                   devices_measured: int | None = None, devices_ok: int | None = None) -> GateDecision:
    """Pass, or raise GateRejectedError naming every limit the job breaks and by how much (a measurement
    with too few usable devices among them)."""
    from .preflight.gate import enforce, evaluate

    decision = evaluate(plan, limits, measured_mfu=measured_mfu, mfu_source=mfu_source,
                        infeasible_reason=infeasible_reason, devices_measured=devices_measured,
                        devices_ok=devices_ok)
    _artifact_markdown("preflight-gate", markdown.gate_markdown(decision), "the pre-flight decision")
    return enforce(decision)
