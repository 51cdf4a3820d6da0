"""``planner simulate``: the best parallel layout to train a model, its time, cost and energy.

Imports only argparse at the top; numpy and the simulator load inside ``run``.
"""

from __future__ import annotations

import argparse

from .common import add_efficiency_argument, positive, positive_int, print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="training estimate: best layout, step time, MFU, wall-clock, GPU-hours, cost, energy",
        description="Search every TP x PP x DP (x EP) x micro-batch x recompute x ZeRO layout of a model on G "
        "devices, report the fastest one that fits with its time and memory breakdowns, the next best "
        "layouts and why the others were rejected. Model FLOPs use Megatron's count.",
    )
    parser.add_argument("--params", type=positive("params"), help="parameters N (70B, 7e9); shape derived from N")
    parser.add_argument("--tokens", type=positive("tokens"), required=True, help="training tokens D (2T, 1.4e12)")
    parser.add_argument("--gpu", required=True, metavar="PROFILE", help="hardware profile, e.g. h100-sxm")
    parser.add_argument("--gpus", type=positive_int("gpus"), required=True, help="number of devices G")
    parser.add_argument("--arch", metavar="NAME", help="a catalog architecture (llama3-70b, gpt3-175b, ...)")
    parser.add_argument("--experts", type=positive_int("experts"), metavar="X",
                        help="an MoE with X routed experts per layer (with --params, the total parameters)")
    parser.add_argument("--top-k", type=positive_int("top-k"), metavar="K",
                        help="experts active per token (default 2; needs --experts)")
    parser.add_argument("--active-params", type=positive("active-params"), metavar="N",
                        help="parameters active per token (needs --experts); sets the backbone and expert width")
    parser.add_argument("--shared-experts", type=positive_int("shared-experts", allow_zero=True), metavar="S",
                        default=0, help="always-active shared experts per layer (DeepSeekMoE, Llama 4; default 0)")
    add_efficiency_argument(parser)
    parser.add_argument("--seq-len", type=positive_int("seq-len"), help="sequence length (default 4096 or the arch's)")
    parser.add_argument("--global-batch", type=positive_int("global-batch"),
                        help="sequences per step (default ~max(4M, 1024 x G) tokens)")
    parser.add_argument("--precision", choices=("bf16", "fp8", "fp32"), default=None,
                        help="training precision (default: the profile's: bf16, fp32 on a CPU)")
    parser.add_argument("--price", type=positive("price", allow_dollar=True), metavar="USD_PER_DEVICE_HOUR",
                        help="price per device-hour (default: the profile's dated price)")
    parser.add_argument("--measured-mfu", type=positive("measured-mfu"), metavar="FRACTION",
                        help="a measured MFU (0-1) that replaces the model's for the chosen layout")
    parser.add_argument("--measured-tflops", type=positive("measured-tflops"), metavar="TFLOPS",
                        help="a measured large-GEMM TFLOP/s per device (bf16; fp32 for an fp32 run) that replaces "
                             "the profile's prior")
    parser.add_argument("--calibrated", action="store_true",
                        help="use the measured MFU (training records, same precision) and matmul FLOP/s (probe "
                             "records: bf16; fp32 for an fp32 run) of the profile in the calibration history: the "
                             "median of the newest (up to 5, within 30 days of the newest); an error when none is "
                             "usable; explicit --measured-* win")
    parser.add_argument("--calibration-dir", metavar="DIR",
                        help="calibration history directory for --calibrated (default "
                             "$SCALING_PLANNER_CALIBRATION_DIR, else ~/.scaling-planner/calibration)")
    parser.add_argument("--dp-overlap", type=float, default=None, metavar="FRACTION",
                        help="share of the DP gradient reduction hidden behind backward (default 0.8)")
    parser.add_argument("--no-flash-attention", action="store_true", help="model an unfused attention core")
    parser.add_argument("--pipeline-engine", choices=("megatron", "deepspeed"), default="megatron",
                        help="pipeline runtime: megatron (1F1B, optionally interleaved, fused p2p and gradient "
                             "accumulation; default) or deepspeed (DeepSpeed's PipelineEngine: plain 1F1B, blocking "
                             "p2p, whole gradients between stages, no overlap of the DP reduction)")
    parser.add_argument("--pue", type=positive("pue"), help="data-centre PUE (default 1.2, BLOOM's Jean Zay)")
    parser.add_argument("--grid-co2", type=positive("grid-co2"), metavar="KG_PER_KWH",
                        help="grid carbon intensity in kg CO2 per kWh (default 0.429, US average)")
    parser.add_argument("--interruptions-per-gpu-hour", type=positive("interruptions-per-gpu-hour"), metavar="RATE",
                        help="job interruptions per device-hour (default 1.97e-5, Llama 3 405B)")
    parser.add_argument("--checkpoint-write-gbps", type=positive("checkpoint-write-gbps"), metavar="GB_PER_S",
                        help="aggregate checkpoint write bandwidth in GB/s (default 63, BLOOM)")
    parser.add_argument("--top", type=positive_int("top"), default=5, help="how many runner-up layouts to show")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..base.errors import InputError
    from ..base.units import TERA
    from ..hardware.profiles import get_profile
    from ..simulate.architecture import get_arch, moe_shape_for_params, shape_for_params
    from ..simulate.training.estimate import simulate_training
    from ..simulate.training.search import DEFAULT_DP_OVERLAP

    profile = get_profile(args.gpu)
    moe = args.experts is not None
    if not moe and (args.top_k is not None or args.active_params is not None or args.shared_experts):
        flag = "top-k" if args.top_k is not None else "active-params" if args.active_params is not None \
            else "shared-experts"
        raise InputError(flag, "describes an MoE: give --experts X too")
    if args.arch:
        if moe:
            raise InputError("experts", "give an MoE shape by --experts with --params, or a catalog --arch, not both")
        arch = get_arch(args.arch)
        if args.seq_len:
            arch = arch.with_seq_len(args.seq_len)
        if args.params is not None and abs(args.params / arch.params() - 1) > 0.1:
            raise InputError("params", f"{args.params:.3g} disagrees with {arch.name} ({arch.params():.3g}); "
                                       "give one of --params or --arch")
    elif args.params is not None:
        kw = {"seq_len": args.seq_len} if args.seq_len else {}
        if moe:
            arch = moe_shape_for_params(args.params, experts=args.experts, top_k=args.top_k or 2,
                                        active_params=args.active_params, shared_experts=args.shared_experts, **kw)
        else:
            arch = shape_for_params(args.params, **kw)
    else:
        raise InputError("params", "give --params N or --arch NAME")
    if args.global_batch is not None and args.global_batch * arch.seq_len > args.tokens:
        raise InputError("global-batch", f"{args.global_batch:,} sequences of {arch.seq_len:,} tokens is "
                                         f"{args.global_batch * arch.seq_len:.3g} tokens a step, more than the "
                                         f"{args.tokens:.3g} training tokens (less than one step); lower "
                                         "--global-batch or raise --tokens")
    if args.measured_mfu is not None and args.measured_mfu > 1:
        raise InputError("measured-mfu", f"must be a fraction in (0, 1], got {args.measured_mfu:g}")
    overlap = DEFAULT_DP_OVERLAP if args.dp_overlap is None else args.dp_overlap
    if not 0 <= overlap <= 1:
        raise InputError("dp-overlap", f"must be in [0, 1], got {overlap:g}")
    if args.calibration_dir is not None and not args.calibrated:
        raise InputError("calibration-dir", "only read with --calibrated")
    if args.precision is None:
        args.precision = profile.training_precision
    mfu = args.measured_mfu
    matmul = None if args.measured_tflops is None else args.measured_tflops * TERA
    if matmul is not None:
        from ..simulate.efficiency import check_measured_matmul, measured_dtype

        check_measured_matmul(profile, matmul, "measured-tflops", measured_dtype(args.precision))
    measured = {"measured_mfu": mfu, "measured_matmul_flops_per_s": matmul}
    use = None
    if args.calibrated:
        from ..calibration.choice import resolve

        # InputError (calibration / calibration_dir) when the history has no usable record: --calibrated
        # never plans silently with the defaults
        use = resolve("latest", args.calibration_dir, profile.name, args.precision, explicit_mfu=mfu,
                      explicit_matmul_flops_per_s=matmul)
        measured = use.simulator_inputs(mfu, matmul)
        if mfu is None and use.measured_source() is not None:
            measured["measured_source"] = use.measured_source()
    result = simulate_training(
        arch, args.tokens, profile, args.gpus, params=args.params, global_batch=args.global_batch,
        precision=args.precision, price_usd_per_device_hour=args.price, **measured,
        dp_overlap=overlap, flash_attention=not args.no_flash_attention, top=args.top,
        pipeline_engine=args.pipeline_engine, efficiency=args.efficiency,
        energy_options={k: v for k, v in (("pue", args.pue), ("grid_kg_co2_per_kwh", args.grid_co2))
                        if v is not None},
        reliability_options={k: v for k, v in (
            ("interruptions_per_device_hour", args.interruptions_per_gpu_hour),
            ("storage_write_bytes_per_s", None if args.checkpoint_write_gbps is None
             else args.checkpoint_write_gbps * 1e9)) if v is not None},
    )
    if args.json:
        doc = result.model_dump(mode="json")
        if use is not None:
            doc["calibration"] = use.model_dump(mode="json")
        print_json(doc)
        return 0
    from ..render.simulation import render

    print(render(result))
    if use is not None:
        for line in use.plan_notes():
            print(f"  {line}")
    return 0
