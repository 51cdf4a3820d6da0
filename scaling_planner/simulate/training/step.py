"""Step time of one training iteration for arrays of parallel layouts (vectorised with numpy).

Per micro-batch and pipeline stage, every matrix product of a transformer layer is timed with the
GEMM curve of ``efficiency.py`` (its size on one tensor-parallel rank), elementwise kernels as HBM
traffic, tensor-parallel collectives on the tier the TP group sits on (NVLink inside a node),
MoE all-to-all, pipeline point-to-point; then

  pipeline = (m + (p-1)/v) x t_microbatch                (1F1B; interleaved with v chunks,
                                                          Narayanan et al. 2021 §2.2)
  step     = pipeline + exposed DP gradient reduction + optimizer step + embedding sync.

Recompute (Korthikanti et al. 2022): ``full`` re-runs each layer's forward (GEMMs, elementwise and
TP collectives) before its backward; ``selective`` re-runs only the attention core (QK^T, softmax,
dropout, AV). Model FLOPs exclude recompute (MFU), hardware FLOPs include it (HFU).

Pipeline engine (``pipeline_engine``): ``"megatron"`` (default) is Megatron-LM's 1F1B, optionally
interleaved, whose send/recv pairs are fused and whose gradient accumulation is fused into the
weight-gradient GEMM (Megatron-LM ``--gradient-accumulation-fusion``, on by default).
``"deepspeed"`` is DeepSpeed's ``PipelineEngine`` as of v0.5.3 (September 2021, the engine of
Megatron-DeepSpeed that trained MT-NLG), read from its source (microsoft/DeepSpeed
``deepspeed/runtime/pipe/{engine,p2p,schedule}.py``):

* ``TrainSchedule`` is plain 1F1B, no interleaving (``v`` must be 1); simulated with blocking
  rendezvous sends it costs the same (m + p - 1) micro-batch times as Megatron's schedule;
* every send/recv is a separate blocking call (``p2p.send`` forces ``async_op = False``): four
  transfers per micro-batch per stage on the critical path (receive and send the activation,
  receive and send its gradient) instead of two fused exchanges;
* activations are split over the TP group before the send and all-gathered (NVLink) after it
  (``is_pipe_partitioned``), but gradients travel whole, ``b s h`` per GPU over its own NIC
  (``is_grad_partitioned = False`` up to v0.5.3; commit e2fdd254e of 2021-09-29 split them too);
* micro-batch gradients are summed in ``param.grad`` by autograd (read new + read + write the
  16-bit gradient, ``GRAD_ACCUMULATE_BYTES`` per parameter) after every backward;
* ZeRO stages 2 and 3 are refused with pipeline parallelism (an assertion in the engine), and the
  gradient reduction runs after the pipeline flush (``ReduceGrads`` in the last step).

The layout search (:mod:`.search`) calls ``step_time`` once on the whole candidate grid.
"""

from __future__ import annotations

import numpy as np

from ...base.errors import InputError
from .. import efficiency as eff
from ..architecture import Architecture
from ..memory import RECOMPUTE_FULL, RECOMPUTE_SELECTIVE, stage_param_counts

ACT_BYTES = 2.0  # 16-bit activations on the wire and in HBM
GRAD_REDUCE_BYTES = 4.0  # Megatron reduces fp32 main gradients
PARAM_GATHER_BYTES = 2.0
# HBM bytes per parameter for one Adam step: read fp32 grad, master, m, v (16), write master, m, v (12),
# write bf16 weight (2)
OPTIMIZER_STEP_BYTES = 30.0
# bytes per element moved by the elementwise kernels of a layer's forward (backward moves twice that):
TOKEN_OPS_BYTES = 22.0  # 2 x layernorm (r2+w2) + 2 x bias-dropout-residual (r2+r2+w2+mask1)
CORE_OPS_BYTES = 9.0  # scale-mask-softmax (r2+w2) + dropout (r2+w2+mask1) on the a x s x s scores
TOKEN_KERNELS, CORE_KERNELS = 6.0, 2.0
PIPELINE_ENGINES = ("megatron", "deepspeed")
# unfused gradient accumulation (autograd ``param.grad += g`` in 16 bits): read g, read and write grad
GRAD_ACCUMULATE_BYTES = 6.0
PARAM_TENSORS_PER_LAYER = 12.0  # GPT layer: 2 layernorms + 4 linear layers, weight and bias each
# MoE token dispatch per routed copy of a token's hidden state, forward (backward moves twice that):
# the permutation reads the token (2) and writes its copy (2), the combination reads the expert's
# output (2) and accumulates it into the token (read 2 + write 2) -- 16-bit activations.
MOE_DISPATCH_BYTES_PER_COPY = 10.0


