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
RECORD_WAIT_S = 60.0  # how long the flow waits for the workers' task-run reports to reach the server


@task(name="probe-device", retries=1, retry_delay_seconds=1, timeout_seconds=300, cache_policy=NO_CACHE)
def probe_device_task(kind: str, quick: bool = True, dtypes: list[str] | None = None) -> dict:
    """Runs on a Ray worker: the probes of this node's CPU or of the GPU Ray gave this task
    (:func:`scaling_planner.measure.cluster.probe_device`'s answer: the device and what the task saw)."""
    from scaling_planner.measure.cluster import probe_device

    return probe_device({"kind": kind, "quick": quick, "dtypes": dtypes})


def ray_task_runner(address: str | None = None, init_kwargs: dict | None = None):
    """prefect-ray's RayTaskRunner on ``address``, or with none on a fresh local Ray instance
    (``address="local"``: a bare ``ray.init()`` would attach to whatever cluster this machine runs, as
    ``planner measure`` also avoids, :mod:`scaling_planner.measure.ray_session`)."""
    from prefect_ray import RayTaskRunner

    kwargs = {**RAY_INIT_KWARGS, **(init_kwargs or {})}
    if address is None:
        kwargs.setdefault("address", "local")
    return RayTaskRunner(address=address, init_kwargs=kwargs)


@flow(name="measure-cluster-ray-tasks", log_prints=True)
def measure_with_ray_tasks(quick: bool = True, dtypes: list[str] | None = None, timeout_s: float = 300.0):
    """Probe every node as Prefect tasks on Ray; a ClusterMeasurement (partial when a task failed),
    assembled by the same :func:`~scaling_planner.measure.summary.assemble` as ``planner measure``.

    Every task run gets ``timeout_s`` (from submission) to finish; one that has not (its node died, its
    worker hangs) is set Crashed on the Prefect server with the reason, so no task run stays RUNNING.
    Nodes that died meanwhile are marked dead (``ray.nodes()`` read again at the end); a failure is its
    one-line reason, not a traceback; a measurement with no usable device raises MeasurementError (the
    flow run ends Failed)."""
    import time
    from datetime import UTC, datetime

    import ray
    from prefect_ray.context import remote_options
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from scaling_planner.base.errors import MeasurementError
    from scaling_planner.measure.cluster import DEFAULT_STRAGGLER_MARGIN, node_model, unreported_device
    from scaling_planner.measure.models import DeviceMeasurement
    from scaling_planner.measure.ray_session import first_line
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
    deadline = time.monotonic() + timeout_s
    results, unfinished = [], []
    for node, kind, index, fut in futures:
        fut.wait(timeout=max(0.0, deadline - time.monotonic()))
        state = fut.state
        if state.is_completed():
            out = fut.result()
            info = {k: v for k, v in out.items() if k != "device"}
            results.append((node.node_id, kind, DeviceMeasurement.model_validate(out["device"]), info))
            continue
        if state.is_final():
            error = f"task run {state.name}: {first_line(state.message or 'no message')}"
            status = "failed"
        else:
            error = f"no result within {timeout_s:g} s (task run {state.name}; set Crashed)"
            status = "timeout"
            unfinished.append(fut.task_run_id)
        results.append((node.node_id, kind, unreported_device(node, kind, index, status, error), {}))
    _crash(unfinished, f"no result within {timeout_s:g} s: its node died or its worker hung")
    _await_recorded([fut.task_run_id for *_, fut in futures], RECORD_WAIT_S)
    alive_now = {n["NodeID"] for n in ray.nodes() if n.get("Alive", n.get("alive", False))}
    died = {nid for nid, n in nodes.items() if n.alive and nid not in alive_now}
    gpu_slots = sum(int(n.resources.get("GPU", 0)) for nid, n in nodes.items() if n.alive and nid not in died)
    m = assemble(nodes, results, died, gpu_slots, ["probes ran as Prefect tasks on Ray (RayTaskRunner)"],
                 measured_at=measured_at, ray_address=None, elapsed_s=time.perf_counter() - t0,
                 straggler_margin=DEFAULT_STRAGGLER_MARGIN)
    for dtype, rate in m.totals.achieved_flops_per_s.items():
        logger.info(f"{dtype}: {rate / 1e9:.3g} GFLOP/s over {m.totals.devices_ok} device(s)")
    if m.totals.devices_ok == 0:
        raise MeasurementError(f"no device was measured ({len(m.missing)} did not report"
                               + (f": {m.missing[0]}" if m.missing else ": the cluster has nothing to measure") + ")")
    return m


def _await_recorded(task_run_ids: list, wait_s: float) -> None:
    """Wait (at most ``wait_s``) until the Prefect server shows every task run in a final state. A Ray
    worker reports its task run's states asynchronously; when the flow returns, the task runner shuts
    Ray down and kills the worker with what it had not sent, leaving the run RUNNING on the server for
    ever. The workers are alive while this waits, so their reports arrive."""
    import time

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + wait_s
    pending = list(task_run_ids)
    with get_client(sync_client=True) as client:
        while pending and time.monotonic() < deadline:
            still = []
            for task_run_id in pending:
                try:
                    run = client.read_task_run(task_run_id)
                except ObjectNotFound:
                    still.append(task_run_id)
                    continue
                if run.state is None or not run.state.is_final():
                    still.append(task_run_id)
            pending = still
            if pending:
                time.sleep(0.5)


def _crash(task_run_ids: list, reason: str) -> None:
    """Set the task runs that never finished Crashed on the Prefect server, with the reason."""
    if not task_run_ids:
        return
    from prefect import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        for task_run_id in task_run_ids:
            client.set_task_run_state(task_run_id, Crashed(message=reason), force=True)


def main(argv: list[str] | None = None) -> int:
    """The script: one JSON object on stdout (Ray's banners go to stderr); exit 0 for a complete
    measurement, 1 for a partial one, 4 (one line) when no device could be measured."""
    from scaling_planner.base.errors import PlannerError
    from scaling_planner.cli import OneLineParser
    from scaling_planner.cli.common import stdout_to_stderr

    ap = OneLineParser(prog="python flows/measure.py", description=__doc__.splitlines()[0])
    ap.add_argument("--ray-address", metavar="HOST:PORT",
                    help="an existing Ray cluster to measure (default: start a local Ray instance)")
    ap.add_argument("--full", action="store_true",
                    help="longer, steadier probes (default: the quick set, a few seconds per device)")
    ap.add_argument("--timeout-s", type=float, default=300.0, metavar="S",
                    help="seconds every probe task gets before it is set Crashed (default 300)")
    a = ap.parse_args(argv)
    one_line_errors()
    try:
        with stdout_to_stderr():
            m = measure_with_ray_tasks.with_options(task_runner=ray_task_runner(a.ray_address))(
                quick=not a.full, timeout_s=a.timeout_s)
    except PlannerError as exc:
        print(f"measure: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(m.model_dump_json(indent=2))
    return 0 if not m.partial else 1


if __name__ == "__main__":
    sys.exit(main())
