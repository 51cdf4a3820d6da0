"""Size a Ray Train job from a plan, checked against what the Ray cluster has.

The output is the argument set of ``ray.train.ScalingConfig`` (Ray 2.60, Train v2): ``num_workers``
(one rank per device for DDP/FSDP-style data parallelism), ``use_gpu``, ``resources_per_worker``,
``accelerator_type`` and ``placement_strategy``. Ray labels a GPU node with ``accelerator_type:<T>``
where T comes from the NVML name (``NVIDIA H100 80GB HBM3`` -> ``H100``; see
reference/stack_notes.md §3), so it cannot tell an H100 SXM from a PCIe card: the hardware profile
keeps that distinction, the Ray label only schedules.

Placement: ``STRICT_PACK`` when every worker fits on one node (one NVLink domain), ``PACK`` otherwise,
``SPREAD`` on request (fault spreading). Pure Python: the Prefect task reads ``ray.cluster_resources()``
and ``ray.nodes()`` and passes them in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..base.errors import InfeasibleError, InputError

STRATEGIES = ("PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD")
_NVML_MODEL = re.compile(r"\w+\s+((?:[A-Z]+\s+)*[A-Z0-9]*\d[A-Z0-9]*)")


class RayJobSize(BaseModel):
    """ScalingConfig arguments plus the check against the cluster."""

    model_config = ConfigDict(extra="forbid")

    num_workers: int
    use_gpu: bool
    resources_per_worker: dict[str, float]
    accelerator_type: str | None = None
    placement_strategy: str
    total_resources: dict[str, float] = Field(description="what the job asks of the cluster in all")
    cluster_resources: dict[str, float] = Field(description="what the Ray cluster had when sized")
    largest_node: dict[str, float] = Field(default_factory=dict, description="resources of the biggest alive node")
    notes: list[str] = Field(default_factory=list)

    def scaling_config_kwargs(self) -> dict:
        """Keyword arguments for ``ray.train.ScalingConfig``."""
        kw = {"num_workers": self.num_workers, "use_gpu": self.use_gpu,
              "resources_per_worker": dict(self.resources_per_worker),
              "placement_strategy": self.placement_strategy}
        if self.accelerator_type:
            kw["accelerator_type"] = self.accelerator_type
        return kw


def ray_accelerator_type(nvml_name: str | None) -> str | None:
    """The ``accelerator_type`` label Ray derives from an NVML device name: the first all-caps model token
    after the vendor word (``NVIDIA A100-SXM4-80GB`` -> ``A100``); mixed-case product lines fall back to
    the hyphen-joined name (``NVIDIA GeForce RTX 4090`` -> ``GeForce-RTX-4090``)."""
    if not nvml_name:
        return None
    m = _NVML_MODEL.match(nvml_name)
    token = m.group(1).replace(" ", "-") if m else None
    if token and len(token) > 1:
        return token
    cleaned = re.sub(r"^NVIDIA\s+", "", nvml_name).strip()
    return cleaned.replace(" ", "-") or None


def accelerator_type_for_profile(profile) -> str | None:
    names = list(getattr(profile, "nvml_names", []) or [])
    return ray_accelerator_type(names[0]) if names else None


def _alive_node_resources(nodes: Sequence[Mapping] | None) -> list[dict[str, float]]:
    return [dict(n.get("Resources", {})) for n in (nodes or []) if n.get("Alive", n.get("alive", True))]


def size_ray_job(workers: int, *, cluster_resources: Mapping[str, float], nodes: Sequence[Mapping] | None = None,
                 use_gpu: bool = True, cpus_per_worker: float = 1.0, accelerator_type: str | None = None,
                 devices_per_node: int | None = None, placement_strategy: str | None = None,
                 available_resources: Mapping[str, float] | None = None) -> RayJobSize:
    """ScalingConfig arguments for ``workers`` ranks, checked against ``cluster_resources``
    (``ray.cluster_resources()``), what is free now (``ray.available_resources()``, when given: a job
    that fits the cluster but not what other work leaves free would wait for it without end) and, when
    given, the alive nodes of ``ray.nodes()``.

    Raises InfeasibleError, saying what is short and by how much, when the cluster cannot hold the job.
    """
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise InputError("workers", f"must be a whole number >= 1, got {workers!r}")
    workers = int(workers)
    if not cpus_per_worker >= 0:
        raise InputError("cpus_per_worker", f"must be >= 0, got {cpus_per_worker!r}")
    if placement_strategy is not None and placement_strategy not in STRATEGIES:
        raise InputError("placement_strategy", f"must be one of {', '.join(STRATEGIES)}, got {placement_strategy!r}")
    have = {k: float(v) for k, v in cluster_resources.items()}
    node_res = _alive_node_resources(nodes)
    per_worker: dict[str, float] = {"CPU": float(cpus_per_worker)}
    if use_gpu:
        per_worker["GPU"] = 1.0
    notes: list[str] = []
    label = f"accelerator_type:{accelerator_type}" if accelerator_type else None
    if use_gpu and label and label not in have:
        types = sorted(k.split(":", 1)[1] for k in have if k.startswith("accelerator_type:"))
        raise InfeasibleError(f"the Ray cluster has no {accelerator_type} nodes "
                              f"(accelerator types present: {', '.join(types) or 'none'})")
    total = {k: v * workers for k, v in per_worker.items()}
    for key, need in total.items():
        avail = have.get(key, 0.0)
        if need > avail + 1e-9:
            raise InfeasibleError(f"the job needs {need:g} {key} ({workers} workers x {per_worker[key]:g}) "
                                  f"but the Ray cluster has {avail:g}: short by {need - avail:g}")
    if available_resources is not None:
        for key, need in total.items():
            free = float(available_resources.get(key, 0.0))
            if need > free + 1e-9:
                raise InfeasibleError(
                    f"the job needs {need:g} {key} ({workers} workers x {per_worker[key]:g}) but only {free:g} of "
                    f"the cluster's {have.get(key, 0.0):g} are free now (other work holds the rest); it would wait "
                    "for them without end: free them, or ask for fewer workers")
    largest = max(node_res, key=lambda r: (r.get("GPU", 0.0), r.get("CPU", 0.0)), default={})
    per_node_slots = None
    if node_res:
        key = "GPU" if use_gpu else "CPU"
        unit = per_worker[key] if per_worker[key] > 0 else None
        if unit:
            per_node_slots = max(int(r.get(key, 0.0) // unit + 1e-9) for r in node_res)
    if placement_strategy is None:
        one_box = devices_per_node if use_gpu and devices_per_node else per_node_slots
        if one_box is not None and workers <= one_box and (per_node_slots is None or workers <= per_node_slots):
            placement_strategy = "STRICT_PACK"
            notes.append(f"all {workers} workers fit on one node: STRICT_PACK keeps them in one fast domain")
        else:
            placement_strategy = "PACK"
            notes.append(f"{workers} workers span nodes: PACK fills nodes before spreading")
    if placement_strategy == "STRICT_PACK" and per_node_slots is not None and workers > per_node_slots:
        raise InfeasibleError(f"STRICT_PACK needs {workers} workers on one node but the largest alive node "
                              f"holds {per_node_slots}")
    if label:
        total[label] = 0.001 * workers
    return RayJobSize(num_workers=workers, use_gpu=use_gpu, resources_per_worker=per_worker,
                      accelerator_type=accelerator_type if use_gpu else None,
                      placement_strategy=placement_strategy, total_resources=total, cluster_resources=have,
                      largest_node=largest, notes=notes)
