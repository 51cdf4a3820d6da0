"""Measure a Ray cluster from Prefect with ``prefect_ray.RayTaskRunner``: one Prefect task per node.

The pre-flight's ``measure_cluster`` task drives Ray itself (placement groups, one deadline, dead-node
checks). This flow is the other way to run the same probes: every probe is a *Prefect* task that
Prefect submits to Ray, so each one is a task run in the Prefect UI, with its own state, retries and
logs. It is slower to start (each Ray worker imports Prefect and talks to its API: tens of seconds
cold), so it suits scheduled cluster health checks more than a pre-flight on a laptop.

Each alive node with CPUs gets one task pinned to it (``NodeAffinitySchedulingStrategy``) that runs
``scaling_planner.measure.cluster.probe_device`` on the node's CPU; on GPU nodes one task per GPU slot
(``num_gpus=1``). Results are assembled into the same ``ClusterMeasurement`` that ``planner measure``
prints. ``python flows/measure.py`` runs it on a local Ray instance.
"""

from __future__ import annotations

import sys

from .common import one_line_errors, quiet_environment

quiet_environment()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

RAY_INIT_KWARGS = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}


@task(name="probe-device", retries=1, retry_delay_seconds=1, timeout_seconds=300, cache_policy=NO_CACHE)
def probe_device_task(kind: str, quick: bool = True, dtypes: list[str] | None = None) -> dict:
    """Runs on a Ray worker: the probes of this node's CPU or of the GPU Ray gave this task
    (:func:`scaling_planner.measure.cluster.probe_device`'s answer: the device and what the task saw)."""
    from scaling_planner.measure.cluster import probe_device

    return probe_device({"kind": kind, "quick": quick, "dtypes": dtypes})


def ray_task_runner(address: str | None = None, init_kwargs: dict | None = None):
    from prefect_ray import RayTaskRunner

    return RayTaskRunner(address=address, init_kwargs={**RAY_INIT_KWARGS, **(init_kwargs or {})})


@flow(name="measure-cluster-ray-tasks", log_prints=True)
def measure_with_ray_tasks(quick: bool = True, dtypes: list[str] | None = None):
    """Probe every node as Prefect tasks on Ray; a ClusterMeasurement (partial when a task failed),
    assembled by the same :func:`~scaling_planner.measure.summary.assemble` as ``planner measure``."""
    import time
    from datetime import UTC, datetime

    import ray
    from prefect_ray.context import remote_options
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from scaling_planner.measure.cluster import DEFAULT_STRAGGLER_MARGIN, node_model, unreported_device
    from scaling_planner.measure.models import DeviceMeasurement
    from scaling_planner.measure.summary import assemble

    t0 = time.perf_counter()
    measured_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    logger = get_run_logger()
    nodes = {n["NodeID"]: node_model(n) for n in ray.nodes()}
    futures = []
    for node in nodes.values():
        if not node.alive:
            continue
        affinity = NodeAffinitySchedulingStrategy(node_id=node.node_id, soft=False)
        if node.resources.get("GPU", 0) >= 1:
            for index in range(int(node.resources["GPU"])):
                with remote_options(num_gpus=1, num_cpus=0, scheduling_strategy=affinity):
                    futures.append((node, "gpu", index, probe_device_task.submit("gpu", quick, dtypes)))
        elif node.resources.get("CPU", 0) >= 1:
            with remote_options(num_cpus=1, scheduling_strategy=affinity):
                futures.append((node, "cpu", 0, probe_device_task.submit("cpu", quick, dtypes)))
    results = []
    for node, kind, index, fut in futures:
        fut.wait()
        state = fut.state
        if state.is_completed():
            out = fut.result()
            info = {k: v for k, v in out.items() if k != "device"}
            results.append((node.node_id, kind, DeviceMeasurement.model_validate(out["device"]), info))
        else:
            error = f"task run {state.name}: {state.message}"
            results.append((node.node_id, kind, unreported_device(node, kind, index, "failed", error), {}))
    gpu_slots = sum(int(n.resources.get("GPU", 0)) for n in nodes.values() if n.alive)
    m = assemble(nodes, results, set(), gpu_slots, ["probes ran as Prefect tasks on Ray (RayTaskRunner)"],
                 measured_at=measured_at, ray_address=None, elapsed_s=time.perf_counter() - t0,
                 straggler_margin=DEFAULT_STRAGGLER_MARGIN)
    for dtype, rate in m.totals.achieved_flops_per_s.items():
        logger.info(f"{dtype}: {rate / 1e9:.3g} GFLOP/s over {m.totals.devices_ok} device(s)")
    return m


def main(argv: list[str] | None = None) -> int:
    from scaling_planner.cli import OneLineParser

    ap = OneLineParser(prog="python flows/measure.py", description=__doc__.splitlines()[0])
    ap.add_argument("--ray-address", metavar="HOST:PORT",
                    help="an existing Ray cluster to measure (default: start a local Ray instance)")
    ap.add_argument("--full", action="store_true",
                    help="longer, steadier probes (default: the quick set, a few seconds per device)")
    a = ap.parse_args(argv)
    one_line_errors()
    m = measure_with_ray_tasks.with_options(task_runner=ray_task_runner(a.ray_address))(quick=not a.full)
    print(m.model_dump_json(indent=2))
    return 0 if not m.partial else 1


if __name__ == "__main__":
    sys.exit(main())
