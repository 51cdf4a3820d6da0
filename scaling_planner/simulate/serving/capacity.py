"""Serving capacity: the replicas, devices, latency, cost and energy that serve a demand under p99 SLOs
(:func:`serving_capacity`), and the latency and throughput of one fixed configuration
(:func:`fixed_estimate`), built on the per-iteration model (:mod:`.iteration`) and the load models
(:mod:`.load`)."""

from __future__ import annotations

import math

import numpy as np

from ...base.errors import InfeasibleError, InputError
from ...base.units import GIB, SECONDS_PER_DAY, SECONDS_PER_HOUR
from ..architecture import Architecture
from .iteration import (
    DEFAULT_BLOCK_TOKENS,
    DEFAULT_MAX_BATCH,
    ServingModel,
    attention_flops,
    build_model,
    check_tensor_parallel,
    elementwise_bytes_per_token,
    smallest_fitting_tp,
    tensor_parallel_ok,
    tp_candidates,
)
from .load import (
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_P99_TPOT_S,
    DEFAULT_P99_TTFT_S,
    DEFAULT_PEAK_FACTOR,
    DEFAULT_PROMPT_TOKENS,
    DEFAULT_SIM_REQUESTS,
    analytic_capacity,
    analytic_curve,
    simulated_max_qps,
)


def _model_info(arch: Architecture):
    from .models import ModelInfo

    return ModelInfo(name=arch.name, params=arch.params(), active_params=arch.active_params(),
                     n_layers=arch.n_layers, d_model=arch.d_model, n_heads=arch.n_heads,
                     n_kv_heads=arch.n_kv_heads, head_dim=arch.head_dim, source=arch.source)


def _hardware_info(profile, price_usd_per_device_hour: float | None):
    from .models import HardwareInfo

    return HardwareInfo(profile=profile.name, display_name=profile.display_name,
                        price_usd_per_device_hour=profile.price_usd_per_device_hour if price_usd_per_device_hour is None
                        else float(price_usd_per_device_hour),
                        memory_bytes_per_device=profile.memory_bytes,
                        memory_bandwidth_bytes_per_s=profile.memory_bandwidth_bytes_per_s)


def _memory(model: ServingModel, kv_tokens: float):
    from .models import MemoryPerDevice

    return MemoryPerDevice(usable_bytes=model.memory_bytes, weights_bytes=model.weight_bytes_per_device,
                           kv_cache_bytes=kv_tokens * model.kv_bytes_per_token,
                           kv_bytes_per_token=model.kv_bytes_per_token,
                           kv_capacity_tokens=model.kv_capacity_tokens)


