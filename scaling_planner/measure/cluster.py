"""Ray: run the probes on every GPU of a cluster (and on the CPU of every node without a GPU).

:func:`measure_cluster` discovers the nodes with ``ray.nodes()`` and submits one Ray task per unit of
work, each with ``max_retries=0`` so that a failure is reported, not hidden by a retry:

* a node with ``GPU`` slots gets one task per slot. Each task runs in its own single-bundle placement
  group ``[{"GPU": 1}]`` pinned to the node by the node's ``ray.io/node-id`` label (Ray 2.60
  ``bundle_label_selector``). A placement group reserves a distinct GPU instance, so N tasks on an
  N-GPU node see N distinct ``ray.get_gpu_ids()`` however fast they finish; plain tasks of one shape
  would let Ray reuse a finished task's lease (and its GPU) for the next one.
* a node with CPUs and no GPU slot gets one task pinned with
  ``NodeAffinitySchedulingStrategy(soft=False)`` that takes all the node's CPUs (Ray then sets
  ``OMP_NUM_THREADS`` to that number) and runs the CPU probes against the ``cpu`` profile.
* a node with neither (a head started with ``num_cpus=0``) is listed with nothing to measure.

Each task (:func:`probe_device`) reads NVML on its node (:func:`scaling_planner.measure.nvml.read_report`)
for the name and hardware profile of its GPU, then runs :func:`scaling_planner.measure.probes.run_probes`
on the CUDA device it was given. A GPU slot without a CUDA device behind it (fake ``num_gpus`` on a CPU
machine, a broken driver) is reported as it is: status ``failed`` with the reason, and with the node,
host, slot and NVML identity the task did see.

The driver waits with ``ray.wait`` against one deadline (``probe_timeout_s`` after submission), checks
``ray.nodes()`` for nodes that died, and keeps every result that arrived. A task still running at the
deadline is cancelled (``ray.cancel(force=True)``) and its device reported ``timeout``; a task that
failed because its node or worker died is ``failed`` with Ray's reason. Either way the measurement is
``partial`` and ``missing`` says what did not report.

Stragglers (:func:`find_stragglers`): a device whose best matmul of a dtype is below the median of its
peer group (same hardware profile, same dtype) by more than ``straggler_margin``. Ray, torch and NVML
are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..base.errors import InputError, MeasurementError
from .models import (
    ClusterMeasurement,
    DeviceMeasurement,
    NodeMeasurement,
)
from .ray_session import CONNECT_TIMEOUT_S
from .ray_session import connect as _connect
from .ray_session import first_line as _first_line
from .summary import assemble
from .summary import short_id as _short

DEFAULT_PROBE_TIMEOUT_S = 60.0
DEFAULT_STRAGGLER_MARGIN = 0.10
POLL_S = 0.5
"""How often the driver checks ``ray.nodes()`` for dead nodes while it waits for results."""
NODE_ID_LABEL = "ray.io/node-id"

Progress = Callable[[int, int, str], None]
ProbeFn = Callable[..., list]


# ---- inside the Ray task ------------------------------------------------------------------------------

def _local_cuda_index(slot: int, visible: str | None) -> int:
    """The torch index of physical GPU ``slot``: its position in CUDA_VISIBLE_DEVICES (Ray sets that
    to the task's slots), or ``slot`` itself when the variable is unset."""
    if visible is None:
        return slot
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    return ids.index(str(slot)) if str(slot) in ids else 0


def _probe_status(probes: list) -> tuple[str, str | None]:
    if any(p.kind == "matmul" and p.error is None for p in probes):
        return "ok", None
    errors = sorted({p.error for p in probes if p.error})
    return "failed", "no probe ran: " + ("; ".join(errors) if errors else "the probe set was empty")


def probe_device(request: dict, *, gpu_ids: Sequence[int] | None = None) -> dict:
    """Measure one device of the node this runs on; the body of every probe task.

    ``request``: ``{"kind": "gpu"|"cpu", "dtypes", "quick", "probe_fn"}``. ``gpu_ids`` defaults to
    ``ray.get_gpu_ids()`` inside a Ray task. Returns ``{"device": DeviceMeasurement as a dict,
    "gpu_ids", "cuda_visible_devices", "nvml_gpus", "nvml_reason"}``. Never raises for the device's
    state: a probe that cannot run is a ``failed`` device with the reason.
    """
    from . import probes
    from .nvml import read_report

    started = time.perf_counter()
    run = request.get("probe_fn") or probes.run_probes
    node_id, hostname = _where()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    report = read_report()
    info = {"nvml_gpus": len(report.devices) if report.available else 0,
            "nvml_reason": None if report.available else report.reason, "cuda_visible_devices": visible}
    fields: dict[str, Any] = {"node_id": node_id, "hostname": hostname}
    if request["kind"] == "cpu":
        fields.update(device="cpu", name=probes.cpu_name(), profile="cpu")
        info["gpu_ids"] = []
        try:
            results = run("cpu", dtypes=request.get("dtypes"), quick=request.get("quick", False), profile="cpu")
            status, error = _probe_status(results)
        except Exception as exc:  # a probe bug must not lose the node's identity
            results, status, error = [], "failed", f"{type(exc).__name__}: {_first_line(exc)}"
        fields.update(status=status, error=error, probes=[r.model_dump() for r in results])
    else:
        ids = list(gpu_ids) if gpu_ids is not None else _ray_gpu_ids()
        info["gpu_ids"] = ids
        slot = int(ids[0]) if ids else None
        nv = next((d for d in report.devices if d.index == slot), None) if report.available else None
        fields.update(device=f"cuda:{slot}" if slot is not None else "cuda:?",
                      name=nv.name if nv else None, profile=nv.profile if nv else None,
                      nvml=nv.model_dump() if nv else None)
        fields.update(_run_gpu(run, request, slot, visible, report, fields))
    fields["elapsed_s"] = time.perf_counter() - started
    return {"device": fields, **info}


def _run_gpu(run: ProbeFn, request: dict, slot: int | None, visible: str | None, report, fields: dict) -> dict:
    nvml_says = (f"NVML: {report.reason}" if not report.available
                 else f"NVML sees {len(report.devices)} GPU(s)")
    if slot is None:
        return {"status": "failed",
                "error": f"the task was given no GPU slot (ray.get_gpu_ids() is empty; {nvml_says})"}
    try:
        import torch
    except ImportError as exc:
        return {"status": "failed", "error": f"torch is not importable on this node ({exc})"}
    if not torch.cuda.is_available():
        return {"status": "failed",
                "error": (f"Ray GPU slot {slot} has no CUDA device visible (torch.cuda.is_available() is False; "
                          f"CUDA_VISIBLE_DEVICES={visible!r}; {nvml_says})")}
    local = _local_cuda_index(slot, visible)
    out: dict[str, Any] = {}
    if fields.get("name") is None:
        out["name"] = torch.cuda.get_device_name(local)
    profile = fields.get("profile")
    if profile is None:
        from ..hardware.profiles import profile_for_nvml_name

        match = profile_for_nvml_name(out.get("name") or fields.get("name") or "")
        profile = out["profile"] = match.name if match else None
    try:
        results = run(f"cuda:{local}", dtypes=request.get("dtypes"), quick=request.get("quick", False),
                      profile=profile)
        status, error = _probe_status(results)
    except Exception as exc:
        results, status, error = [], "failed", f"{type(exc).__name__}: {_first_line(exc)}"
    out.update(status=status, error=error, probes=[r.model_dump() for r in results])
    return out


def _where() -> tuple[str, str]:
    node_id = "local"
    try:
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return node_id, socket.gethostname()


def _ray_gpu_ids() -> list[int]:
    try:
        import ray

        return [int(i) for i in ray.get_gpu_ids()]
    except (ImportError, ValueError, TypeError):
        return []


# ---- planning the work ----------------------------------------------------------------------------------

@dataclass
class _Work:
    node_id: str
    kind: str  # "gpu" | "cpu"
    index: int  # position among the node's GPU slots (0 for the CPU)
    label: str
    ref: Any = None
    pg: Any = None
    result: DeviceMeasurement | None = None
    info: dict = field(default_factory=dict)


def node_model(node: dict) -> NodeMeasurement:
    """A ``ray.nodes()`` entry as a NodeMeasurement (no devices yet; a dead node says why)."""
    resources = {k: float(v) for k, v in (node.get("Resources") or {}).items()
                 if isinstance(v, int | float) and math.isfinite(v)}
    alive = bool(node.get("Alive", node.get("alive", False)))
    return NodeMeasurement(node_id=node["NodeID"], address=node.get("NodeManagerAddress"),
                           hostname=node.get("NodeManagerHostname"), alive=alive, resources=resources,
                           error=None if alive else f"dead before the measurement: {_death_reason(node)}")


def _death_reason(node: dict) -> str:
    return _first_line(node.get("DeathReasonMessage") or node.get("DeathReason") or "no reason given by Ray")


def _plan(nodes: list[NodeMeasurement]) -> tuple[list[_Work], list[str]]:
    work, notes = [], []
    for node in nodes:
        if not node.alive:
            continue
        gpus = int(node.resources.get("GPU", 0.0))
        cpus = node.resources.get("CPU", 0.0)
        if gpus > 0:
            work += [_Work(node.node_id, "gpu", i, f"node {_short(node.node_id)} GPU slot {i + 1}/{gpus}")
                     for i in range(gpus)]
        elif cpus > 0:
            work.append(_Work(node.node_id, "cpu", 0, f"node {_short(node.node_id)} cpu"))
        else:
            notes.append(f"node {_short(node.node_id)} has no CPU or GPU resources in Ray: nothing to measure")
    return work, notes


def _submit(ray: Any, work: list[_Work], nodes: dict[str, NodeMeasurement], request: dict) -> None:
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

    task = ray.remote(max_retries=0)(probe_device)
    for w in work:
        req = {**request, "kind": w.kind}
        if w.kind == "gpu":
            w.pg = placement_group([{"GPU": 1}], strategy="STRICT_PACK", name=f"scaling-planner-probe-{w.label}",
                                   bundle_label_selector=[{NODE_ID_LABEL: w.node_id}])
            strategy = PlacementGroupSchedulingStrategy(w.pg, placement_group_bundle_index=0)
            w.ref = task.options(num_gpus=1, num_cpus=0, scheduling_strategy=strategy).remote(req)
        else:
            cpus = nodes[w.node_id].resources.get("CPU", 1.0)
            cpus = float(math.floor(cpus)) if cpus >= 1 else cpus  # Ray wants whole CPUs above one
            strategy = NodeAffinitySchedulingStrategy(node_id=w.node_id, soft=False)
            w.ref = task.options(num_cpus=cpus, scheduling_strategy=strategy).remote(req)


# ---- collecting -----------------------------------------------------------------------------------------

def unreported_device(node: NodeMeasurement, kind: str, index: int, status: str, error: str) -> DeviceMeasurement:
    """The record of a device whose probe task did not report (``status`` failed/timeout, ``error`` why):
    the node's identity and the slot, no probes."""
    return DeviceMeasurement(node_id=node.node_id, hostname=node.hostname, status=status, error=error,
                             device="cpu" if kind == "cpu" else f"cuda:{index}",
                             profile="cpu" if kind == "cpu" else None)


def _placeholder(w: _Work, node: NodeMeasurement, status: str, error: str) -> DeviceMeasurement:
    return unreported_device(node, w.kind, w.index, status, error)


def _ray_reason(exc: BaseException) -> str:
    """``Type: first sentence`` of a Ray error (they run to several sentences of advice)."""
    text = _first_line(exc, limit=1000)
    cut = text.find(". ", 20)
    return f"{type(exc).__name__}: {text[: cut + 1] if cut > 0 else _first_line(text)}"


def _alive_ids(ray: Any) -> set[str] | None:
    try:
        return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    except Exception:  # GCS busy or gone: the deadline still bounds the wait
        return None


def _cancel(ray: Any, ref: Any) -> None:
    with contextlib.suppress(Exception):  # already finished, or its node is gone
        ray.cancel(ref, force=True)


def _pg_ready(w: _Work) -> bool:
    try:
        return bool(w.pg.wait(timeout_seconds=0))
    except Exception:
        return False


def _collect(ray: Any, work: list[_Work], nodes: dict[str, NodeMeasurement], timeout_s: float,
             progress: Progress | None, report=None) -> set[str]:
    """Wait for every task until the deadline; fill ``w.result``. Returns the ids of nodes that died."""
    pending = {w.ref: w for w in work}
    total, done = len(work), 0
    died: set[str] = set()
    deadline = time.monotonic() + timeout_s

    def finish(w: _Work, result: DeviceMeasurement) -> None:
        nonlocal done
        w.result = result
        pending.pop(w.ref, None)
        done += 1
        if report is not None:
            report("device", (w.node_id, w.kind, result, w.info))
        if progress is not None:
            progress(done, total, f"{w.label}: {result.status}")

    if progress is not None:
        progress(0, total, f"{total} probe task(s) submitted")
    next_check = time.monotonic() + POLL_S
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=min(remaining, POLL_S))
        if ready:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
        for ref in ready:
            w = pending[ref]
            try:
                out = ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
                w.info = {k: v for k, v in out.items() if k != "device"}
                finish(w, DeviceMeasurement.model_validate(out["device"]))
            except Exception as exc:  # NodeDiedError, WorkerCrashedError, TaskUnschedulableError, RayTaskError...
                if isinstance(exc, ray.exceptions.NodeDiedError):
                    died.add(w.node_id)  # Ray says so before its GCS health check marks the node dead
                finish(w, _placeholder(w, nodes[w.node_id], "failed", _ray_reason(exc)))
        if time.monotonic() >= next_check and pending:
            next_check = time.monotonic() + POLL_S
            alive = _alive_ids(ray)
            for w in [w for w in pending.values() if alive is not None and w.node_id not in alive]:
                died.add(w.node_id)
                _cancel(ray, w.ref)
                finish(w, _placeholder(w, nodes[w.node_id], "failed",
                                       f"node {_short(w.node_id)} died during the measurement"))
    for w in list(pending.values()):
        _cancel(ray, w.ref)
        if w.kind == "gpu" and not _pg_ready(w):
            why = (f"no result within {timeout_s:g} s: the GPU slot could not be reserved "
                   "(placement group pending: is the GPU in use?); cancelled")
        else:
            why = f"no result within {timeout_s:g} s; the task was cancelled"
        finish(w, _placeholder(w, nodes[w.node_id], "timeout", why))
    return died