def width(rates: eff.DeviceRates) -> float:
    """How many 16-bit elements' bytes one element of the run's activations and weights takes: 1 in
    bf16 and fp8 mixed precision, 2 in fp32 training (the byte counts of this module are 16-bit ones)."""
    return rates.element_bytes / 2.0


def layer_times(arch: Architecture, rates: eff.DeviceRates, s, b, t, e, sp, flash_attention=False):
    """Forward-pass pieces of one layer for one micro-batch on one GPU, in seconds.

    Returns a dict of arrays: ``gemm`` (all linear layers), ``core`` (attention core GEMMs),
    ``elementwise`` (token-wise kernels), ``core_elementwise`` (softmax/dropout on the scores),
    ``tp`` (tensor-parallel collectives), ``a2a`` (MoE all-to-all); and the same layer's forward
    FLOPs on this GPU (``flops``, ``core_flops``).
    """
    s, b, t, e = (np.asarray(x, dtype=float) for x in (s, b, t, e))
    sp = np.asarray(sp, dtype=bool)
    T = s * b
    h = arch.d_model
    w = width(rates)  # the byte counts below are for 16-bit elements
    # attention projections: everything but the output projection as one GEMM of equal FLOPs
    attn_in = arch.attention_params_per_layer() - arch.v_dim * h
    gemm = eff.gemm_time_s(rates, T, attn_in / h / t, h) + eff.gemm_time_s(rates, T, h, arch.v_dim / t)
    flops = 2.0 * T * arch.attention_params_per_layer() / t
    # attention core: QK^T and AV, batched over b x heads/t
    heads = arch.n_heads / t
    if flash_attention:
        core = eff.gemm_time_s(rates, s, s, arch.qk_head_dim + (arch.v_dim / arch.n_heads), count=b * heads,
                               relative=eff.FLASH_ATTENTION_RELATIVE, linear=False)
        core_ew = np.zeros_like(core)
    else:
        core = (eff.gemm_time_s(rates, s, s, arch.qk_head_dim, count=b * heads, linear=False)
                + eff.gemm_time_s(rates, s, arch.v_dim / arch.n_heads, s, count=b * heads, linear=False))
        core_ew = eff.memory_time_s(rates, w * CORE_OPS_BYTES * b * heads * s * s, CORE_KERNELS)
    core_flops = 2.0 * b * heads * s * s * (arch.qk_head_dim + arch.v_dim / arch.n_heads)
    # FFN: dense layers and MoE layers, weighted by their share of the layers
    m_up = arch.ffn_matrices - 1
    dense = (eff.gemm_time_s(rates, T, m_up * arch.ffn_hidden / t, h)
             + eff.gemm_time_s(rates, T, h, arch.ffn_hidden / t))
    dense_flops = 2.0 * T * arch.dense_ffn_params() / t
    ffn_act_bytes = w * (4.0 if m_up == 1 else 6.0) * T * arch.ffn_hidden / t
    a2a = np.zeros_like(T * t)
    if arch.is_moe:
        frac = arch.n_moe_layers / arch.n_layers
        local_experts = arch.n_experts / e
        rows = T * arch.top_k / local_experts  # tokens per local expert (balanced routing)
        fe = arch.expert_ffn
        moe = (eff.gemm_time_s(rates, rows, m_up * fe / t, h, count=local_experts, kernels=local_experts)
               + eff.gemm_time_s(rates, rows, h, fe / t, count=local_experts, kernels=local_experts))
        if arch.n_shared_experts:
            ws = arch.n_shared_experts * fe
            moe = moe + eff.gemm_time_s(rates, T, m_up * ws / t, h) + eff.gemm_time_s(rates, T, h, ws / t)
        moe = moe + eff.gemm_time_s(rates, T, arch.n_experts, h, linear=False)  # router (16-bit)
        moe_flops = 2.0 * T * arch.moe_layer_active_params() / t
        moe_act = w * (4.0 if m_up == 1 else 6.0) * T * (arch.top_k + arch.n_shared_experts) * fe / t
        # token dispatch: permute each token into top-k expert copies and combine them back
        moe_act = moe_act + w * MOE_DISPATCH_BYTES_PER_COPY * T * arch.top_k * h / t
        gemm = gemm + (1 - frac) * dense + frac * moe
        flops = flops + (1 - frac) * dense_flops + frac * moe_flops
        ffn_act_bytes = (1 - frac) * ffn_act_bytes + frac * moe_act
        # dispatch + combine of the routed tokens (k copies of h), over the EP group
        inter = t * e > rates.devices_per_node
        a2a = frac * 2.0 * eff.gather_time_s(rates, T * arch.top_k * h * w * ACT_BYTES / t, e, inter)
    else:
        gemm = gemm + dense
        flops = flops + dense_flops
    tok = T * h / np.where(sp, t, 1.0)
    # FP8: quantising every linear layer's inputs (forward; the backward's output gradients are in the
    # doubled backward elementwise time): QKV and FFN inputs (h each), the projection's (v_dim), the
    # down projection's (the FFN width, or the active experts' widths)
    ffn_in = arch.ffn_hidden
    if arch.is_moe:
        ffn_in = (1 - frac) * arch.ffn_hidden + frac * (arch.top_k + arch.n_shared_experts) * arch.expert_ffn
    cast = rates.cast_bytes_per_element * T * (2.0 * h + arch.v_dim + ffn_in) / t
    elementwise = eff.memory_time_s(rates, w * TOKEN_OPS_BYTES * tok + ffn_act_bytes + cast, TOKEN_KERNELS)
    # TP: two all-reduces of T x h (or, with SP, two all-gathers + two reduce-scatters: same volume)
    inter_tp = t > rates.devices_per_node
    msg = T * h * w * ACT_BYTES
    tp = np.where(sp, 4.0 * eff.gather_time_s(rates, msg, t, inter_tp),
                  2.0 * eff.all_reduce_time_s(rates, msg, t, inter_tp))
    # seconds of this layer's forward per byte per hidden element of elementwise traffic that a less
    # fused stack adds (scaled by the stack's extra bytes in step_time's ``unfused_s_per_byte``)
    unfused_unit = tok / (eff.MEMORY_EFFICIENCY * rates.hbm_bytes_per_s)
    return {"gemm": gemm, "core": core, "elementwise": elementwise, "core_elementwise": core_ew,
            "tp": tp, "a2a": a2a, "flops": flops + core_flops, "core_flops": core_flops,
            "unfused_unit": unfused_unit}


