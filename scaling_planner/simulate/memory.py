"""Memory per device for training: model states under ZeRO, activations per Korthikanti, overhead.

Every function broadcasts over numpy arrays of layout parameters (t TP, p PP, d DP, e EP, b
micro-batch, v interleaved chunks, m micro-batches, recompute code, ZeRO stage, sequence parallel),
so the layout search evaluates the whole grid in one call. Bytes, not GiB.

Recompute codes: ``RECOMPUTE_NONE`` 0, ``RECOMPUTE_SELECTIVE`` 1 (attention core only, Korthikanti
et al. 2022 §4), ``RECOMPUTE_FULL`` 2 (every layer; only its input is stored), ``RECOMPUTE_PARTIAL``
3 (full recompute of some of a stage's layers; built from codes 1 and 2 by the layout search).
"""

from __future__ import annotations

import numpy as np

from ..base.units import GIB
from .architecture import Architecture

RECOMPUTE_NONE, RECOMPUTE_SELECTIVE, RECOMPUTE_FULL, RECOMPUTE_PARTIAL = 0, 1, 2, 3
# "partial": full recompute of just enough of a stage's layers to fit, selective for the others
# (Megatron-LM --recompute-method block --recompute-num-layers k); derived from a selective and a
# full candidate of the same layout by ``training.add_partial_recompute``, never evaluated directly
RECOMPUTE_NAMES = ("none", "selective", "full", "partial")

# Mixed-precision Adam, Megatron-style: bf16 weights (2 B), fp32 gradient accumulation (4 B),
# fp32 master weights + Adam m + v (12 B): 18 B/param, which reproduces Korthikanti et al. 2022
# Fig. 1 "parameters + optimizer" exactly (reference §11). ZeRO (Rajbhandari et al. 2020) shards
# optimizer (stage >= 1, = Megatron's distributed optimizer), gradients (>= 2), weights (3) over the
# data-parallel group (never over the world size).
WEIGHT_BYTES = 2.0
GRAD_BYTES = 4.0
OPTIMIZER_BYTES = 12.0
# fp32 training (a CPU's: no 16-bit copy, no master copy): fp32 weights (4 B) and gradients (4 B),
# Adam m + v (8 B): 16 B/param; activations twice the 16-bit bytes
FP32_STATE_BYTES = {"weights": 4.0, "gradients": 4.0, "optimizer": 8.0}


def state_bytes_per_param(element_bytes: float = 2.0) -> dict[str, float]:
    """Bytes per parameter of weights, gradients and optimizer for elements of ``element_bytes``:
    mixed-precision Adam (18 B) for 16-bit elements, fp32 Adam (16 B) for 4-byte ones."""
    if element_bytes >= 4.0:
        return dict(FP32_STATE_BYTES)
    return {"weights": WEIGHT_BYTES, "gradients": GRAD_BYTES, "optimizer": OPTIMIZER_BYTES}

# Runtime overhead: CUDA context + NCCL buffers + allocator fragmentation. A fixed part and a share
# of activations (the cookbook's "misc ~5 GiB", Megatron-LM#482 reports <1 % for states alone).
OVERHEAD_FIXED_BYTES = 2.0 * GIB
OVERHEAD_ACTIVATION_FRACTION = 0.05


