"""The training estimate: the best layout on G devices, then what the run costs end to end.

:func:`simulate_training` searches every layout with the step model (:mod:`.training`), then prices
the run in one of three ways (``TrainingEstimate.efficiency_source`` says which):

* ``realised`` (the default): what a team really spends end to end, the road of
  :mod:`.end_to_end` -- the best layout under a less fused stack's elementwise traffic, failures
  and checkpoints (:mod:`.reliability`), and the end-to-end factor fitted on published runs --
  with its P10 / P90 band;
* ``tuned`` (``efficiency="tuned"``): the step model's tuned Megatron-class stack in steady state,
  plus failures and checkpoints: the figure a team running NVIDIA's recipes can expect;
* ``measured`` (a ``measured_mfu`` of the team's own stack): the step time set by that MFU on the
  tuned model's best layout, plus failures and checkpoints.

Tuned and measured take their band from the tuned-stack validation (the step model's error when it
carries a configuration to another). Every estimate also carries the tuned-stack figures
(``mfu_tuned``, ``gpu_hours_tuned`` ...) side by side.

Accepted device counts: at most one node, or whole nodes; on a TPU (a node is one ICI domain) a
count above a pod must split into equal slices of whole hosts, which then talk over the
data-centre network (PaLM: 2 x 3072 TPU v4 chips).
"""

from __future__ import annotations

import math

import numpy as np

from ...base.errors import InfeasibleError, InputError
from ...base.units import GIB, SECONDS_PER_DAY, SECONDS_PER_HOUR, TERA
from .. import efficiency as eff
from ..architecture import Architecture
from ..memory import RECOMPUTE_FULL, RECOMPUTE_NAMES
from .end_to_end import EndToEndPrior, best_for_stack, check_mode, load_prior
from .search import (
    BATCH_SLACK,
    DEFAULT_DP_OVERLAP,
    REASON_BATCH,
    REASON_INTERLEAVE,
    REASON_MEMORY,
    REASONS,
    search_layouts,
)
from .step import PIPELINE_ENGINES


def device_domain(profile, n_devices: int) -> int:
    """Devices that share the fast links in a run of ``n_devices``: the node (NVLink / ICI domain),
    or for a TPU run larger than a pod, its slice. Raises InputError for a count the hardware cannot
    be allocated in (a part of a node above one node; TPU slices that are not whole hosts)."""
    dpn = int(profile.devices_per_node)
    if n_devices <= dpn:
        return dpn
    if getattr(profile, "kind", "gpu") == "tpu":
        host = int(getattr(profile, "devices_per_host", None) or 1)
        for slices in range(math.ceil(n_devices / dpn), n_devices + 1):
            size = n_devices // slices
            if n_devices % slices == 0 and size % host == 0:
                return size
        raise InputError("gpus", f"{n_devices} chips of {profile.name} do not split into equal slices of at most "
                                 f"{dpn} chips made of whole {host}-chip hosts")
    if n_devices % dpn:
        raise InputError("gpus", f"must be <= {dpn} or a multiple of the {dpn} devices per node of "
                                 f"{profile.name}, got {n_devices}")
    return dpn


def _layout(grid, i):
    from ..results import Layout

    return Layout(
        tp=int(grid["t"][i]), pp=int(grid["p"][i]), dp=int(grid["d"][i]), ep=int(grid["e"][i]),
        micro_batch=int(grid["b"][i]), micro_batches=int(grid["m"][i]), interleave=int(grid["v"][i]),
        recompute=RECOMPUTE_NAMES[int(grid["recompute"][i])], zero_stage=int(grid["zero"][i]),
        recompute_fraction=float(grid["recompute_fraction"][i]) if "recompute_fraction" in grid
        else float(grid["recompute"][i] == RECOMPUTE_FULL),
        sequence_parallel=bool(grid["sp"][i]), global_batch=int(grid["B"][i]),
        global_batch_tokens=int(grid["B"][i]) * 0,  # filled by caller
    )


