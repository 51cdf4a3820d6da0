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

import os
import sys

try:  # imported as flows.<name>, or run as `python flows/<name>.py` (the script's folder on sys.path)
    from flows.common import one_line_errors, quiet_environment
except ImportError:  # pragma: no cover
    from common import one_line_errors, quiet_environment  # type: ignore[no-redef]

quiet_environment()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

RAY_INIT_KWARGS = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}


@task(name="probe-device", retries=1, retry_delay_seconds=1, timeout_seconds=300, cache_policy=NO_CACHE)
def probe_device_task(kind: str, quick: bool = True, dtypes: list[str] | None = None) -> dict:
    """Runs on a Ray worker: the probes of this node's CPU or of the GPU Ray gave this task."""
    from scaling_planner.measure.cluster import probe_device

    return probe_device({"kind": kind, "quick": quick, "dtypes": dtypes})["device"]


def ray_task_runner(address: str | None = None, init_kwargs: dict | None = None):
    from prefect_ray import RayTaskRunner

    return RayTaskRunner(address=address, init_kwargs={**RAY_INIT_KWARGS, **(init_kwargs or {})})


@flow(name="measure-cluster-ray-tasks", log_prints=True)
def measure_with_ray_tasks(quick: bool = True, dtypes: list[str] | None = None):
    """Probe every node as Prefect tasks on Ray; a ClusterMeasurement (partial when a task failed)."""
    import time
    from datetime import UTC, datetime

    import ray
    from prefect_ray.context import remote_options
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from scaling_planner.measure.cluster import cluster_totals, find_stragglers
    from scaling_planner.measurement import ClusterMeasurement, DeviceMeasurement, NodeMeasurement

    t0 = time.perf_counter()
    logger = get_run_logger()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    futures = []
    for n in nodes:
        res = n.get("Resources", {})
        affinity = NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False)
        if res.get("GPU", 0) >= 1:
            for _ in range(int(res["GPU"])):
                with remote_options(num_gpus=1, num_cpus=0, scheduling_strategy=affinity):
                    futures.append((n, probe_device_task.submit("gpu", quick, dtypes)))
        elif res.get("CPU", 0) >= 1:
            with remote_options(num_cpus=1, scheduling_strategy=affinity):
                futures.append((n, probe_device_task.submit("cpu", quick, dtypes)))
    by_node = {n["NodeID"]: NodeMeasurement(node_id=n["NodeID"], address=n.get("NodeManagerAddress"),
                                            hostname=n.get("NodeManagerHostname"), alive=True,
                                            resources=dict(n.get("Resources", {}))) for n in nodes}
    missing = []
    for n, fut in futures:
        fut.wait()
        state = fut.state
        if state.is_completed():
            by_node[n["NodeID"]].devices.append(DeviceMeasurement(**fut.result()))
        else:
            missing.append(f"node {n['NodeID'][:8]}: {state.message}")
    devices = [d for node in by_node.values() for d in node.devices]
    missing += [f"{d.node_id[:8]}/{d.device}: {d.status} ({d.error})" for d in devices if d.status != "ok"]
    gpu_slots = sum(int(n.get("Resources", {}).get("GPU", 0)) for n in nodes)
    m = ClusterMeasurement(
        measured_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), ray_address=None,
        elapsed_s=time.perf_counter() - t0, partial=bool(missing), nodes=list(by_node.values()),
        totals=cluster_totals(list(by_node.values()), gpu_slots), stragglers=find_stragglers(devices, 0.10),
        straggler_margin=0.10, missing=missing, load_average=list(os.getloadavg()),
        notes=["probes ran as Prefect tasks on Ray (RayTaskRunner)"])
    for dtype, rate in m.totals.achieved_flops_per_s.items():
        logger.info(f"{dtype}: {rate / 1e9:.3g} GFLOP/s over {m.totals.devices_ok} device(s)")
    return m


def main() -> int:
    one_line_errors()
    m = measure_with_ray_tasks.with_options(task_runner=ray_task_runner())()
    print(m.model_dump_json(indent=2))
    return 0 if not m.partial else 1


if __name__ == "__main__":
    sys.exit(main())