def stage_param_counts(arch: Architecture, t, p, e):
    """Parameters held by one GPU of the most-loaded pipeline stage: (non-expert, expert).

    Stage = ``L/p`` layers (MoE layers spread evenly), plus the embedding on the first stage and the
    output layer on the last (both on one GPU when p = 1; a tied embedding is kept on both ends
    when p > 1, as Megatron does). Everything is split over ``t``; experts also over ``e``.
    """
    t, p, e = (np.asarray(x, dtype=float) for x in (t, p, e))
    L = arch.n_layers
    per_layer_common = arch.attention_params_per_layer() + arch.norm_params_per_layer()
    dense_share = arch.n_dense_layers / L
    moe_share = (arch.n_moe_layers / L) if arch.is_moe else 0.0
    shared_expert = arch.n_shared_experts * arch.expert_params() + arch.router_params()
    per_layer_nonexpert = per_layer_common + dense_share * arch.dense_ffn_params() + moe_share * shared_expert
    per_layer_expert = moe_share * arch.n_experts * arch.expert_params()
    layers = np.ceil(L / p)  # the most-loaded stage when L is not a multiple of p
    vh = arch.embedding_params()
    ends = np.where(p > 1, vh, vh + arch.output_params())
    nonexpert = (layers * per_layer_nonexpert + ends) / t
    expert = layers * per_layer_expert / (t * e)
    return nonexpert, expert


def model_state_bytes(arch: Architecture, t, p, d, e, zero, element_bytes: float = 2.0):
    """Weights, gradients and optimizer states per GPU (bytes) under ZeRO stage ``zero`` (0-3), for
    weights of ``element_bytes`` (:func:`state_bytes_per_param`).

    Non-expert states are sharded over the data-parallel group ``d``; expert states over the
    expert-data-parallel group ``d/e`` (experts are already split ``e`` ways). ZeRO-3 adds the
    gathered weights of two layers (current + prefetch).
    """
    d = np.asarray(d, dtype=float)
    e = np.asarray(e, dtype=float)
    zero = np.asarray(zero)
    nonexpert, expert = stage_param_counts(arch, t, p, e)
    d_exp = np.maximum(d / e, 1.0)

    def shard(count, group, stage_min):
        return np.where(zero >= stage_min, count / group, count)

    per = state_bytes_per_param(element_bytes)
    weights = per["weights"] * (shard(nonexpert, d, 3) + shard(expert, d_exp, 3))
    grads = per["gradients"] * (shard(nonexpert, d, 2) + shard(expert, d_exp, 2))
    optimizer = per["optimizer"] * (shard(nonexpert, d, 1) + shard(expert, d_exp, 1))
    # ZeRO-3 gather buffers: two layers' weights (this TP rank's share, experts of this EP rank)
    layers = np.maximum(arch.n_layers / np.asarray(p, dtype=float), 1.0)
    gather = np.where(zero >= 3, 2 * per["weights"] * (nonexpert + expert) / layers, 0.0)
    return {"weights": weights + gather, "gradients": grads, "optimizer": optimizer}


def layer_activation_bytes(arch: Architecture, s, b, t, recompute, sp, flash_attention=False):
    """Activation bytes one transformer layer keeps for one micro-batch on one TP rank.

    Korthikanti et al. 2022 Table 2, generalised to GQA, SwiGLU, MoE and MLA widths (as Megatron's
    ``theoretical_memory_usage`` generalises 34 to 18 + 4f/h): with 16-bit activations and 1-byte
    dropout masks, GPT-3 shapes give ``s b h (10 + 24/t + 5 a s/(h t))`` with TP only,
    ``s b h/t (34 + 5 a s/h)`` with sequence parallelism, ``34 s b h/t`` with SP + selective
    recompute, and ``2 s b h`` (``/t`` with SP) with full recompute.
    """
    s, b, t = (np.asarray(x, dtype=float) for x in (s, b, t))
    recompute = np.asarray(recompute)
    sp = np.asarray(sp, dtype=bool)
    sbh = s * b * arch.d_model
    # replicated unless sequence parallel: 2 layernorm inputs (4), attention input (2), MLP input (2),
    # two dropout masks (1 + 1)
    replicated = 10.0 * sbh
    # split over t: Q, K, V, output-projection input, FFN internals
    kv_width = (arch.kv_lora_rank + arch.qk_rope_head_dim) if arch.attention == "mla" else (
        2 * arch.n_kv_heads * arch.head_dim)
    attn = 2.0 * s * b * (arch.qk_dim + kv_width + arch.v_dim)
    m = arch.ffn_matrices

    def ffn_bytes(width, copies):
        # GELU: fc1 output + GELU output (Korthikanti's 8 sbh + 8 sbh at f = 4h);
        # SwiGLU: gate and up outputs, SiLU output, their product (the fc2 input)
        return copies * 2.0 * s * b * width * (2 if m == 2 else 4)

    dense = ffn_bytes(arch.ffn_hidden, 1.0)
    if arch.is_moe:
        moe = ffn_bytes(arch.expert_ffn, arch.top_k + arch.n_shared_experts) + 4.0 * s * b * arch.n_experts
        frac = arch.n_moe_layers / arch.n_layers
        ffn = (1 - frac) * dense + frac * moe
    else:
        ffn = dense
    split = attn + ffn
    core = 0.0 if flash_attention else 5.0 * arch.n_heads * s * s * b
    none_bytes = np.where(sp, replicated / t, replicated) + split / t + core / t
    selective = np.where(sp, replicated / t, replicated) + split / t
    full = np.where(sp, 2.0 * sbh / t, 2.0 * sbh)
    return np.where(recompute == RECOMPUTE_FULL, full,
                    np.where(recompute == RECOMPUTE_SELECTIVE, selective, none_bytes)), none_bytes