def _reject_detail(code: int, excess: float, grid, i) -> str:
    if code == REASON_MEMORY:
        return f"needs {excess / GIB:.2f} GiB more than the device has per GPU"
    if code == REASON_BATCH and grid["B"][i] > BATCH_SLACK * grid["B_target"][i]:
        return (f"micro-batch x DP = {int(grid['b'][i] * grid['d'][i])} sequences exceeds the global batch "
                f"of {grid['B_target'][i]:.0f} by {excess:.0f}")
    if code == REASON_BATCH:
        return (f"global batch {int(grid['B'][i])} is not a multiple of micro-batch x DP = "
                f"{int(grid['b'][i] * grid['d'][i])} (remainder {int(excess)})")
    if code == REASON_INTERLEAVE:
        return (f"interleaving {int(grid['v'][i])} needs micro-batches ({int(grid['m'][i])}) divisible by PP "
                f"({int(grid['p'][i])}) and layers per stage divisible by {int(grid['v'][i])}")
    return "expert parallelism does not divide the experts"


def _check_inputs(tokens, n_devices, profile, precision, global_batch, measured_mfu, dp_overlap, pipeline_engine,
                  efficiency) -> int:
    if not (tokens > 0 and np.isfinite(tokens)):
        raise InputError("tokens", f"must be a positive finite number, got {tokens!r}")
    if int(n_devices) != n_devices or n_devices < 1:
        raise InputError("gpus", f"must be a whole number >= 1, got {n_devices!r}")
    if precision not in eff.PRECISIONS:
        raise InputError("precision", f"must be one of {', '.join(eff.PRECISIONS)}, got {precision!r}")
    try:
        profile.peak_flops_per_s(precision)
    except Exception as exc:
        raise InputError("precision", f"{profile.name} has no {precision} peak ({exc})") from None
    if global_batch is not None and global_batch < 1:
        raise InputError("global_batch", f"must be >= 1 sequence, got {global_batch}")
    if measured_mfu is not None and not 0 < measured_mfu <= 1:
        raise InputError("measured_mfu", f"must be in (0, 1], got {measured_mfu}")
    if not 0 <= dp_overlap <= 1:
        raise InputError("dp_overlap", f"must be in [0, 1], got {dp_overlap}")
    if pipeline_engine not in PIPELINE_ENGINES:
        raise InputError("pipeline_engine", f"must be one of {', '.join(PIPELINE_ENGINES)}, got {pipeline_engine!r}")
    check_mode(efficiency)
    return device_domain(profile, int(n_devices))