def _name_unreported_slots(work: list[_Work]) -> None:
    """A GPU task that never reported does not say which slot it held: give it one of the node's
    slots no task reported (Ray numbers a node's GPUs 0..n-1 unless CUDA_VISIBLE_DEVICES was set)."""
    by_node: dict[str, list[_Work]] = {}
    for w in work:
        if w.kind == "gpu":
            by_node.setdefault(w.node_id, []).append(w)
    for ws in by_node.values():
        seen = {w.result.device for w in ws if w.info.get("gpu_ids")}
        free = iter([f"cuda:{i}" for i in range(len(ws)) if f"cuda:{i}" not in seen])
        for w in ws:
            if not w.info.get("gpu_ids"):
                w.result = w.result.model_copy(update={"device": next(free, w.result.device)})


# ---- the entry point ------------------------------------------------------------------------------------

def _check_args(dtypes, probe_timeout_s, straggler_margin) -> list[str] | None:
    from .probes import MATMUL_DTYPES

    if dtypes is not None:
        dtypes = [dtypes] if isinstance(dtypes, str) else list(dtypes)
        bad = [d for d in dtypes if str(d).strip().lower() not in MATMUL_DTYPES]
        if bad or not dtypes:
            raise InputError("dtypes", f"must be a non-empty list of {', '.join(MATMUL_DTYPES)}, got {bad or dtypes!r}")
        dtypes = [str(d).strip().lower() for d in dtypes]
    for name, value in (("probe_timeout_s", probe_timeout_s), ("straggler_margin", straggler_margin)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(name, f"must be a finite number, got {value!r}")
    if probe_timeout_s <= 0:
        raise InputError("probe_timeout_s", f"must be > 0 seconds, got {probe_timeout_s!r}")
    if not 0 <= straggler_margin < 1:
        raise InputError("straggler_margin", f"must be in [0, 1) (a fraction of the median), got {straggler_margin!r}")
    return dtypes


def measure_cluster(*, ray_address: str | None = None, dtypes: Sequence[str] | None = None, quick: bool = False,
                    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
                    straggler_margin: float = DEFAULT_STRAGGLER_MARGIN, progress: Progress | None = None,
                    init_kwargs: dict | None = None, probe_fn: ProbeFn | None = None,
                    connect_timeout_s: float = CONNECT_TIMEOUT_S, report=None) -> ClusterMeasurement:
    """Probe every GPU (or GPU-less node's CPU) of the Ray cluster; see the module docstring.

    Uses this process's Ray session when there is one; else connects to ``ray_address`` (bounded by
    ``connect_timeout_s``) or starts a local instance (``init_kwargs`` go to ``ray.init``), and shuts
    down only what it started. ``progress(done, total, label)`` is called from this thread as devices
    report. ``probe_fn`` replaces :func:`~scaling_planner.measure.probes.run_probes` inside the tasks
    (same signature; it must pickle with cloudpickle, e.g. a closure). ``report(kind, payload)`` is told
    the nodes (``"nodes"``: the NodeMeasurements and the start time) and each device as it reports
    (``"device"``: node id, kind, DeviceMeasurement, info), for a caller that must keep a partial result
    when this process is lost (:mod:`.isolated`).

    Raises MeasurementError when Ray cannot be started or reached, or reports no alive node.
    """
    dtypes = _check_args(dtypes, probe_timeout_s, straggler_margin)
    t0 = time.perf_counter()
    measured_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    started, connect_s = _connect(ray_address, init_kwargs, connect_timeout_s)
    import ray

    work: list[_Work] = []
    notes: list[str] = []
    try:
        if started:
            notes.append(f"{'connected to' if ray_address else 'started'} Ray in {connect_s:.1f} s")
        elif ray_address:
            notes.append(f"used this process's Ray session; ray_address {ray_address!r} was not used")
        nodes = {n["NodeID"]: node_model(n) for n in ray.nodes()}
        if report is not None:
            report("nodes", (nodes, measured_at))
        if not any(n.alive for n in nodes.values()):
            raise MeasurementError("Ray reports no alive node")
        for n in nodes.values():
            if not n.alive:
                notes.append(f"node {_short(n.node_id)} was already dead ({n.error.split(': ', 1)[-1]}); not measured")
        gpu_slots = sum(int(n.resources.get("GPU", 0.0)) for n in nodes.values() if n.alive)
        work, plan_notes = _plan(list(nodes.values()))
        notes += plan_notes
        _submit(ray, work, nodes, {"dtypes": dtypes, "quick": quick, "probe_fn": probe_fn})
        died = _collect(ray, work, nodes, probe_timeout_s, progress, report)
        alive_now = _alive_ids(ray)
    except (ray.exceptions.RayError, ConnectionError) as exc:  # the cluster itself went away
        raise MeasurementError(f"Ray failed during the measurement: {_ray_reason(exc)}") from None
    finally:
        _release(ray, work)
        if started:
            ray.shutdown()
    if alive_now is not None:
        died |= {i for i, n in nodes.items() if n.alive and i not in alive_now}
    _name_unreported_slots(work)
    return assemble(nodes, [(w.node_id, w.kind, w.result, w.info) for w in work], died, gpu_slots, notes,
                    measured_at=measured_at, ray_address=ray_address, elapsed_s=time.perf_counter() - t0,
                    straggler_margin=straggler_margin)


def _release(ray: Any, work: list[_Work]) -> None:
    from ray.util.placement_group import remove_placement_group

    for w in work:
        if w.pg is not None:
            with contextlib.suppress(Exception):  # its node is gone, or Ray is shutting down
                remove_placement_group(w.pg)
