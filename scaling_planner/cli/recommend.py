"""``planner recommend``: from a target loss, a budget or a fixed cluster to the model to train and
what training it costs on real GPUs (the law picks N and D, the training simulator the layout)."""

from __future__ import annotations

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
    from ..render.plan import render
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
