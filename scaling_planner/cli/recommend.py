"""``planner recommend``: from a target loss, a budget or a fixed cluster to the model to train and
what training it costs on real GPUs (the law picks N and D, the training simulator the layout)."""

from __future__ import annotations

import math

from .common import add_efficiency_argument, positive, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "recommend",
        help="the model, GPUs, time and cost for a target loss, a budget or a fixed cluster",
        description="Plan a training run: the compute-optimal model (Hoffmann 2022 Eq. 4) for a target loss, "
        "a FLOP / dollar / GPU-hour budget, or a fixed cluster and deadline, simulated on real GPUs "
        "(layout, MFU, wall-clock, GPU-hours, cost, energy), with alternatives and the law's uncertainty.",
    )
    add_plan_arguments(p)
    p.add_argument("--explain", action="store_true", help="print the arithmetic with the numbers put in")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run, _recommend_parser=p)


def add_plan_arguments(p) -> None:
    """The objective, cluster, law and mode flags of a plan (shared by ``recommend`` and ``plot``)."""
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--target-loss", type=positive("target_loss"), metavar="L",
                      help="the cheapest model that reaches this loss (nats/token)")
    goal.add_argument("--budget-flops", type=positive("budget_flops"), metavar="C",
                      help="the lowest loss this many training FLOPs buy (1e22, 5.76e23)")
    goal.add_argument("--budget-usd", type=positive("budget_usd", allow_dollar=True), metavar="X",
                      help="the lowest loss this many dollars buy ($2M, 2e6)")
    goal.add_argument("--gpu-hours", type=positive("gpu_hours"), metavar="H",
                      help="the lowest loss this many GPU-hours buy (1e6, 500k)")
    p.add_argument("--gpus", type=positive_int("gpus"), metavar="G",
                   help="a fixed GPU count (default: the smallest power-of-two multiple of a node that finishes "
                        "within the deadline, 90 days unless --deadline-days); with --deadline-days and no other "
                        "objective: the best model G GPUs train in time")
    p.add_argument("--deadline-days", type=positive("deadline_days"), metavar="T",
                   help="wall-clock limit in days (a fixed cluster's objective, or a constraint)")
    p.add_argument("--gpu", metavar="PROFILE", default="h100-sxm", help="hardware profile (default h100-sxm)")
    p.add_argument("--price", type=positive("price", allow_dollar=True), metavar="USD_PER_GPU_HOUR",
                   help="price per GPU-hour (default: the profile's dated price)")
    p.add_argument("--mfu", "--measured-mfu", dest="mfu", type=positive("mfu"), metavar="FRACTION",
                   help="a measured MFU (0-1) of your own stack replacing the efficiency prior (provenance "
                        "'measured'; the band narrows to the step model's transfer error)")
    add_efficiency_argument(p)
    p.add_argument("--inference-tokens", type=positive("inference_tokens"), metavar="T",
                   help="lifetime tokens served: adds the inference-optimal model (Sardana 2024) and lifetime cost")
    p.add_argument("--inference-mfu", type=positive("inference_mfu"), metavar="FRACTION",
                   help="MFU assumed for serving with --inference-tokens (default 0.25)")
    p.add_argument("--tokens-per-day", type=positive("tokens_per_day"), metavar="T",
                   help="serving demand, prompt + answer tokens per day (as planner serve): size the serving fleet "
                        "of the plan and of each alternative; lifetime cost = training + serving "
                        "(needs --serving-days)")
    p.add_argument("--serving-days", type=positive("serving_days"), metavar="S",
                   help="how many days the model serves --tokens-per-day")
    p.add_argument("--prompt-tokens", type=positive_int("prompt_tokens"), metavar="P",
                   help="prompt tokens per query of the serving demand (default 1024)")
    p.add_argument("--output-tokens", type=positive_int("output_tokens"), metavar="O",
                   help="answer tokens per query of the serving demand (default 256)")
    p.add_argument("--p99-ttft", type=positive("p99_ttft"), metavar="S",
                   help="serving p99 time-to-first-token SLO in seconds (default 2)")
    p.add_argument("--p99-tpot", type=positive("p99_tpot"), metavar="S",
                   help="serving p99 time-per-output-token SLO in seconds (default 0.2)")
    p.add_argument("--peak-factor", type=positive("peak_factor"), metavar="X",
                   help="peak / mean serving demand the fleet is sized for (default 2)")
    p.add_argument("--unique-tokens", type=positive("unique_tokens"), metavar="U",
                   help="unique training tokens available: allocate under repeated data (Muennighoff 2023) and "
                        "report epochs, effective data and the loss under repetition")
    p.add_argument("--experts", type=positive_int("experts"), metavar="X",
                   help="routed experts per layer: add the compute-optimal fine-grained MoE at the plan's compute "
                        "(Krajewski 2024): total vs active parameters, tokens, loss vs dense, simulated training")
    p.add_argument("--top-k", type=positive_int("top_k"), metavar="K",
                   help="experts active per token (must divide --experts; default: chosen by the law)")
    p.add_argument("--law", metavar="NAME", help="scaling law preset (default besiroglu2024; see planner law list)")
    p.add_argument("--law-file", metavar="FIT.json", help="a law fitted by planner fit --out")
    p.add_argument("--calibrated", action="store_true",
                   help="plan with the newest measured MFU (training record) and bf16 matmul FLOP/s (probe record) "
                        "of the GPU profile in the calibration history; the plan names the records used")
    p.add_argument("--calibration-dir", metavar="DIR",
                   help="calibration history directory for --calibrated (default $SCALING_PLANNER_CALIBRATION_DIR, "
                        "else ~/.scaling-planner/calibration)")


