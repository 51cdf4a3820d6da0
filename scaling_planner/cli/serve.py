"""``planner serve``: GPUs, latency and cost to serve a model at a demand, or one fixed configuration."""

from __future__ import annotations

from ..base.units import GIB
from .common import bounded, positive, positive_int

PRECISIONS = ("bf16", "fp16", "fp8", "int8", "int4")


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="GPUs, latency and cost to serve a model at a demand",
        description=(
            "Serving capacity: replicas and devices for a demand (tokens per day or QPS, sized for the peak) "
            "under p99 TTFT / time-per-output-token SLOs, with cost and energy; or, with --gpus and "
            "--batch-size, TTFT, time per output token and throughput of exactly that configuration."
        ),
    )
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--params", type=positive("params"), metavar="N", help="model size (a Llama-style shape)")
    model.add_argument("--arch", metavar="NAME", help="a named architecture (llama3-70b, mixtral-8x7b, ...)")
    p.add_argument("--gpu", required=True, metavar="PROFILE", help="hardware profile (planner profiles list)")
    demand = p.add_mutually_exclusive_group()
    demand.add_argument("--tokens-per-day", type=positive("tokens_per_day"), metavar="T",
                        help="prompt + answer tokens per day (1e10, 5B)")
    demand.add_argument("--qps", type=positive("qps"), metavar="Q", help="mean queries per second")
    p.add_argument("--prompt-tokens", type=positive_int("prompt_tokens"), default=None, metavar="P",
                   help="prompt tokens per query (default 1024)")
    p.add_argument("--output-tokens", type=positive_int("output_tokens"), default=None, metavar="O",
                   help="answer tokens per query (default 256)")
    p.add_argument("--p99-ttft", type=positive("p99_ttft"), default=None, metavar="S",
                   help="p99 time to first token SLO in seconds (default 2)")
    p.add_argument("--p99-tpot", type=positive("p99_tpot"), default=None, metavar="S",
                   help="p99 time per output token SLO in seconds (default 0.2)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="weight precision (default bf16; fp16 on a device with no bf16 peak, e.g. V100)")
    p.add_argument("--kv-precision", choices=PRECISIONS, default=None,
                   help="KV-cache precision (default: fp8/int8 with 8-bit weights, else the 16-bit format of the "
                        "GEMMs: bf16, fp16 on a device with no bf16 peak)")
    p.add_argument("--peak-factor", type=positive("peak_factor"), default=None, metavar="X",
                   help="peak / mean demand the fleet is sized for (default 2)")
    p.add_argument("--thinking-tokens", type=bounded("thinking_tokens"), default=0.0, metavar="T",
                   help="reasoning tokens decoded per sample before the answer")
    p.add_argument("--samples", type=positive_int("samples"), default=1, metavar="K",
                   help="samples decoded per query (best-of-k / majority vote)")
    p.add_argument("--single-sample-accuracy", type=bounded("single_sample_accuracy", 0.0, 1.0), default=None,
                   metavar="P", help="success rate of one sample, to report pass@k")
    p.add_argument("--chunked-prefill", action="store_true", help="Sarathi-style chunked prefill scheduler")
    p.add_argument("--analytic", action="store_true", help="skip the simulation (analytic capacity only)")
    p.add_argument("--price", "--price-usd-per-hour", dest="price", type=positive("price", allow_dollar=True),
                   default=None, metavar="USD_PER_DEVICE_HOUR",
                   help="price per device-hour (default: the profile's dated price)")
    p.add_argument("--gpus", type=positive_int("gpus"), default=None, metavar="G",
                   help="fixed configuration: devices in one tensor-parallel replica")
    p.add_argument("--batch-size", type=positive_int("batch_size"), default=None, metavar="B",
                   help="fixed configuration: requests batched together")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..base.errors import InputError
    from ..hardware.profiles import get_profile
    from ..simulate.architecture import get_arch, shape_for_params
    from ..simulate.serving import capacity as serving
    from .common import print_json

    arch = get_arch(args.arch) if args.arch else shape_for_params(args.params)
    profile = get_profile(args.gpu)
    if args.precision is None:  # the device's 16-bit format; an explicit one it lacks is refused
        args.precision = "fp16" if "bf16" not in profile.supported_dtypes and "fp16" in profile.supported_dtypes \
            else "bf16"
    prompt = args.prompt_tokens or serving.DEFAULT_PROMPT_TOKENS
    output = args.output_tokens or serving.DEFAULT_OUTPUT_TOKENS
    fixed = args.gpus is not None or args.batch_size is not None
    if fixed:
        if args.gpus is None or args.batch_size is None:
            raise InputError("gpus/batch_size", "a fixed-configuration estimate needs both --gpus and --batch-size")
        if args.tokens_per_day is not None or args.qps is not None:
            raise InputError("demand", "give either a demand (--tokens-per-day/--qps) or --gpus/--batch-size, not both")
        est = serving.fixed_estimate(arch, profile, gpus=args.gpus, batch_size=args.batch_size,
                                     prompt_tokens=prompt, output_tokens=output, precision=args.precision,
                                     kv_precision=args.kv_precision,
                                     price_usd_per_device_hour=args.price)
        print_json(est) if args.json else print(render_fixed(est))
        return 0
    if args.tokens_per_day is None and args.qps is None:
        raise InputError("demand", "give --tokens-per-day T or --qps Q "
                                   "(or --gpus G --batch-size B for one configuration)")
    plan = serving.serving_capacity(
        arch, profile, tokens_per_day=args.tokens_per_day, qps=args.qps, prompt_tokens=prompt, output_tokens=output,
        p99_ttft_s=args.p99_ttft or serving.DEFAULT_P99_TTFT_S, p99_tpot_s=args.p99_tpot or serving.DEFAULT_P99_TPOT_S,
        precision=args.precision, kv_precision=args.kv_precision,
        peak_factor=args.peak_factor or serving.DEFAULT_PEAK_FACTOR, thinking_tokens=args.thinking_tokens,
        samples=args.samples, single_sample_accuracy=args.single_sample_accuracy, simulate=not args.analytic,
        chunked_prefill=args.chunked_prefill, price_usd_per_device_hour=args.price,
    )
    print_json(plan) if args.json else print(render_plan(plan))
    return 0


def _ms(x: float) -> str:
    return f"{x * 1e3:.1f} ms"


def render_fixed(e) -> str:
    from ..base.units import format_si
    from .common import table

    lines = [f"{e.model.name} ({format_si(e.model.params, 'params')}) on {e.gpus} x {e.hardware.profile}, "
             f"batch {e.batch_size}, {e.prompt_tokens} prompt + {e.output_tokens} output tokens, "
             f"{e.precision} weights / {e.kv_precision} KV"]
    rows = [
        ["TTFT (prefill of the batch)", _ms(e.ttft_s)],
        ["time per output token", _ms(e.tpot_s)],
        ["request latency", f"{e.request_latency_s:.3f} s"],
        ["output tokens/s (per device)", f"{e.throughput_output_tokens_per_s:,.0f} "
                                         f"({e.throughput_output_tokens_per_s_per_device:,.0f})"],
        ["total tokens/s (per device)", f"{e.throughput_total_tokens_per_s:,.0f} "
                                        f"({e.throughput_total_tokens_per_s_per_device:,.0f})"],
        ["decode step", f"{_ms(e.decode_step.total_s)} ({e.decode_step.bound}-bound)"],
        ["weights / KV per device",
         f"{e.memory.weights_bytes / GIB:.1f} / {e.memory.kv_cache_bytes / GIB:.1f} GiB"],
        ["largest batch that fits", str(e.max_batch_size)],
        ["$ per million output tokens", f"{e.cost_usd_per_million_output_tokens:.3f}"],
    ]
    lines.append(table(rows))
    a = e.assumptions
    lines.append(f"  assumptions: {a['compute_dtype']} GEMMs at {a['achievable_matmul_fraction']:g} of peak (profile), "
                 f"HBM at {a['hbm_fraction']:g} of bandwidth (default)")
    lines += [f"  note: {n}" for n in e.notes]
    return "\n".join(lines)


def render_plan(pl) -> str:
    from ..base.units import format_si
    from .common import table

    d = pl.demand
    lines = [f"Serving {pl.model.name} ({format_si(pl.model.params, 'params')}) on {pl.hardware.profile}: "
             f"{format_si(d.tokens_per_day)} tokens/day = {d.mean_qps:.3g} queries/s mean, {d.peak_qps:.3g} at peak "
             f"({d.prompt_tokens:g} prompt + {d.output_tokens:g} output tokens)"]
    rows = [
        ["devices", f"{pl.devices} = {pl.replicas} replicas x {pl.tensor_parallel} (tensor parallel)"],
        ["max QPS per replica", f"{pl.max_qps_per_replica:.3g} (p99 TTFT <= {pl.slo.p99_ttft_s:g} s, "
                                f"p99 TPOT <= {pl.slo.p99_tpot_s:g} s)"],
        ["max batch per replica", str(pl.max_batch_size)],
        ["cost per day / month", f"${pl.cost_usd_per_day:,.0f} / ${pl.cost_usd_per_month:,.0f}"],
        ["$ per million tokens (output)",
         f"{pl.cost_usd_per_million_tokens:.3f} ({pl.cost_usd_per_million_output_tokens:.3f})"],
        ["energy per day", f"{pl.energy_kwh_per_day:,.0f} kWh (PUE {pl.pue:g}), {pl.energy_j_per_token:.3g} J/token"],
        ["mean utilization", f"{pl.mean_utilization:.0%}"],
    ]
    if pl.latency_at_peak:
        lat = pl.latency_at_peak
        rows.append(["at peak, per replica", f"TTFT p50/p99 {_ms(lat.ttft_s.p50)}/{_ms(lat.ttft_s.p99)}, "
                                             f"TPOT p50/p99 {_ms(lat.tpot_s.p50)}/{_ms(lat.tpot_s.p99)}, "
                                             f"queue p99 {_ms(lat.queue_s.p99)}"])
    lines.append(table(rows))
    opt_rows = [[str(o.tensor_parallel), str(o.max_batch_size), f"{o.analytic_max_qps:.3g}",
                 "-" if o.simulated_max_qps is None else f"{o.simulated_max_qps:.3g}",
                 str(o.devices) if o.meets_slo else "-",
                 f"${o.cost_usd_per_day:,.0f}" if o.meets_slo else o.reason] for o in pl.options]
    lines.append("  options:")
    header = ["TP", "max batch", "seq/s (analytic)", "seq/s (sim)", "devices", "$/day"]
    lines.append(table(opt_rows, header, indent="    "))
    t = pl.test_time_compute
    if t:
        lines.append(f"  test-time compute: {t.samples_per_query} samples x ({d.output_tokens:g} + "
                     f"{t.thinking_tokens_per_query:g} thinking) tokens = {t.decode_multiplier:.1f}x decode; "
                     f"{t.devices_without} -> {t.devices_with} devices, +${t.extra_cost_usd_per_day:,.0f}/day"
                     + (f"; pass@{t.samples_per_query} {t.pass_at_k:.3f}" if t.pass_at_k is not None else ""))
    a = pl.assumptions
    lines.append(f"  assumptions: {a['compute_dtype']} GEMMs at {a['achievable_matmul_fraction']:g} of peak (profile), "
                 f"HBM at {a['hbm_fraction']:g} (default), {a['scheduler']}; capacity by {pl.capacity_method}")
    lines += [f"  note: {n}" for n in pl.notes]
    return "\n".join(lines)