def activation_bytes(arch: Architecture, s, b, t, p, v, m, recompute, sp, flash_attention=False):
    """Activation bytes on the first pipeline stage (the most loaded one), per GPU.

    The first stage holds ``min(p, m)`` micro-batches of ``L/p`` layers in flight under 1F1B, times
    the interleaving penalty ``1 + (p-1)/(p v)`` (Korthikanti §4.2.3 / Megatron); full recompute also
    needs one layer's full activations while it recomputes. Returns (layers, embedding+output).
    """
    p, v, m, b, s, t = (np.asarray(x, dtype=float) for x in (p, v, m, b, s, t))
    per_layer, none_layer = layer_activation_bytes(arch, s, b, t, recompute, sp, flash_attention)
    in_flight = np.minimum(m, p)  # micro-batches in flight on the first stage
    interleave = np.where(v > 1, 1.0 + (p - 1) / (p * v), 1.0)
    layers = np.ceil(arch.n_layers / p) * per_layer * in_flight * interleave
    layers = layers + np.where(np.asarray(recompute) == RECOMPUTE_FULL, none_layer, 0.0)
    sbh = s * b * arch.d_model
    # embedding output + its dropout mask (first stage), logits in fp32 + softmax grad (p = 1 only)
    emb = (2.0 * sbh + sbh) * np.minimum(m, p) / np.where(np.asarray(sp, dtype=bool), t, 1.0)
    out = np.where(p == 1, 4.0 * s * b * (arch.d_model + arch.vocab_size) / t, 0.0)
    return layers, emb + out


def memory_breakdown(arch: Architecture, *, s, b, t, p, d, e, v, m, recompute, zero, sp,
                     flash_attention=False, element_bytes: float = 2.0):
    """All memory terms per GPU (bytes), plus ``total``. Broadcasts over the layout arrays.
    ``element_bytes`` 4 is fp32 training: fp32 states and activations twice the 16-bit bytes."""
    states = model_state_bytes(arch, t, p, d, e, zero, element_bytes)
    act_layers, act_other = activation_bytes(arch, s, b, t, p, v, m, recompute, sp, flash_attention)
    widen = max(element_bytes / 2.0, 1.0)
    act_layers, act_other = act_layers * widen, act_other * widen
    act = act_layers + act_other
    overhead = OVERHEAD_FIXED_BYTES + OVERHEAD_ACTIVATION_FRACTION * act
    out = dict(states)
    out["activations"] = act_layers
    out["activations_embedding_output"] = act_other
    out["overhead"] = overhead + 0.0 * act
    out["total"] = states["weights"] + states["gradients"] + states["optimizer"] + act + overhead
    return out