def _check_positive(value, field_name: str, *, integer: bool = False, allow_zero: bool = False):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if ok and integer:
        ok = float(value) == int(value)
    if not ok:
        kind = "a whole number" if integer else "a finite number"
        raise InputError(field_name, f"must be {kind} {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def step_breakdown(model: ServingModel, batch: float, context_tokens: float):
    """The parts of one decode step (see :meth:`ServingModel.iteration_time_s`)."""
    from .models import StepBreakdown

    a = model.arch
    kv = batch * context_tokens
    mem = float(model.weights_read_bytes(batch) + kv * model.kv_bytes_per_token) / model.hbm_bytes_per_s
    flops = 2.0 * a.matmul_params_per_token() * batch + attention_flops(a, batch, kv)
    comp = float(flops) / model.tp / model.flops_per_s
    elem = batch * elementwise_bytes_per_token(a) / model.tp / model.elementwise_bytes_per_s
    comm = float(model.tp_comm_time_s(batch))
    return StepBreakdown(memory_s=mem, compute_s=comp, elementwise_s=elem, kernel_overhead_s=model.fixed_overhead_s,
                         tp_comm_s=comm, total_s=max(mem, comp) + elem + model.fixed_overhead_s + comm,
                         bound="memory" if mem >= comp else "compute")


def fixed_estimate(arch: Architecture, profile, *, gpus: int, batch_size: int, prompt_tokens: int,
                   output_tokens: int, precision: str = "bf16", kv_precision: str | None = None,
                   price_usd_per_device_hour: float | None = None, **model_kw):
    """TTFT, time per output token and throughput of exactly one configuration: ``gpus`` devices in
    one tensor-parallel replica, a batch of ``batch_size`` identical requests prefilled together and
    decoded together (the llm-analysis ``infer`` setting)."""
    from .models import FixedEstimate

    for name, v in (("gpus", gpus), ("batch_size", batch_size), ("prompt_tokens", prompt_tokens),
                    ("output_tokens", output_tokens)):
        _check_positive(v, name, integer=True)
    check_tensor_parallel(arch, int(gpus), "gpus")  # the devices of one tensor-parallel replica
    m = build_model(arch, profile, tp=int(gpus), precision=precision, kv_precision=kv_precision, **model_kw)
    seq = prompt_tokens + output_tokens
    need = m.weight_bytes_per_device + batch_size * seq * m.kv_bytes_per_token
    if need > m.memory_bytes:
        raise InfeasibleError(
            f"{arch.name} at batch {batch_size} x {seq} tokens needs {need / GIB:.1f} GiB per device on "
            f"{gpus} x {profile.name}, {(need - m.memory_bytes) / GIB:.1f} GiB more than the "
            f"{m.memory_bytes / GIB:.1f} GiB usable; the largest batch that fits is {m.max_batch(seq, 10**9)}"
        )
    ttft = float(m.prefill_time_s(prompt_tokens, batch_size))
    if output_tokens > 1:
        ctx = prompt_tokens + np.arange(1, output_tokens, dtype=float)
        steps = m.decode_step_time_s(batch_size, ctx)
        tpot = float(np.mean(steps))
    else:
        tpot = 0.0
    latency = ttft + (output_tokens - 1) * tpot
    out_tps = batch_size * output_tokens / latency
    tot_tps = batch_size * seq / latency
    hw = _hardware_info(profile, price_usd_per_device_hour)
    cost = gpus * hw.price_usd_per_device_hour / SECONDS_PER_HOUR / out_tps * 1e6
    return FixedEstimate(
        model=_model_info(arch), hardware=hw, gpus=int(gpus), tensor_parallel=int(gpus), batch_size=int(batch_size),
        prompt_tokens=int(prompt_tokens), output_tokens=int(output_tokens), precision=m.weight_precision,
        kv_precision=m.kv_precision, ttft_s=ttft, tpot_s=tpot, request_latency_s=latency,
        throughput_output_tokens_per_s=out_tps, throughput_total_tokens_per_s=tot_tps,
        throughput_output_tokens_per_s_per_device=out_tps / gpus,
        throughput_total_tokens_per_s_per_device=tot_tps / gpus,
        max_batch_size=m.max_batch(seq), memory=_memory(m, batch_size * seq),
        decode_step=step_breakdown(m, batch_size, prompt_tokens + output_tokens / 2.0),
        cost_usd_per_million_output_tokens=cost, assumptions=m.assumptions(), notes=list(m.notes),
    )


def serving_capacity(
    arch: Architecture,
    profile,
    *,
    tokens_per_day: float | None = None,
    qps: float | None = None,
    prompt_tokens: float = DEFAULT_PROMPT_TOKENS,
    output_tokens: float = DEFAULT_OUTPUT_TOKENS,
    p99_ttft_s: float = DEFAULT_P99_TTFT_S,
    p99_tpot_s: float = DEFAULT_P99_TPOT_S,
    precision: str = "bf16",
    kv_precision: str | None = None,
    peak_factor: float = DEFAULT_PEAK_FACTOR,
    thinking_tokens: float = 0.0,
    samples: int = 1,
    single_sample_accuracy: float | None = None,
    simulate: bool = True,
    sim_requests: int = DEFAULT_SIM_REQUESTS,
    chunked_prefill: bool = False,
    max_batch: int = DEFAULT_MAX_BATCH,
    price_usd_per_device_hour: float | None = None,
    tensor_parallel: int | None = None,
    seed: int = 0,
    **model_kw,
):
    """Replicas, devices, latency, cost and energy to serve ``arch`` on ``profile`` at a demand.

    Demand is ``tokens_per_day`` (prompt + answer tokens users exchange) or mean ``qps``; the fleet
    is sized for ``peak_factor`` × the mean. With test-time compute each query decodes ``samples``
    sequences of ``output + thinking`` tokens (prompts are not shared between samples: no prefix
    caching, an upper bound on prefill work); the plan then also sizes the fleet without it, for the
    comparison. For each tensor-parallel degree from the smallest that fits up to 8× it, the analytic
    fixed point (:func:`analytic_capacity`) gives the max QPS per replica; the cheapest candidates are
    refined by simulation (:func:`simulated_max_qps`) against the p99 SLOs. Raises
    :class:`InfeasibleError` when no degree meets the SLO, with the best latencies reachable.
    """
    from .. import energy as en
    from .models import SLO, Demand, LatencyAtLoad, Percentiles, ServingPlan

    mean_qps, tokens_per_day = _demand(tokens_per_day, qps, prompt_tokens, output_tokens, p99_ttft_s, p99_tpot_s,
                                       thinking_tokens, samples, peak_factor)
    samples = int(samples)
    seq_out = float(_decode_tokens(output_tokens, thinking_tokens))
    peak_qps = peak_factor * mean_qps
    seq_peak_qps = peak_qps * samples
    hw = _hardware_info(profile, price_usd_per_device_hour)
    sizing = dict(p99_ttft_s=p99_ttft_s, p99_tpot_s=p99_tpot_s, price=hw.price_usd_per_device_hour,
                  simulate=simulate, sim_requests=sim_requests, seed=seed, chunked_prefill=chunked_prefill,
                  max_batch=max_batch, tensor_parallel=tensor_parallel,
                  model_kw=dict(precision=precision, kv_precision=kv_precision, **model_kw))
    best, options, m, bmax = _size_fleet(arch, profile, prompt_tokens, seq_out, seq_peak_qps, **sizing)

    latency = None
    if simulate:
        from .eventsim import simulate as run_sim
        from .workload import poisson_workload

        load = seq_peak_qps / best.replicas
        wl = poisson_workload(load, sim_requests, prompt_tokens, seq_out, seed=seed)
        s = run_sim(m, wl, max_batch=bmax, chunked_prefill=chunked_prefill).summary()
        latency = LatencyAtLoad(qps=load / samples, ttft_s=Percentiles(**s["ttft_s"]),
                                tpot_s=Percentiles(**s["tpot_s"]), queue_s=Percentiles(**s["queue_s"]),
                                utilization=s["utilization"], mean_batch=s["mean_batch"],
                                requests_simulated=sim_requests)

    cost_day = best.cost_usd_per_day
    util = min(1.0, mean_qps * samples / (best.replicas * best.max_qps))
    p_dev = float(en.device_power_w(profile.tdp_w, util, profile.idle_w))
    fleet_w = best.devices * (p_dev + en.DEFAULT_HOST_W_PER_DEVICE)
    tokens_per_s = tokens_per_day / SECONDS_PER_DAY
    ttc = None
    if thinking_tokens > 0 or samples > 1:
        ttc = _test_time_compute(arch, profile, mean_qps, peak_qps, prompt_tokens, output_tokens, thinking_tokens,
                                 samples, seq_out, best, single_sample_accuracy, sizing)
    seq_tokens = prompt_tokens + seq_out
    notes = list(m.notes)
    if best.simulated_max_qps is None:
        notes.append("capacity from the analytic fixed point (mean latencies against p99 targets: optimistic)")
    return ServingPlan(
        model=_model_info(arch), hardware=hw, precision=m.weight_precision, kv_precision=m.kv_precision,
        demand=Demand(tokens_per_day=float(tokens_per_day), mean_qps=mean_qps, peak_factor=float(peak_factor),
                      peak_qps=peak_qps, prompt_tokens=float(prompt_tokens), output_tokens=float(output_tokens),
                      thinking_tokens=float(thinking_tokens), samples_per_query=samples,
                      sequence_qps_peak=seq_peak_qps),
        slo=SLO(p99_ttft_s=float(p99_ttft_s), p99_tpot_s=float(p99_tpot_s)),
        tensor_parallel=best.tensor_parallel, devices_per_replica=best.tensor_parallel, replicas=best.replicas,
        devices=best.devices, max_qps_per_replica=best.max_qps / samples, max_batch_size=bmax,
        memory=_memory(m, bmax * seq_tokens), latency_at_peak=latency, mean_utilization=util,
        cost_usd_per_day=cost_day, cost_usd_per_month=cost_day * 30.0,
        cost_usd_per_million_tokens=cost_day / (tokens_per_day / 1e6),
        cost_usd_per_million_output_tokens=cost_day / (mean_qps * SECONDS_PER_DAY * output_tokens / 1e6),
        cost_usd_per_query=cost_day / (mean_qps * SECONDS_PER_DAY),
        energy_kwh_per_day=fleet_w * 24.0 / 1000.0 * en.DEFAULT_PUE,
        energy_j_per_token=float(en.energy_per_token_j(fleet_w, tokens_per_s, pue=en.DEFAULT_PUE)),
        device_power_w=p_dev, pue=en.DEFAULT_PUE, options=options, test_time_compute=ttc,
        capacity_method="simulation (bisection over Poisson load, p99 SLOs)" if simulate
        else "analytic fixed point (mean latencies)",
        assumptions={**m.assumptions(), "memory_fraction": m.memory_bytes / profile.memory_bytes,
                     "block_tokens": DEFAULT_BLOCK_TOKENS, "max_batch": max_batch,
                     "scheduler": "chunked prefill" if chunked_prefill else "vLLM (prefill-priority)",
                     "host_w_per_device": en.DEFAULT_HOST_W_PER_DEVICE,
                     "sim_requests": sim_requests if simulate else 0, "seed": seed},
        notes=notes,
    )


def _decode_tokens(output_tokens: float, thinking_tokens: float) -> float:
    from .test_time_compute import decode_tokens_per_query

    return decode_tokens_per_query(output_tokens, thinking_tokens, 1)


def _demand(tokens_per_day, qps, prompt_tokens, output_tokens, p99_ttft_s, p99_tpot_s, thinking_tokens, samples,
            peak_factor) -> tuple[float, float]:
    """(mean QPS, tokens per day) of a demand given either way; InputError for a bad request."""
    if (tokens_per_day is None) == (qps is None):
        raise InputError("demand", "give exactly one of tokens_per_day or qps")
    _check_positive(prompt_tokens, "prompt_tokens")
    _check_positive(output_tokens, "output_tokens")
    _check_positive(p99_ttft_s, "p99_ttft_s")
    _check_positive(p99_tpot_s, "p99_tpot_s")
    _check_positive(thinking_tokens, "thinking_tokens", allow_zero=True)
    _check_positive(samples, "samples", integer=True)
    if not (isinstance(peak_factor, (int, float)) and math.isfinite(peak_factor) and peak_factor >= 1):
        raise InputError("peak_factor", f"must be a finite number >= 1, got {peak_factor!r}")
    if tokens_per_day is not None:
        _check_positive(tokens_per_day, "tokens_per_day")
        return tokens_per_day / SECONDS_PER_DAY / (prompt_tokens + output_tokens), float(tokens_per_day)
    _check_positive(qps, "qps")
    return float(qps), float(qps) * SECONDS_PER_DAY * (prompt_tokens + output_tokens)


def _size_fleet(arch, profile, prompt_tokens, seq_out, seq_peak_qps, *, p99_ttft_s, p99_tpot_s, price, simulate,
                sim_requests, seed, chunked_prefill, max_batch, tensor_parallel, model_kw):
    """The cheapest replica option that serves ``seq_peak_qps`` sequences per second of ``seq_out`` decode
    tokens each under the p99 SLOs: (best option, every option, its ServingModel, its max batch)."""
    from .models import ReplicaOption

    seq_tokens = prompt_tokens + seq_out
    t0 = smallest_fitting_tp(arch, profile, seq_tokens, **model_kw)
    cands = [tensor_parallel] if tensor_parallel else [t for t in tp_candidates(profile) if t0 <= t <= 8 * t0
                                                       and tensor_parallel_ok(arch, t)]
    options, models = [], {}
    for t in cands:
        m = build_model(arch, profile, tp=int(t), **model_kw)
        bmax = m.max_batch(seq_tokens, max_batch)
        if bmax < 1:
            options.append(ReplicaOption(tensor_parallel=t, max_batch_size=0, kv_capacity_tokens=m.kv_capacity_tokens,
                                         analytic_max_qps=0.0, max_qps=0.0, meets_slo=False, zero_load_ttft_s=math.inf,
                                         zero_load_tpot_s=math.inf, replicas=0, devices=0, cost_usd_per_day=0.0,
                                         reason="weights and one sequence's KV cache do not fit"))
            continue
        _, tpot1, _ = analytic_curve(m, prompt_tokens, seq_out, 1.0)
        ttft1 = float(m.prefill_time_s(prompt_tokens))
        lam, _b = analytic_capacity(m, prompt_tokens, seq_out, bmax, p99_ttft_s, p99_tpot_s)
        models[t] = (m, bmax)
        options.append(_option(t, bmax, m, lam, None, ttft1, float(tpot1), seq_peak_qps, price))
    feasible = [o for o in options if o.meets_slo]
    if not feasible:
        _raise_unmeetable(options, p99_ttft_s, p99_tpot_s, arch, profile)
    if simulate:
        refined = []
        for o in sorted(feasible, key=lambda o: o.cost_usd_per_day)[:2]:
            m, bmax = models[o.tensor_parallel]
            lam_sim, _s = simulated_max_qps(m, prompt_tokens, seq_out, p99_ttft_s, p99_tpot_s,
                                            guess_qps=o.analytic_max_qps, max_batch=bmax, requests=sim_requests,
                                            seed=seed, chunked_prefill=chunked_prefill)
            new = _option(o.tensor_parallel, bmax, m, o.analytic_max_qps, lam_sim, o.zero_load_ttft_s,
                          o.zero_load_tpot_s, seq_peak_qps, price)
            options[options.index(o)] = new
            refined.append(new)
        feasible = [o for o in refined if o.meets_slo]
        if not feasible:
            _raise_unmeetable(refined, p99_ttft_s, p99_tpot_s, arch, profile, simulated=True)
    best = min(feasible, key=lambda o: (o.cost_usd_per_day, o.tensor_parallel))
    m, bmax = models[best.tensor_parallel]
    return best, options, m, bmax


def _test_time_compute(arch, profile, mean_qps, peak_qps, prompt_tokens, output_tokens, thinking_tokens, samples,
                       seq_out, best, single_sample_accuracy, sizing):
    """The plan's test-time-compute section: the fleet with thinking tokens and samples against the fleet
    that serves the same queries with plain answers (sized the same way; NaN when that one is infeasible)."""
    from .models import TestTimeCompute
    from .test_time_compute import decode_tokens_per_query, pass_at_k

    try:
        base, _, _, _ = _size_fleet(arch, profile, prompt_tokens, float(output_tokens), peak_qps, **sizing)
        base_cost, base_dev = base.cost_usd_per_day, base.devices
    except InfeasibleError:
        base_cost, base_dev = math.nan, 0
    cost_day = best.cost_usd_per_day
    queries_day = mean_qps * SECONDS_PER_DAY
    return TestTimeCompute(
        thinking_tokens_per_query=float(thinking_tokens), samples_per_query=samples,
        decode_tokens_per_query=float(decode_tokens_per_query(output_tokens, thinking_tokens, samples)),
        decode_multiplier=samples * seq_out / output_tokens, devices_without=int(base_dev or 0),
        devices_with=best.devices, cost_usd_per_day_without=float(base_cost), cost_usd_per_day_with=cost_day,
        extra_cost_usd_per_day=cost_day - float(base_cost), cost_usd_per_query_with=cost_day / queries_day,
        cost_usd_per_query_without=float(base_cost) / queries_day, single_sample_accuracy=single_sample_accuracy,
        pass_at_k=None if single_sample_accuracy is None else float(pass_at_k(single_sample_accuracy, samples)),
    )


def _option(t, bmax, m, lam_an, lam_sim, ttft1, tpot1, seq_peak_qps, price):
    from .models import ReplicaOption

    lam = lam_an if lam_sim is None else lam_sim
    ok = lam > 0
    replicas = math.ceil(seq_peak_qps / lam) if ok else 0
    return ReplicaOption(
        tensor_parallel=t, max_batch_size=bmax, kv_capacity_tokens=m.kv_capacity_tokens, analytic_max_qps=lam_an,
        simulated_max_qps=lam_sim, max_qps=lam, meets_slo=ok, zero_load_ttft_s=ttft1, zero_load_tpot_s=tpot1,
        replicas=replicas, devices=replicas * t, cost_usd_per_day=replicas * t * price * 24.0,
        reason="" if ok else "misses the SLO even at batch 1",
    )


def _raise_unmeetable(options, p99_ttft_s, p99_tpot_s, arch, profile, simulated: bool = False):
    fit = [o for o in options if o.max_batch_size > 0]
    best_ttft = min(fit, key=lambda o: o.zero_load_ttft_s)
    best_tpot = min(fit, key=lambda o: o.zero_load_tpot_s)
    how = " (simulated p99 at the lowest load tried)" if simulated else ""
    raise InfeasibleError(
        f"no configuration of {arch.name} on {profile.name} meets p99 TTFT <= {p99_ttft_s:g} s and p99 TPOT <= "
        f"{p99_tpot_s:g} s{how}; best reachable at no load: TTFT {best_ttft.zero_load_ttft_s:.4g} s "
        f"(tensor parallel {best_ttft.tensor_parallel}), TPOT {best_tpot.zero_load_tpot_s:.4g} s "
        f"(tensor parallel {best_tpot.tensor_parallel})"
    )
