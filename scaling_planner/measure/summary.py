"""A cluster measurement put together: the per-node devices from whichever runner ran the probes
(Ray tasks in :mod:`.cluster`, Prefect tasks on Ray in the measure flow), the totals, the stragglers
(devices slower than their peers' median) and what is missing."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from typing import Any

from .models import ClusterMeasurement, ClusterTotals, DeviceMeasurement, NodeMeasurement, Straggler


def short_id(node_id: str) -> str:
    """The first 8 characters of a Ray node id, as messages print it."""
    return node_id[:8]


def _peer_group(dev: DeviceMeasurement) -> str:
    return dev.profile or dev.name or dev.device.split(":")[0]


def find_stragglers(devices: Sequence[DeviceMeasurement], margin: float) -> list[Straggler]:
    """Devices whose best matmul of a dtype is slower than the median of their peers by more than ``margin``.

    Peers: the ``ok`` devices of the same hardware profile (else name, else device kind) that measured
    that dtype, so a CPU head is not compared with H100s. ``shortfall = 1 - achieved / median``; a
    straggler has ``shortfall > margin``. A group of one has no stragglers.
    """
    groups: dict[tuple[str, str], list[tuple[DeviceMeasurement, float]]] = {}
    for dev in devices:
        if dev.status != "ok":
            continue
        for dtype in sorted({p.dtype for p in dev.probes if p.kind == "matmul" and p.error is None}):
            best = dev.best_matmul(dtype)
            if best is not None and best.median > 0:
                groups.setdefault((_peer_group(dev), dtype), []).append((dev, best.median))
    out = []
    for (_, dtype), members in sorted(groups.items()):
        median = statistics.median(rate for _, rate in members)
        for dev, rate in members:
            shortfall = 1.0 - rate / median
            if shortfall > margin:
                out.append(Straggler(node_id=dev.node_id, device=dev.device, dtype=dtype,
                                     achieved_flops_per_s=rate, median_flops_per_s=median, shortfall=shortfall))
    return out


def cluster_totals(nodes: Sequence[NodeMeasurement], gpu_slots: int | None = None) -> ClusterTotals:
    """Counts, and the sum over ``ok`` devices of each device's best median matmul rate per dtype."""
    devices = [d for n in nodes for d in n.devices]
    ok = [d for d in devices if d.status == "ok"]
    achieved: dict[str, float] = {}
    for dev in ok:
        for dtype in sorted({p.dtype for p in dev.probes if p.kind == "matmul" and p.error is None}):
            best = dev.best_matmul(dtype)
            if best is not None:
                achieved[dtype] = achieved.get(dtype, 0.0) + best.median
    if gpu_slots is None:
        gpu_slots = sum(int(n.resources.get("GPU", 0.0)) for n in nodes if n.alive)
    return ClusterTotals(nodes=len(nodes), nodes_alive=sum(n.alive for n in nodes), devices=len(devices),
                         devices_ok=len(ok), gpus=gpu_slots, achieved_flops_per_s=achieved)


def assemble(nodes: dict[str, NodeMeasurement], results: Sequence[tuple[str, str, DeviceMeasurement, dict]],
             died: set[str], gpu_slots: int, notes: list[str], **fields: Any) -> ClusterMeasurement:
    """The ClusterMeasurement of ``nodes`` (:func:`node_model`) from one ``(node_id, kind, device,
    info)`` per probe task (``info``: the rest of :func:`probe_device`'s answer, empty when the task
    did not report), whichever runner ran the tasks. ``died``: nodes lost during the measurement;
    ``fields``: measured_at, ray_address, elapsed_s, straggler_margin."""
    devices: dict[str, list[DeviceMeasurement]] = {}
    missing = []
    for node_id, kind, device, info in results:
        devices.setdefault(node_id, []).append(device)
        if device.status != "ok":
            missing.append(f"node {short_id(node_id)} {device.device}: {device.status}: {device.error}")
        if kind == "cpu" and info.get("nvml_gpus"):
            notes.append(f"node {short_id(node_id)}: NVML sees {info['nvml_gpus']} GPU(s) but Ray offers no GPU "
                         "slot there (start the node with --num-gpus); measured its CPU")
    out_nodes = []
    for node_id, node in nodes.items():
        devs = sorted(devices.get(node_id, []), key=lambda d: (d.device != "cpu", _device_order(d.device)))
        update: dict[str, Any] = {"devices": devs}
        if node_id in died:
            update.update(alive=False, error="died during the measurement")
            if not any(m.startswith(f"node {short_id(node_id)} ") for m in missing):
                notes.append(f"node {short_id(node_id)} died after its devices reported")
        out_nodes.append(node.model_copy(update=update))
    out_nodes.sort(key=lambda n: (not n.alive and n.node_id not in died, n.address or "", n.node_id))
    all_devices = [d for n in out_nodes for d in n.devices]
    return ClusterMeasurement(
        partial=bool(missing), nodes=out_nodes, totals=cluster_totals(out_nodes, gpu_slots),
        stragglers=find_stragglers(all_devices, fields["straggler_margin"]), missing=missing,
        load_average=_load_average(), notes=notes, **fields)


def _device_order(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 1 << 30


def _load_average() -> list[float] | None:
    try:
        return [round(x, 3) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None