def usage_error(args, message: str):
    """A usage error: one line on stderr, exit 2 (argparse's SystemExit), like a missing flag."""
    parser = getattr(args, "_recommend_parser", None)
    if parser is None:
        from ..base.errors import InputError

        raise InputError("usage", message)
    parser.error(message)


def check_plan_arguments(args) -> None:
    """Usage errors argparse cannot see (one line, exit 2)."""
    if args.target_loss is None and args.budget_flops is None and args.budget_usd is None \
            and args.gpu_hours is None and not (args.gpus is not None and args.deadline_days is not None):
        extra = " (--gpus alone is not an objective)" if args.gpus is not None else \
            " (--deadline-days alone needs --gpus G)" if args.deadline_days is not None else ""
        usage_error(args, "give one of --target-loss, --budget-flops, --budget-usd, --gpu-hours, "
                          f"or a fixed cluster --gpus G --deadline-days T{extra}")
    if args.mfu is not None and args.mfu > 1:
        usage_error(args, f"--mfu: must be a fraction in (0, 1], got {args.mfu:g}")
    if args.inference_mfu is not None and args.inference_mfu > 1:
        usage_error(args, f"--inference-mfu: must be a fraction in (0, 1], got {args.inference_mfu:g}")
    if args.inference_mfu is not None and args.inference_tokens is None:
        usage_error(args, "--inference-mfu: needs --inference-tokens")
    if (args.tokens_per_day is None) != (args.serving_days is None):
        usage_error(args, "--tokens-per-day and --serving-days: give both (a demand and how many days it lasts)")
    if args.tokens_per_day is None and any(getattr(args, k) is not None for k in _SERVING_OPTIONS.values()):
        usage_error(args, "--prompt-tokens/--output-tokens/--p99-ttft/--p99-tpot/--peak-factor: need "
                          "--tokens-per-day and --serving-days")
    if args.tokens_per_day is not None and args.inference_tokens is not None:
        usage_error(args, "--inference-tokens: give it or --tokens-per-day/--serving-days, not both")
    if args.peak_factor is not None and args.peak_factor < 1:
        usage_error(args, f"--peak-factor: must be >= 1, got {args.peak_factor:g}")
    if args.top_k is not None and args.experts is None:
        usage_error(args, "--top-k: needs --experts X")
    if args.calibration_dir is not None and not args.calibrated:
        usage_error(args, "--calibration-dir: only read with --calibrated")


_SERVING_OPTIONS = {"prompt_tokens": "prompt_tokens", "output_tokens": "output_tokens", "p99_ttft_s": "p99_ttft",
                    "p99_tpot_s": "p99_tpot", "peak_factor": "peak_factor"}


def plan_from_arguments(args):
    """The Recommendation the plan flags ask for."""
    from ..laws.presets import resolve_law
    from ..planning.recommend import recommend

    check_plan_arguments(args)
    law = resolve_law(args.law, args.law_file)
    return recommend(law, target_loss=args.target_loss, budget_flops=args.budget_flops, budget_usd=args.budget_usd,
                     budget_gpu_hours=args.gpu_hours, gpus=args.gpus, deadline_days=args.deadline_days,
                     gpu=args.gpu, price_usd_per_hour=args.price, mfu=args.mfu,
                     inference_tokens=args.inference_tokens, unique_tokens=args.unique_tokens,
                     **({"inference_mfu": args.inference_mfu} if args.inference_mfu is not None else {}),
                     experts=args.experts, top_k=args.top_k, tokens_per_day=args.tokens_per_day,
                     serving_days=args.serving_days,
                     serving_options={k: getattr(args, a) for k, a in _SERVING_OPTIONS.items()
                                      if getattr(args, a) is not None},
                     calibration="latest" if args.calibrated else None, calibration_dir=args.calibration_dir,
                     efficiency=args.efficiency)


