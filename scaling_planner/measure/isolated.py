"""Run :func:`~scaling_planner.measure.cluster.measure_cluster` in a child process, for ``planner measure``.

When the Ray head (its GCS) goes away, Ray ends the driver process itself (after
``gcs_rpc_server_reconnect_timeout_s``, 60 s by default) with exit code 1 and nothing printed by the
program: a CLI that measured in its own process could not say what happened or keep what it had. So
the CLI measures in a child process and keeps its own process free of Ray:

* the child reports on a pipe of its own, one JSON line per event: the nodes it found, each device as
  it reports, the progress, and the finished measurement (or its typed error);
* the child's stdout and stderr go to a log file (Ray prints banners and C++ logs there), so the
  CLI's stdout carries only its JSON and its stderr one line;
* the child is given a bounded GCS reconnect time (:data:`GCS_RECONNECT_S`, at most the probe timeout)
  and the whole run a deadline; a child that dies or overruns is killed, and the parent assembles the
  partial measurement from what was reported, with the reason.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..base.errors import MeasurementError, PlannerError
from .ray_session import CONNECT_TIMEOUT_S

GCS_RECONNECT_S = 60.0  # Ray's default; the child gets min(this, the probe timeout)
STARTUP_MARGIN_S = 90.0  # the child's imports and a local Ray start on a busy machine
CHILD = "from scaling_planner.measure.isolated import child_main; child_main()"


def measure_isolated(*, ray_address: str | None, dtypes, quick: bool, probe_timeout_s: float,
                     straggler_margin: float, progress=None, connect_timeout_s: float = CONNECT_TIMEOUT_S):
    """The ClusterMeasurement of a child process's :func:`measure_cluster` (module docstring). Raises
    the child's PlannerError as it was, or MeasurementError(partial) when the child died or overran:
    ``exc.partial`` holds the measurement assembled from what was reported before."""
    kwargs = {"ray_address": ray_address, "dtypes": dtypes, "quick": quick, "probe_timeout_s": probe_timeout_s,
              "straggler_margin": straggler_margin, "connect_timeout_s": connect_timeout_s}
    deadline_s = connect_timeout_s + probe_timeout_s + STARTUP_MARGIN_S
    read_fd, write_fd = os.pipe()
    with tempfile.NamedTemporaryFile(prefix="scaling-planner-measure-", suffix=".log", delete=False) as log:
        log_path = log.name
    env = {**os.environ, "RAY_gcs_rpc_server_reconnect_timeout_s": str(int(min(GCS_RECONNECT_S,
                                                                                 max(5.0, probe_timeout_s))))}
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(write_fd), json.dumps(kwargs)],
                                pass_fds=(write_fd,), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env)
    os.close(write_fd)
    events = _Events()
    try:
        outcome = _read(read_fd, proc, time.monotonic() + deadline_s, events, progress)
    finally:
        os.close(read_fd)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if outcome in ("done", "error"):
        Path(log_path).unlink(missing_ok=True)
    if outcome == "done":
        from .models import ClusterMeasurement

        return ClusterMeasurement.model_validate(events.done)
    if outcome == "error":
        raise _rebuild(events.error)
    why = (f"no result within {deadline_s:.0f} s (connect {connect_timeout_s:g} s + probes {probe_timeout_s:g} s "
           f"+ {STARTUP_MARGIN_S:g} s to start)" if outcome == "timeout" else
           f"the measuring process ended (exit code {proc.returncode}) after {time.monotonic() - t0:.0f} s before it "
           "finished: Ray ends a driver whose cluster head (GCS) became unreachable")
    partial = events.partial(ray_address, straggler_margin, time.monotonic() - t0,
                             f"measurement lost: {why}; Ray's output: {log_path}")
    exc = MeasurementError(f"lost the Ray cluster during the measurement: {why}; {partial.totals.devices_ok} "
                           f"device(s) had reported; Ray's output is in {log_path}")
    exc.partial = partial
    raise exc


class _Events:
    """What the child reported: its nodes, each device as it finished, and the final result or error."""

    def __init__(self):
        self.nodes: dict = {}
        self.devices: list = []
        self.done: dict | None = None
        self.error: dict | None = None
        self.measured_at: str | None = None

    def partial(self, ray_address, straggler_margin: float, elapsed_s: float, note: str):
        from datetime import UTC, datetime

        from .models import DeviceMeasurement, NodeMeasurement
        from .summary import assemble

        nodes = {k: NodeMeasurement.model_validate(v) for k, v in self.nodes.items()}
        results = [(d["node_id"], d["kind"], DeviceMeasurement.model_validate(d["device"]), d.get("info", {}))
                   for d in self.devices]
        gpu_slots = sum(int(n.resources.get("GPU", 0)) for n in nodes.values() if n.alive)
        measured_at = self.measured_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        m = assemble(nodes, results, set(), gpu_slots, [note], measured_at=measured_at, ray_address=ray_address,
                     elapsed_s=elapsed_s, straggler_margin=straggler_margin)
        return m.model_copy(update={"partial": True})


def _read(fd: int, proc: subprocess.Popen, deadline: float, events: _Events, progress) -> str:
    """Read the child's event lines until 'done', 'error', its exit ('lost') or the deadline ('timeout')."""
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    buffer = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:  # the child closed its end: it exited
                return "lost"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                outcome = _apply(json.loads(line), events, progress)
                if outcome:
                    return outcome
    finally:
        sel.close()


def _apply(event: dict, events: _Events, progress) -> str | None:
    kind = event.pop("event")
    if kind == "nodes":
        events.nodes, events.measured_at = event["nodes"], event.get("measured_at")
    elif kind == "device":
        events.devices.append(event)
    elif kind == "progress" and progress is not None:
        progress(event["done"], event["total"], event["label"])
    elif kind == "done":
        events.done = event["measurement"]
        return "done"
    elif kind == "error":
        events.error = event
        return "error"
    return None


def _rebuild(error: dict) -> PlannerError:
    """The child's PlannerError, as the same type when it is one of the package's."""
    from ..base import errors

    cls = getattr(errors, error.get("type", ""), None)
    if isinstance(cls, type) and issubclass(cls, PlannerError):
        if cls is errors.InputError:
            field, _, problem = error["message"].partition(": ")
            return errors.InputError(field, problem)
        try:
            return cls(error["message"])
        except TypeError:
            pass
    return MeasurementError(error["message"])


def child_main() -> None:
    """The child: measure, reporting every event as a JSON line on the inherited pipe (argv[1])."""
    from .cluster import measure_cluster

    out = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    kwargs = json.loads(sys.argv[2])

    def send(event: str, **payload) -> None:
        out.write(json.dumps({"event": event, **payload}, default=str) + "\n")

    def report(kind: str, payload) -> None:
        if kind == "nodes":
            nodes, measured_at = payload
            send("nodes", nodes={k: n.model_dump(mode="json") for k, n in nodes.items()}, measured_at=measured_at)
        elif kind == "device":
            node_id, device_kind, device, info = payload
            send("device", node_id=node_id, kind=device_kind, device=device.model_dump(mode="json"), info=info)

    try:
        m = measure_cluster(**kwargs, progress=lambda done, total, label: send("progress", done=done, total=total,
                                                                                label=label),
                            report=report)
    except PlannerError as exc:
        send("error", type=type(exc).__name__, message=str(exc))
    else:
        send("done", measurement=m.model_dump(mode="json"))
    out.close()