def simulate_training(
    arch: Architecture, tokens: float, profile, n_devices: int, *, params: float | None = None,
    global_batch: int | None = None, precision: str = "bf16", price_usd_per_device_hour: float | None = None,
    measured_mfu: float | None = None, measured_matmul_flops_per_s: float | None = None,
    dp_overlap: float = DEFAULT_DP_OVERLAP, flash_attention: bool = True, top: int = 5,
    energy_options: dict | None = None, reliability_options: dict | None = None,
    pipeline_engine: str = "megatron", efficiency: str = "realised", prior: EndToEndPrior | None = None,
    measured_source: str | None = None,
):
    """Best layout for training ``arch`` on ``tokens`` with ``n_devices`` of ``profile``, priced end to
    end; a SimulationResult.

    ``efficiency``: ``"realised"`` (default) or ``"tuned"`` (module docstring); a ``measured_mfu``
    overrides both (``measured_source`` names it in ``efficiency_source``). ``prior`` replaces the
    shipped end-to-end prior (the validation refits it). ``energy_options`` go to
    :func:`energy.training_energy_cost` (pue, grid_kg_co2_per_kwh, host_w_per_device, utilization)
    and ``reliability_options`` to :func:`reliability.goodput` (interruptions_per_device_hour,
    storage_write_bytes_per_s, restart_s). ``pipeline_engine`` is ``"megatron"`` or ``"deepspeed"``.

    Raises InputError for bad input and InfeasibleError (with what fails and by how much) when no
    layout fits.
    """
    from ..results import LayoutScore, ModelSpec, SearchSummary, SimulationResult

    domain = _check_inputs(tokens, n_devices, profile, precision, global_batch, measured_mfu, dp_overlap,
                           pipeline_engine, efficiency)
    n_devices = int(n_devices)
    prior = prior or load_prior()
    mode = "measured" if measured_mfu is not None else efficiency
    rates = eff.DeviceRates(profile, precision, measured_matmul_flops_per_s)
    rates.devices_per_node = domain
    out = search_layouts(arch, rates, n_devices, global_batch=global_batch, dp_overlap=dp_overlap,
                         flash_attention=flash_attention, pipeline_engine=pipeline_engine)
    grid, res = out.grid, out.result
    closest, counts = _rejections(arch, profile, rates, n_devices, out)
    tuned_i = int(out.order[0])
    st = res["step"]
    unfused = prior.unfused_bytes(mode)
    i = best_for_stack(st["total"], st["unfused_s_per_byte"], res["tokens_per_step"], out.order, unfused) \
        if mode == "realised" else tuned_i
    params_total = arch.params() if params is None else float(params)
    training = _estimate(arch, tokens, profile, rates, grid, res, i, tuned_i, n_devices, params_total, precision,
                         price_usd_per_device_hour, measured_mfu, measured_source, mode, prior, unfused,
                         energy_options, reliability_options, flash_attention, pipeline_engine, params)
    nxt = []
    for j in out.order[1:1 + top]:
        j = int(j)
        nxt.append(LayoutScore(layout=_filled_layout(grid, j, arch.seq_len), step_time_s=float(st["total"][j]),
                               tokens_per_s=float(res["tokens_per_step"][j] / st["total"][j]),
                               mfu=float(res["mfu"][j]), memory_gib=float(res["mem"]["total"][j]) / GIB))
    search = SearchSummary(candidates=int(grid["t"].size), feasible=int(out.order.size), rejected=counts,
                           next_best=nxt, closest_rejected=closest, search_s=out.seconds)
    flops_per_token = arch.megatron_flops_per_token()
    model = ModelSpec(
        name=arch.name, params=params_total, active_params=arch.active_params(), tokens=float(tokens),
        n_layers=arch.n_layers, d_model=arch.d_model, n_heads=arch.n_heads, n_kv_heads=arch.n_kv_heads,
        head_dim=arch.head_dim, ffn_hidden=arch.ffn_hidden, ffn_kind=arch.ffn_kind, vocab_size=arch.vocab_size,
        seq_len=arch.seq_len, n_experts=arch.n_experts, top_k=arch.top_k, flops_per_token=flops_per_token,
        flops_convention="Megatron-LM count (Narayanan et al. 2021 eq. 3 without recompute): 6 x matmul "
                         "params incl. logits + 12 L s (q + v widths), causal mask not halved",
        palm_flops_per_token=arch.palm_flops_per_token(), shape_source=arch.source or "catalog",
    )
    return SimulationResult(compute_flops=flops_per_token * float(tokens), model=model, training=training,
                            search=search)


def _filled_layout(grid, i, seq_len):
    lay = _layout(grid, i)
    lay.global_batch_tokens = int(grid["B"][i]) * seq_len
    return lay


def _rejections(arch, profile, rates, n_devices, out):
    """The closest rejected layout per reason and the counts; InfeasibleError when nothing fits."""
    from ..results import Rejection

    grid, res = out.grid, out.result
    reasons = res["reason"]
    counts = {REASONS[c]: int(np.sum(reasons == c)) for c in range(1, len(REASONS)) if np.any(reasons == c)}
    closest = []
    # np.bincount, not np.unique: np.unique imports numpy.ma on first call (~6 ms of CLI cold start)
    present = np.flatnonzero(np.bincount(reasons.astype(np.intp), minlength=len(REASONS)))
    for c in (int(x) for x in present if x != 0):
        idx = np.flatnonzero(reasons == c)
        j = idx[np.argmin(res["excess"][idx])]
        closest.append(Rejection(layout=_filled_layout(grid, j, arch.seq_len), reason=REASONS[c],
                                 detail=_reject_detail(c, float(res["excess"][j]), grid, j)))
    if out.order.size:
        return closest, counts
    n_cand = int(grid["t"].size)
    mem_idx = np.flatnonzero(reasons == REASON_MEMORY)
    if mem_idx.size:
        j = mem_idx[np.argmin(res["excess"][mem_idx])]
        need = float(res["mem"]["total"][j]) / GIB
        raise InfeasibleError(
            f"no layout of {arch.name} ({arch.params() / 1e9:.1f}B params) fits on {n_devices} x "
            f"{profile.name}: the smallest needs {need:.1f} GiB per GPU, "
            f"{float(res['excess'][j]) / GIB:.1f} GiB over the {rates.memory_bytes / GIB:.1f} GiB capacity "
            f"(TP{int(grid['t'][j])} PP{int(grid['p'][j])} DP{int(grid['d'][j])}, "
            f"{RECOMPUTE_NAMES[int(grid['recompute'][j])]} recompute, ZeRO-{int(grid['zero'][j])}); "
            f"{n_cand} layouts tried")
    raise InfeasibleError(f"no layout is feasible among {n_cand} candidates: "
                          + "; ".join(f"{r.reason}: {r.detail}" for r in closest))