def run(args) -> int:
    from ..planning.recommend import explain_lines
    from .common import print_json

    rec = plan_from_arguments(args)
    if args.json:
        print_json(rec)
        return 0
    print(render(rec))
    if args.explain:
        print("\nThe arithmetic")
        print("\n".join(f"  {line}" for line in explain_lines(rec)))
    return 0


def _goal(rec) -> str:
    from ..base.units import format_usd

    if rec.objective == "target_loss":
        return f"target loss {rec.target_loss:g}"
    if rec.objective == "budget_flops":
        return f"budget {rec.budget_flops:.3g} FLOPs"
    if rec.objective == "budget_usd":
        return f"budget {format_usd(rec.budget_usd)}"
    if rec.objective == "budget_gpu_hours":
        return f"budget {rec.budget_gpu_hours:.3g} GPU-hours"
    return f"{rec.training.gpus} GPUs within {rec.deadline_days:g} days"


def _lay(lay: dict) -> str:
    ep = f" EP{lay['ep']}" if lay.get("ep", 1) > 1 else ""
    il = f" v{lay['interleave']}" if lay["interleave"] > 1 else ""
    return (f"TP{lay['tp']} PP{lay['pp']}{il} DP{lay['dp']}{ep} mb{lay['micro_batch']}x{lay['micro_batches']} "
            f"{lay['recompute']} ZeRO-{lay['zero_stage']}")


def _short_provenance(text: str) -> str:
    """'measured: training measurement <id> of ...' -> 'measured, calibration <id>' for the table cell."""
    if text.startswith("measured: ") or text.startswith("simulated with the measured matmul"):
        rec_id = text.split(" measurement ", 1)[1].split()[0]
        return ("measured, calibration " if text.startswith("measured") else "measured matmul, calibration ") + rec_id
    return "simulated from the profile" if text == "profile default" else text


