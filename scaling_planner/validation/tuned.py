"""The tuned-stack validation: published step times and throughputs of tuned Megatron-class stacks
(``data/tuned_stack.yaml``), each predicted from the hardware profile and the step model alone.

Every case names its model, hardware, GPU count and as much of the parallel layout as its source
states; a layout field it leaves out is the model's own best choice among the layouts consistent
with the ones given (the same search ``planner simulate`` runs). Nothing measured is fed in.

Compared quantities (``metric``): ``step_time_s`` (seconds per iteration), ``hw_tflops_ptdp``
(hardware TFLOP/s per GPU counted with Narayanan et al. 2021 eq. 3, full recompute included, as
PTD-P reports them), ``model_tflops`` (model TFLOP/s per GPU, Megatron's count:
:meth:`Architecture.megatron_flops_per_token`) and ``tokens_per_s_per_gpu`` (no FLOP convention at
all: NVIDIA's tables give it next to their TFLOP/s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import yaml

from ..base.errors import InputError
from ..base.units import TERA
from ..hardware.profiles import get_profile
from ..simulate import efficiency as eff
from ..simulate.architecture import Architecture, get_arch
from ..simulate.memory import RECOMPUTE_NAMES
from ..simulate.training.search import add_partial_recompute, evaluate_grid, layout_grid

METRICS = ("step_time_s", "hw_tflops_ptdp", "model_tflops", "tokens_per_s_per_gpu")
STATUSES = ("strict", "miss", "unsupported")
SCORED = ("strict", "miss")
_LAYOUT_FIELDS = ("tp", "pp", "dp", "gpus", "interleave", "micro_batch", "global_batch", "recompute", "zero",
                  "sequence_parallel")


@dataclass(frozen=True)
class TunedCase:
    """One published measurement and the configuration it was taken on (group defaults merged in)."""

    group: str
    name: str
    spec: dict
    measured: float
    metric: str
    tolerance: float
    status: str = "strict"
    reason: str = ""


@dataclass
class TunedResult:
    case: TunedCase
    predicted: float | None
    error: float | None  # predicted / measured - 1
    layout: str = ""
    notes: list = field(default_factory=list)

    @property
    def within(self) -> bool:
        return self.error is not None and abs(self.error) <= self.case.tolerance


@dataclass(frozen=True)
class TunedGroup:
    id: str
    title: str
    source: str
    tolerance: float
    cases: tuple


@cache
def load_groups() -> tuple[TunedGroup, ...]:
    """The groups of ``data/tuned_stack.yaml`` (read with ``yaml.safe_load``), defaults merged into cases."""
    text = resources.files(__package__).joinpath("data", "tuned_stack.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    groups = []
    for g in doc["groups"]:
        tol = float(g["tolerance"])
        cases = []
        for c in g["cases"]:
            spec = {**g.get("defaults", {}), **c}
            status = spec.pop("status", "strict")
            if status not in STATUSES:
                raise InputError("status", f"{g['id']}/{c['name']}: must be one of {', '.join(STATUSES)}")
            metric = spec.pop("metric")
            if metric not in METRICS:
                raise InputError("metric", f"{g['id']}/{c['name']}: must be one of {', '.join(METRICS)}")
            name, measured = spec.pop("name"), float(spec.pop("measured"))
            cases.append(TunedCase(group=g["id"], name=name, spec=spec, measured=measured, metric=metric,
                                   tolerance=tol, status=status, reason=spec.pop("reason", "")))
        groups.append(TunedGroup(id=g["id"], title=g["title"], source=g["source"], tolerance=tol, cases=tuple(cases)))
    return tuple(groups)


def all_cases() -> list[TunedCase]:
    return [c for g in load_groups() for c in g.cases]


def case_architecture(spec: dict) -> Architecture:
    """The case's shape: a catalog architecture, or an inline ``shape`` (GPT/Llama conventions)."""
    seq = int(spec["seq_len"])
    if "arch" in spec:
        return get_arch(spec["arch"]).with_seq_len(seq)
    sh = spec["shape"]
    h, heads = int(sh["d_model"]), int(sh["heads"])
    kind = sh.get("ffn_kind", "gelu")
    ffn = int(sh.get("ffn", 4 * h))
    kv = int(sh.get("kv_heads", heads))
    return Architecture(name=f"{sh['layers']}x{h}", n_layers=int(sh["layers"]), d_model=h, n_heads=heads,
                        n_kv_heads=kv, head_dim=h // heads, ffn_hidden=ffn, ffn_kind=kind,
                        vocab_size=int(sh["vocab"]), seq_len=seq, tied_embeddings=bool(sh.get("tied", False)),
                        attention="gqa" if kv < heads else "mha")


def _rates(spec: dict) -> eff.DeviceRates:
    rates = eff.DeviceRates(get_profile(spec["profile"]), spec.get("precision", "bf16"))
    if "inter_node_gb_per_s" in spec:  # the cluster's stated NIC bandwidth per GPU
        rates.inter_bytes_per_s = float(spec["inter_node_gb_per_s"]) * 1e9
    return rates


