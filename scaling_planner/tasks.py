"""Prefect tasks: thin wrappers over the scaling-planner API for pre-flight flows.

* ``measure_cluster``: probes every device of the Ray cluster (retried once: a busy node can time out);
* ``load_calibration``: the latest measured MFU / matmul rate for a profile from the calibration history;
* ``fit_scaling_law``: fit (and bootstrap) a law to a runs CSV;
* ``recommend_plan``: a :class:`~scaling_planner.planning.request.PlanRequest` -> plan (cached on its
  inputs: the same request with the same calibration records plans once);
* ``simulate_training``: a fixed (N, D, GPU, G) -> training estimate (cached on its inputs);
* ``size_ray_job``: the ``ray.train.ScalingConfig`` arguments, checked against the Ray cluster;
* ``preflight_gate``: raises :class:`~scaling_planner.base.errors.GateRejectedError` when the job breaks a
  limit, so the flow run ends Failed with the reason in its message.

Each task publishes what it found as a Prefect artifact (markdown or table) when it runs inside a flow.
prefect is imported here at module level (this module is an integration); ray, torch and pynvml only
inside the tasks that need them.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE

from .calibration.store import CalibrationRecord
from .planning.request import PlanRequest
from .preflight.gate import GateDecision, GateLimits
from .preflight.sizing import RayJobSize
from .render import markdown

PLAN_CACHE = timedelta(hours=1)


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
    """The latest training (MFU) and probe records for ``profile``; an empty list when there are none."""
    from .calibration.store import latest

    found = [latest(profile, calibration_dir, source=s) for s in ("training", "probe")]
    return [r for r in found if r is not None]


@task(name="fit-scaling-law", cache_policy=INPUTS, cache_expiration=PLAN_CACHE)
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


@task(name="recommend-plan", cache_policy=INPUTS, cache_expiration=PLAN_CACHE)
def recommend_plan(request: PlanRequest, *, law: str | None = None, law_file: str | None = None):
    """``scaling_planner.recommend`` for one :class:`~scaling_planner.planning.request.PlanRequest` (the
    fields of ``planner recommend``: ``PlanRequest(target_loss=2.0, gpu="a100-sxm-80gb")``). Calibration
    records in ``request.calibration`` (from ``load_calibration``) replace the profile's prior; the
    plan's ``calibration`` section names them. Cached on the inputs, records included."""
    from .laws.presets import resolve_law
    from .planning.recommend import recommend

    plan = recommend(resolve_law(law, law_file), request)
    _artifact_markdown("plan", markdown.plan_markdown(plan), "the pre-flight plan")
    return plan


@task(name="simulate-training", cache_policy=INPUTS, cache_expiration=PLAN_CACHE)
def simulate_training(params: float, tokens: float, gpu: str, gpus: int, *,
                      calibration: list[CalibrationRecord] | None = None, arch: dict | None = None,
                      seq_len: int | None = None, global_batch: int | None = None,
                      price_usd_per_device_hour: float | None = None, efficiency: str = "realised"):
    """The training simulator for a fixed job: (N, D) on ``gpus`` x ``gpu``; a SimulationResult. ``arch``
    (the fields of :class:`~scaling_planner.simulate.architecture.Architecture`) gives the exact shape,
    else one is derived from N. A measured bf16 training MFU or matmul rate among ``calibration``
    replaces the profile's prior; ``efficiency`` is "realised" (end to end, the default) or "tuned"."""
    from .calibration.choice import resolve
    from .hardware.profiles import load_profile
    from .simulate.architecture import Architecture, shape_for_params
    from .simulate.training.estimate import simulate_training as _simulate

    profile = load_profile(gpu)
    precision = "bf16"
    use = resolve(calibration, None, profile.name, precision) if calibration else None
    if arch is not None:
        shape = Architecture(**arch)
    else:
        shape = shape_for_params(params, **({"seq_len": seq_len} if seq_len else {}))
    measured = use.simulator_inputs() if use else {}
    if use and use.training_record is not None:
        measured["measured_source"] = f"calibration record {use.training_record}"
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

    with ray_session(ray_address):
        resources, nodes = ray.cluster_resources(), ray.nodes()
    size = _size(workers, cluster_resources=resources, nodes=nodes, use_gpu=use_gpu, cpus_per_worker=cpus_per_worker,
                 accelerator_type=accelerator_type, devices_per_node=devices_per_node,
                 placement_strategy=placement_strategy)
    _artifact_table("ray-job-size", [{"argument": k, "value": str(v)} for k, v in size.scaling_config_kwargs().items()],
                    "ray.train.ScalingConfig arguments for the training job")
    return size


@task(name="preflight-gate", cache_policy=NO_CACHE)
def preflight_gate(plan=None, limits: GateLimits | None = None, *, measured_mfu: float | None = None,
                   mfu_source: str | None = None, infeasible_reason: str | None = None) -> GateDecision:
    """Pass, or raise GateRejectedError naming every limit the job breaks and by how much."""
    from .preflight.gate import enforce, evaluate

    decision = evaluate(plan, limits, measured_mfu=measured_mfu, mfu_source=mfu_source,
                        infeasible_reason=infeasible_reason)
    _artifact_markdown("preflight-gate", markdown.gate_markdown(decision), "the pre-flight decision")
    return enforce(decision)