def render(rec) -> str:
    from ..base.units import format_si, format_usd
    from .common import table

    m, law = rec.model, rec.law

    def span(b, fmt) -> str:
        """'P10 .. P90' of a band; a percentile among draws that cannot reach the target reads 'unreachable'."""
        if b is None:
            return ""
        return " .. ".join(fmt(x) if math.isfinite(x) else "unreachable" for x in (b.p10, b.p90))

    lines = [f"Compute-optimal plan for {_goal(rec)}, law {law.name} "
             f"(E={law.E:.4g}, A={law.A:.4g}, B={law.B:.4g}, alpha={law.alpha:.4g}, beta={law.beta:.4g})"]
    u = rec.uncertainty
    rows = [
        ["model size N", format_si(m.params, "params"),
         span(u.optimal_params, format_si) if u else ""],
        ["training tokens D", format_si(m.tokens, "tokens"),
         span(u.optimal_tokens, format_si) if u else ""],
        ["tokens per parameter", f"{m.tokens_per_param:.1f}", ""],
        ["training compute C = 6ND", f"{rec.compute_flops:.3g} FLOPs",
         span(u.compute_flops, lambda x: f"{x:.3g}") if u else ""],
        ["predicted loss", f"{m.loss:.4f}", span(m.loss_band, lambda x: f"{x:.4f}")],
        [f"N within {100 * m.near_optimal_rel_tol:g}% of min loss",
         f"{format_si(m.params_near_optimal_low)} .. {format_si(m.params_near_optimal_high)}", ""],
    ]
    t = rec.training
    if t is not None:
        def tband(b, p10, p90, fmt):
            # the law and efficiency spread when the law has draws, else the efficiency spread alone
            return span(b, fmt) if b is not None else f"{fmt(p10)} .. {fmt(p90)}"

        rows += [
            ["GPUs", f"{t.gpus} x {t.gpu}", ""],
            ["layout", _lay(t.layout), ""],
            ["MFU (model FLOPs)", f"{t.mfu:.1%} end to end ({_short_provenance(t.mfu_provenance)})",
             f"tuned stack {t.mfu_tuned:.1%}"],
            ["wall-clock", f"{t.wall_clock_days:.1f} days",
             tband(u.wall_clock_days if u else None, t.wall_clock_days_p10, t.wall_clock_days_p90,
                   lambda x: f"{x:.1f}")],
            ["GPU-hours", format_si(t.gpu_hours),
             tband(u.gpu_hours if u else None, t.gpu_hours_p10, t.gpu_hours_p90, format_si)],
            ["cost", f"{format_usd(t.cost_usd)} at ${t.price_usd_per_gpu_hour:.2f}/GPU-h",
             tband(u.cost_usd if u else None, t.cost_usd_p10, t.cost_usd_p90, format_usd)],
            ["tuned stack", f"{t.wall_clock_days_tuned:.1f} days, {format_si(t.gpu_hours_tuned)} "
                                           f"GPU-h, {format_usd(t.cost_usd_tuned)}",
             "a tuned Megatron-class stack, failures included"],
            ["energy", f"{format_si(t.energy_kwh)} kWh, {format_si(t.co2_kg)} kg CO2", ""],
        ]
    lines.append(table(rows, ["", "plan (P50)" if t is not None else "plan",
                              "P10 .. P90 (law and efficiency spread)" if u else
                              ("P10 .. P90 (efficiency spread)" if t is not None else "")]))
    if t is not None:
        lines.append(f"  GPU count: {t.gpus_source}")
        lines.append(f"  efficiency: {t.efficiency_source}")
    if u and u.probability_target_met is not None:
        lines.append(f"\n  Probability that N, D above reach the target under the law's spread: "
                     f"{100 * u.probability_target_met:.0f}% ({u.draws} bootstrap draws); that the target is "
                     f"reached within the planned compute: {100 * u.probability_within_budget:.0f}%")
    if u:
        for label, value in (("budget", u.probability_within_budget_usd),
                             ("GPU-hour budget", u.probability_within_gpu_hours),
                             ("deadline", u.probability_within_deadline)):
            if value is not None:
                lines.append(f"  Probability of staying within the {label}: {100 * value:.0f}%")
        if u.scaling_note:
            lines.append(f"  ({u.scaling_note})")
    if rec.alternatives:
        lifetime = rec.inference_tokens is not None
        served = rec.serving is not None or any(a.serving_cost_usd is not None for a in rec.alternatives)
        plan_loss = rec.alternatives[0].loss
        losses = any(abs(a.loss - plan_loss) > 1e-6 for a in rec.alternatives if a.tokens is not None)
        head = ["alternative", "N", "D", "D/N"] + (["loss"] if losses else []) + ["C FLOPs", "GPU-h", "cost"] + \
            (["serve GPUs", "serving $"] if served else []) + (["lifetime $"] if lifetime else [])
        body = []
        for a in rec.alternatives:
            if a.tokens is None:
                body.append([a.name, format_si(a.params), "-", "-"] + (["-"] if losses else []) + ["-", "-", a.note]
                            + (["", ""] if served else []) + ([""] if lifetime else []))
                continue
            row = [a.name, format_si(a.params), format_si(a.tokens), f"{a.tokens_per_param:.0f}"] + \
                ([f"{a.loss:.4f}"] if losses else []) + [
                f"{a.compute_flops:.3g}", format_si(a.gpu_hours) if a.gpu_hours is not None else "-",
                format_usd(a.cost_usd) if a.cost_usd is not None else (a.note or "-")]
            if served:
                row += [str(a.serving_devices) if a.serving_devices is not None else "-",
                        format_usd(a.serving_cost_usd) if a.serving_cost_usd is not None else "-"]
            if lifetime:
                row.append(format_usd(a.lifetime_cost_usd) if a.lifetime_cost_usd is not None else "-")
            body.append(row)
        heading = f"\nAlternatives at loss {plan_loss:.4f}" if not losses else "\nAlternatives (each reaches its loss)"
        lines.append(heading + (f" on the same {t.gpus} GPUs" if t is not None else ""))
        lines.append(table(body, head))
    if rec.serving is not None:
        lines.append(_render_serving(rec.serving))
    if rec.data_constrained is not None:
        lines.append(_render_data_constrained(rec.data_constrained))
    if rec.moe is not None:
        lines.append(_render_moe(rec.moe))
    for note in rec.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _render_serving(v) -> str:
    from ..base.units import format_si, format_usd
    from .common import table

    rows = [
        ["demand", f"{format_si(v.tokens_per_day)} tokens/day for {v.serving_days:g} days "
                   f"({format_si(v.lifetime_tokens)} tokens)",
         f"{v.prompt_tokens:g} prompt + {v.output_tokens:g} answer tokens a query, peak x{v.peak_factor:g}"],
        ["fleet", f"{v.replicas} replicas x TP{v.tensor_parallel} = {v.devices} x {v.gpu}",
         f"p99 TTFT <= {v.p99_ttft_s:g} s, TPOT <= {v.p99_tpot_s:g} s"],
        ["cost per million tokens", f"${v.cost_usd_per_million_tokens:.3f}",
         f"{format_usd(v.cost_usd_per_day)} a day; effective MFU {v.effective_mfu:.1%}"],
        ["serving cost", format_usd(v.serving_cost_usd), f"{format_si(v.energy_kwh)} kWh"],
    ]
    if v.lifetime_cost_usd is not None:
        rows.append(["lifetime cost", format_usd(v.lifetime_cost_usd),
                     f"training {format_usd(v.training_cost_usd)} + serving {format_usd(v.serving_cost_usd)}"])
    return f"\nServing the plan's model ({v.capacity_method})\n" + table(rows)