def _metric(case: TunedCase, arch: Architecture, step_s: float, gpus: int, batch: int) -> float:
    s = arch.seq_len
    if case.metric == "step_time_s":
        return step_s
    if case.metric == "tokens_per_s_per_gpu":
        return batch * s / step_s / gpus
    if case.metric == "model_tflops":
        return arch.megatron_flops_per_token(s) * batch * s / step_s / gpus / TERA
    # Narayanan et al. 2021 eq. 3: hardware FLOPs with full recompute, as PTD-P counts them
    L, h, V = arch.n_layers, arch.d_model, arch.vocab_size
    return 96.0 * batch * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h)) / step_s / gpus / TERA


def predict(case: TunedCase) -> TunedResult:
    """The model's prediction of ``case.metric`` on the case's configuration (its best layout among
    those consistent with the fields the source gives)."""
    spec = case.spec
    if case.status == "unsupported":
        return TunedResult(case, None, None, notes=[case.reason])
    arch = case_architecture(spec)
    rates = _rates(spec)
    tp, pp = int(spec["tp"]), int(spec["pp"])
    gpus = int(spec.get("gpus", tp * pp * int(spec.get("dp", 1))))
    engine = spec.get("pipeline_engine", "megatron")
    kw = {}
    if "micro_batch" in spec:
        kw["micro_batches"] = (int(spec["micro_batch"]),)
    if "interleave" in spec:
        kw["interleaves"] = (int(spec["interleave"]),)
    if "zero" in spec:
        kw["zero_stages"] = (int(spec["zero"]),)
    if "recompute" in spec:
        kw["recomputes"] = (RECOMPUTE_NAMES.index(spec["recompute"]),)
    grid = layout_grid(arch, gpus, global_batch=int(spec["global_batch"]), pipeline_engine=engine, **kw)
    keep = (grid["t"] == tp) & (grid["p"] == pp)
    grid = {k: v[keep] for k, v in grid.items()}
    if "sequence_parallel" in spec:
        grid["sp"] = np.full(grid["t"].shape, bool(spec["sequence_parallel"])) & (grid["t"] > 1)
    if grid["t"].size == 0:
        return TunedResult(case, None, None, notes=["no candidate layout matches the published one"])
    res = evaluate_grid(arch, rates, grid, dp_overlap=float(spec.get("dp_overlap", 0.0)),
                        flash_attention=bool(spec.get("flash_attention", True)), pipeline_engine=engine,
                        tp_overlap=float(spec.get("tp_overlap", 0.0)))
    grid, res = add_partial_recompute(arch, rates, grid, res)
    notes = []
    ok = np.flatnonzero(res["reason"] == 0)
    if ok.size == 0:
        # the published layout ran; the model's memory estimate says it does not fit: predict anyway
        ok = np.flatnonzero(res["reason"] != 2)  # not a batch mismatch
        notes.append("the model's memory estimate exceeds the device for this layout; timed anyway")
    if ok.size == 0:
        return TunedResult(case, None, None, notes=["the global batch does not divide over the layout"])
    i = int(ok[np.argmin(res["time_per_token"][ok])])
    step = float(res["step"]["total"][i])
    pred = _metric(case, arch, step, gpus, int(grid["B"][i]))
    rc = RECOMPUTE_NAMES[int(grid["recompute"][i])]
    if rc == "partial":
        rc += f" {grid['recompute_fraction'][i]:.0%}"
    layout = (f"TP{int(grid['t'][i])} PP{int(grid['p'][i])} DP{int(grid['d'][i])} v{int(grid['v'][i])} "
              f"mb{int(grid['b'][i])}x{int(grid['m'][i])} {rc} ZeRO-{int(grid['zero'][i])}")
    return TunedResult(case, pred, pred / case.measured - 1.0, layout=layout, notes=notes)


def run() -> list[TunedResult]:
    return [predict(c) for c in all_cases()]


def cost_log_error(result: TunedResult) -> float | None:
    """log(actual cost / predicted cost) of one case: time metrics compare directly, throughput
    metrics invert (a throughput predicted too high is a cost predicted too low)."""
    if result.predicted is None:
        return None
    ratio = result.case.measured / result.predicted
    return float(np.log(ratio if result.case.metric == "step_time_s" else 1.0 / ratio))


def tuned_band(results: list[TunedResult] | None = None) -> tuple[float, float]:
    """10th and 90th percentiles of the cost error over every scored case (misses included): the band of a
    tuned-stack or measured-MFU estimate (the step model carrying a configuration to another)."""
    from ..simulate.training.end_to_end import percentile_band

    errs = [cost_log_error(r) for r in (results or run()) if r.case.status in SCORED]
    return percentile_band([e for e in errs if e is not None])