def step_time(arch: Architecture, rates: eff.DeviceRates, *, s, b, t, p, d, e, v, m, recompute, zero, sp,
              dp_overlap=0.0, flash_attention=False, pipeline_engine="megatron", tp_overlap=0.0):
    """Time of one optimizer step (seconds) and its breakdown, for arrays of layouts.

    ``m`` micro-batches of ``b`` sequences per pipeline; ``dp_overlap`` is the fraction of the
    data-parallel gradient reduction hidden behind the backward pass (0: reduced after the flush,
    as in Megatron 2021 and in DeepSpeed's pipeline engine); ``tp_overlap`` the fraction of the
    tensor-parallel collectives hidden behind the GEMMs next to them (Megatron-Core's
    ``--tp-comm-overlap``, 2023 on; at most the GEMM time itself); ``pipeline_engine`` is ``"megatron"``
    or ``"deepspeed"`` (module docstring). Returns a dict of arrays, all in seconds except the FLOP
    counts.
    """
    if pipeline_engine not in PIPELINE_ENGINES:
        raise InputError("pipeline_engine", f"must be one of {', '.join(PIPELINE_ENGINES)}, got {pipeline_engine!r}")
    deepspeed = pipeline_engine == "deepspeed"
    s, b, t, p, d, e, v, m = (np.asarray(x, dtype=float) for x in (s, b, t, p, d, e, v, m))
    if deepspeed and np.any((v > 1) & (p > 1)):
        raise InputError("interleave", "DeepSpeed's pipeline engine has no interleaved schedule; use 1")
    recompute = np.asarray(recompute)
    zero = np.asarray(zero)
    lt = layer_times(arch, rates, s, b, t, e, sp, flash_attention)
    # TP collectives overlapped with the layer's GEMMs (forward: one GEMM pass; backward: two)
    tp_hidden = np.minimum(tp_overlap * lt["tp"], lt["gemm"])
    lt["tp"] = lt["tp"] - tp_hidden
    fwd = lt["gemm"] + lt["core"] + lt["elementwise"] + lt["core_elementwise"] + lt["tp"] + lt["a2a"]
    bwd = 2.0 * (lt["gemm"] + lt["core"] + lt["elementwise"] + lt["core_elementwise"]) + lt["tp"] + lt["a2a"]
    full = recompute == RECOMPUTE_FULL
    sel = recompute == RECOMPUTE_SELECTIVE
    re = np.where(full, fwd, np.where(sel, lt["core"] + lt["core_elementwise"], 0.0))
    re_flops = np.where(full, lt["flops"], np.where(sel, lt["core_flops"], 0.0))
    layers = np.ceil(arch.n_layers / p)  # the slowest (most-loaded) stage
    T = s * b
    h, V = arch.d_model, arch.vocab_size
    # logits (last stage): forward + two backward GEMMs, plus the fp32 softmax/cross-entropy pass
    logits = (3.0 * eff.gemm_time_s(rates, T, V / t, h, linear=False)
              + eff.memory_time_s(rates, 3 * 4.0 * T * V / t, 3))
    logit_flops = 6.0 * T * V * h / t
    # pipeline p2p: each of v chunks sends activations forward and gradients backward
    # (scatter/gather over the TP group, Narayanan et al. 2021 §4.1)
    inter_pp = t * p > rates.devices_per_node
    w = width(rates)
    act = T * h * w * ACT_BYTES
    gather_bytes = w * PARAM_GATHER_BYTES  # the weights all-gathered (16-bit, or 32-bit in fp32 training)
    nonexp, expert = stage_param_counts(arch, t, p, e)
    if deepspeed:
        # four blocking transfers: activation in and out (1/t each, then all-gathered over the TP
        # group), its gradient in and out whole; then the unfused gradient accumulation
        p2p = np.where(p > 1, 2.0 * eff.p2p_time_s(rates, act / t, inter_pp)
                       + 2.0 * eff.p2p_time_s(rates, act, inter_pp)
                       + eff.gather_time_s(rates, act, t, t > rates.devices_per_node), 0.0)
        accumulate = np.where(m > 1, eff.memory_time_s(rates, w * GRAD_ACCUMULATE_BYTES * (nonexp + expert),
                                                       layers * PARAM_TENSORS_PER_LAYER), 0.0)
    else:
        p2p = np.where(p > 1, 2.0 * v * eff.p2p_time_s(rates, act / t, inter_pp), 0.0)
        accumulate = np.zeros_like(p2p)
    compute_mb = layers * (lt["gemm"] + lt["core"]) * 3.0 + logits
    t_mb = layers * (fwd + bwd + re) + logits + p2p + accumulate
    bubble = (p - 1.0) / v * t_mb
    pipeline = m * t_mb + bubble
    # data parallel: gradient reduction (and weight gather with a sharded optimizer)
    dp_inter = t * p * d > rates.devices_per_node
    dexp = np.maximum(d / e, 1.0)
    ar = (eff.all_reduce_time_s(rates, nonexp * GRAD_REDUCE_BYTES, d, dp_inter)
          + eff.all_reduce_time_s(rates, expert * GRAD_REDUCE_BYTES, dexp, dp_inter))
    rs_ag = (eff.gather_time_s(rates, nonexp * (GRAD_REDUCE_BYTES + gather_bytes), d, dp_inter)
             + eff.gather_time_s(rates, expert * (GRAD_REDUCE_BYTES + gather_bytes), dexp, dp_inter))
    z3 = m * (eff.gather_time_s(rates, nonexp * (GRAD_REDUCE_BYTES + 2 * gather_bytes), d, dp_inter)
              + eff.gather_time_s(rates, expert * (GRAD_REDUCE_BYTES + 2 * gather_bytes), dexp, dp_inter))
    dp_total = np.where(zero >= 3, z3, np.where(zero >= 1, rs_ag, ar))
    backward_window = m * layers * bwd
    # DeepSpeed's pipeline engine reduces after the flush (ReduceGrads in its last step)
    overlap = np.where(deepspeed & (p > 1), 0.0, dp_overlap)
    # a sharded optimizer's weight all-gather overlaps the next forward pass (Megatron-Core's
    # --overlap-param-gather), the gradient reduce-scatter the backward pass (--overlap-grad-reduce)
    gather = np.where((zero >= 1) & (zero < 3), rs_ag * gather_bytes / (GRAD_REDUCE_BYTES + gather_bytes), 0.0)
    hidden = (np.minimum(overlap * (dp_total - gather), backward_window)
              + np.minimum(overlap * gather, m * layers * fwd))
    dp_exposed = dp_total - hidden
    # optimizer: streaming Adam over this GPU's shard
    opt_params = np.where(zero >= 1, nonexp / d + expert / dexp, nonexp + expert)
    optimizer = eff.memory_time_s(rates, OPTIMIZER_STEP_BYTES * opt_params, 4)
    # tied embedding: first and last stage all-reduce its gradient
    emb_sync = np.where((p > 1) & arch.tied_embeddings,
                        eff.all_reduce_time_s(rates, V * h / t * GRAD_REDUCE_BYTES, 2, inter_pp), 0.0)
    total = pipeline + dp_exposed + optimizer + emb_sync
    # a less fused stack's extra elementwise traffic, per byte per hidden element: forward, backward
    # (twice the forward's), a full recompute's second forward, on every micro-batch and in the bubble
    passes = (m + (p - 1.0) / v) * layers * np.where(full, 4.0, 3.0)
    unfused = passes * lt["unfused_unit"]
    # FLOPs per GPU per step (model: no recompute; hardware: with recompute)
    model_flops_gpu = m * (layers * 3.0 * lt["flops"] + logit_flops)
    hw_flops_gpu = model_flops_gpu + m * layers * re_flops
    return {
        "total": total,
        "compute": m * compute_mb,
        "elementwise": m * layers * 3.0 * (lt["elementwise"] + lt["core_elementwise"]),
        "recompute": m * layers * re,
        "tp_comm": m * layers * 2.0 * lt["tp"],
        "moe_all_to_all": m * layers * 2.0 * lt["a2a"],
        "pp_comm": m * p2p,
        "grad_accumulation": m * accumulate,
        "bubble": bubble,
        "dp_comm": dp_exposed,
        "dp_comm_hidden": hidden,
        "optimizer": optimizer,
        "embedding_sync": emb_sync,
        "model_flops_per_gpu": model_flops_gpu,
        "hardware_flops_per_gpu": hw_flops_gpu,
        "unfused_s_per_byte": unfused,
        # ... and per extra kernel launched per layer forward (eager dispatch of unfused ops)
        "unfused_s_per_kernel": passes * eff.KERNEL_OVERHEAD_S,
    }