def _estimate(arch, tokens, profile, rates, grid, res, i, tuned_i, n_devices, params_total, precision,
              price_usd_per_device_hour, measured_mfu, measured_source, mode, prior, unfused, energy_options,
              reliability_options, flash_attention, pipeline_engine, params_asked):
    """The TrainingEstimate of layout ``i`` priced in ``mode`` (module docstring)."""
    from ..energy import training_energy_cost
    from ..reliability import checkpoint_bytes, goodput
    from ..results import EfficiencyProvenance, EnergyAssumptions, MemoryBreakdown, TimeBreakdown, TrainingEstimate

    st = {k: float(v[i]) for k, v in res["step"].items()}
    mem = {k: float(np.asarray(v)[i] if np.ndim(v) else v) / GIB for k, v in res["mem"].items()}
    tokens_per_step = float(res["tokens_per_step"][i])
    model_flops_step = arch.megatron_flops_per_token(arch.seq_len) * tokens_per_step
    peak = rates.peak_flops_per_s
    stack_s = unfused * st["unfused_s_per_byte"]
    step_s = st["total"] + stack_s
    hfu = float(res["hfu"][i]) * st["total"] / step_s
    notes = []
    if mode == "measured":
        model_mfu = float(res["mfu"][i])
        scale = model_mfu / measured_mfu
        step_s, hfu = step_s * scale, hfu / scale
        notes.append(f"step time scaled from the model's MFU {model_mfu:.3f} to the measured {measured_mfu:.3f}; "
                     "breakdown is the model's")
    steps = float(tokens) / tokens_per_step
    ckpt = float(checkpoint_bytes(params_total))
    reliability = reliability_options or {}

    def wall_of(step):
        ideal = steps * step
        return ideal, goodput(ideal, n_devices, ckpt, **reliability)

    ideal_s, gp = wall_of(step_s)
    factor = prior.end_to_end_factor(mode)
    wall_s = float(gp.wall_clock_s) * factor
    # the tuned stack side by side: its own best layout, steady state, failures and checkpoints
    t_step = float(res["step"]["total"][tuned_i])
    t_steps = float(tokens) / float(res["tokens_per_step"][tuned_i])
    t_ideal = t_steps * t_step
    t_wall = float(goodput(t_ideal, n_devices, ckpt, **reliability).wall_clock_s)
    price, price_source = ((float(profile.price_usd_per_device_hour), f"profile {profile.name} default")
                           if price_usd_per_device_hour is None else (float(price_usd_per_device_hour), "--price"))
    ec = training_energy_cost(n_devices, wall_s, float(profile.tdp_w), price,
                              idle_w=getattr(profile, "idle_w", None), **(energy_options or {}))
    f10, f90 = prior.factor_band(mode)
    gpu_hours = float(ec.gpu_hours)
    total_model_flops = model_flops_step * steps
    source = _efficiency_source(mode, prior, measured_mfu, measured_source)
    tb = TimeBreakdown(**{k: st[k] for k in TimeBreakdown.model_fields if k in st and k != "total"},
                       stack_elementwise=stack_s, total=step_s)
    mb = MemoryBreakdown(**{k: mem[k] for k in MemoryBreakdown.model_fields if k != "capacity"},
                         capacity=rates.memory_bytes / GIB)
    notes += _notes(arch, params_asked, flash_attention, pipeline_engine, precision, mode, factor, unfused)
    curve = (f"GEMM t = max(F/({rates.achievable_fraction:.3g} x peak), bytes/({eff.MEMORY_EFFICIENCY} x HBM BW)) "
             f"+ {eff.KERNEL_OVERHEAD_S * 1e6:g} us; links at {eff.INTRA_NODE_LINK_EFFICIENCY} (intra) / "
             f"{eff.INTER_NODE_LINK_EFFICIENCY} (inter) of bandwidth")
    steady_mfu = model_flops_step / (step_s * n_devices * peak)
    return TrainingEstimate(
        gpu=profile.name, gpus=n_devices, precision=precision, layout=_filled_layout(grid, i, arch.seq_len),
        step_time_s=step_s, tokens_per_s=tokens_per_step / step_s, steps=steps, ideal_time_s=ideal_s,
        goodput=float(gp.fraction), end_to_end_factor=factor, wall_clock_days=wall_s / SECONDS_PER_DAY,
        wall_clock_days_p10=wall_s * f10 / SECONDS_PER_DAY, wall_clock_days_p90=wall_s * f90 / SECONDS_PER_DAY,
        gpu_hours=gpu_hours, gpu_hours_p10=gpu_hours * f10, gpu_hours_p90=gpu_hours * f90,
        mfu=total_model_flops / (gpu_hours * SECONDS_PER_HOUR * peak), mfu_steady_state=steady_mfu,
        mfu_tuned=float(res["mfu"][tuned_i]), hfu=hfu,
        model_tflops_per_gpu=steady_mfu * peak / TERA, model_flops=total_model_flops, peak_flops_per_s=peak,
        gpu_hours_tuned=t_wall * n_devices / SECONDS_PER_HOUR, wall_clock_days_tuned=t_wall / SECONDS_PER_DAY,
        cost_usd=float(ec.cost_usd), cost_usd_p10=float(ec.cost_usd) * f10, cost_usd_p90=float(ec.cost_usd) * f90,
        cost_usd_tuned=t_wall * n_devices / SECONDS_PER_HOUR * price,
        price_usd_per_device_hour=price, price_source=price_source,
        energy_kwh=float(ec.energy_kwh), co2_kg=float(ec.co2_kg),
        energy_assumptions=EnergyAssumptions(device_power_w=ec.device_power_w, host_w_per_device=ec.host_w_per_device,
                                             pue=ec.pue, grid_kg_co2_per_kwh=ec.grid_kg_co2_per_kwh),
        time_breakdown_s=tb, memory_gib=mb,
        efficiency_mode=mode, efficiency_source=source,
        efficiency=EfficiencyProvenance(
            source=mode, curve=curve, achievable_matmul_fraction=rates.achievable_fraction,
            achievable_matmul_source=rates.source, measured_mfu=measured_mfu,
            predicted_mfu=float(res["mfu"][tuned_i]), unfused_bytes_per_element=unfused,
            end_to_end_factor=factor, band_p10=f10, band_p90=f90, prior_source=prior.source),
        notes=notes,
    )