def _render_moe(m) -> str:
    from ..base.units import format_si, format_usd
    from .common import table

    rows = [
        ["experts, top-k", f"{m.experts}, {m.top_k}" + (" (top-k chosen by the law)" if m.granularity_chosen else ""),
         f"E = {m.expansion_rate:g}, G = {m.granularity:g}"],
        ["total parameters (non-embedding)", format_si(m.params_non_embedding), "all experts"],
        ["active parameters (non-embedding)", format_si(m.active_params_non_embedding), "per token"],
        ["training tokens", format_si(m.tokens), f"{m.tokens / m.active_params_non_embedding:.1f} per active param"],
        ["loss (Krajewski)", f"{m.loss:.4f}", f"dense at the same compute {m.dense_loss:.4f}"],
    ]
    if m.compute_multiplier is not None:
        rows.append(["dense compute for the same loss", f"{m.dense_compute_for_same_loss:.3g} FLOPs",
                     f"{m.compute_multiplier:.2f}x the plan's"])
    t = m.training
    if t is not None:
        rows += [["simulated shape", t.shape, f"{format_si(t.params)} params, {format_si(t.active_params)} active "
                                                "(embeddings included)"],
                 ["simulated training", f"{t.gpus} x {_lay(t.layout)}", f"MFU {t.mfu:.1%}"],
                 ["wall-clock, GPU-hours, cost", f"{t.wall_clock_days:.1f} days, {format_si(t.gpu_hours)}, "
                                                 f"{format_usd(t.cost_usd)}", ""]]
    else:
        rows.append(["simulated training", "not simulated (see notes)", ""])
    head = f"\nMixture of experts (Krajewski 2024, at the plan's {m.compute_flops:.3g} FLOPs)"
    return head + "\n" + table(rows)


def _render_data_constrained(dc) -> str:
    from ..base.units import format_si
    from .common import table

    e = dc.next_epoch
    rows = [
        ["epochs D/U", f"{dc.epochs:.2f}", f"{dc.chinchilla_epochs:.2f}"],
        ["N, D", f"{format_si(dc.params)}, {format_si(dc.tokens)}",
         f"{format_si(dc.chinchilla_params)}, {format_si(dc.chinchilla_tokens)}"],
        ["loss with repeated data", f"{dc.loss:.4f}", f"{dc.chinchilla_loss:.4f}"],
        ["loss if all tokens were fresh", f"{dc.unlimited_data_loss:.4f}", f"{dc.chinchilla_unlimited_data_loss:.4f}"],
        ["effective data D'", format_si(dc.effective_tokens), ""],
        ["effective parameters N'", format_si(dc.effective_params), ""],
        ["worth of the next repeated token", f"{dc.repeated_token_value:.3f} of a fresh one", ""],
        ["one more epoch", f"loss -{e.loss_decrease:.4f} for +{e.extra_flops:.3g} FLOPs", ""],
    ]
    head = f"\nData-constrained (Muennighoff 2023): {format_si(dc.unique_tokens)} unique tokens" + \
        ("" if dc.binding else " (the cap does not bind)") + \
        f"; R_D*={dc.R_D_star:.4g}, R_N*={dc.R_N_star:.4g} ({dc.decay_source.split(' (')[0]}); no compute goes " \
        f"below loss " \
        f"{dc.loss_floor:.4f}"
    return head + "\n" + table(rows, ["", "plan (optimal under the cap)", "Chinchilla allocation, same C"])