def _efficiency_source(mode, prior, measured_mfu, measured_source) -> str:
    if mode == "measured":
        return f"measured: MFU {measured_mfu:.3f} ({measured_source or '--measured-mfu'}), band from the " \
               "tuned-stack validation"
    if mode == "tuned":
        return "tuned: the step model of a tuned Megatron-class stack (steady state, failures and checkpoints " \
               "added), band from the tuned-stack validation"
    return (f"prior: {prior.runs} published end-to-end runs (eager-stack traffic "
            f"{prior.unfused_bytes_per_element:g} B/element, end-to-end factor x{math.exp(prior.log_factor):.2f}, "
            "band from their leave-one-out residuals)")


def _notes(arch, params, flash_attention, pipeline_engine, precision, mode, factor, unfused) -> list[str]:
    notes = []
    if params is not None and abs(arch.params() / params - 1) > 0.01:
        notes.append(f"the derived shape has {arch.params() / 1e9:.1f}B parameters ({params / 1e9:.1f}B asked); "
                     "time and memory use the shape")
    if arch.is_moe:
        notes.append("MoE: balanced routing assumed; experts split over EP and TP")
    notes.append("attention: fused (flash) kernels assumed" if flash_attention else "attention: unfused")
    if pipeline_engine == "deepspeed":
        notes.append("pipeline: DeepSpeed engine (blocking p2p, whole gradients between stages, unfused "
                     "gradient accumulation, no interleaving, ZeRO <= 1 with PP)")
    if precision == "fp8":
        notes.append("fp8: linear layers at the fp8 rate, attention core and logits in bf16; weights, optimizer "
                     "and activations kept as for bf16")
    if mode == "realised":
        notes.append(f"end to end (P50): an eager stack's elementwise traffic ({unfused:g} B/element/layer), "
                     f"failures and checkpoints, then x{factor:.2f} for what published runs spend beyond that; "
                     "--efficiency tuned for a tuned Megatron-class stack")
    return notes
