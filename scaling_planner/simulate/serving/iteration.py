"""Serving cost model: per-iteration time of prefill and decode, KV cache, batch limits, capacity.

Two layers (reference/performance_models.md §4 "Lesson for us"):

1. **Per-iteration model** (this module): the time of one forward iteration of a continuous-batching
   server that runs ``n_decode`` decode tokens and ``n_prefill`` prompt tokens together, as a roofline
   over the device's HBM bandwidth and achievable FLOP/s (llm-analysis ``infer``, §1; formula sheet
   §5.2 "Inference"), plus the memory-bound elementwise kernels, a fixed cost per kernel and the
   tensor-parallel all-reduces. Small pure functions, vectorised with numpy.
2. **Load** (:mod:`.eventsim`, :mod:`.load`): a discrete-event simulation of continuous batching that
   turns iteration times into TTFT / time-per-output-token percentiles, and the capacity search on top.

:func:`.capacity.serving_capacity` is the entry point the planner calls: replicas, devices, cost and
energy for a demand under an SLO.

Efficiency knobs (all stated in every result under ``assumptions``):

* prefill / decode compute: ``profile.achievable_matmul_fraction`` of the dense peak of the compute
  dtype (a measured GEMM rate can replace it);
* decode weight and KV streaming: :data:`DEFAULT_HBM_FRACTION` of the HBM bandwidth;
* elementwise kernels: :data:`DEFAULT_ELEMENTWISE_HBM_FRACTION`;
* fixed cost per kernel :data:`DEFAULT_KERNEL_OVERHEAD_S`, :data:`KERNELS_PER_LAYER` per layer;
* NCCL all-reduce at :data:`DEFAULT_LINK_FRACTION` of the link bandwidth plus the profile's latency.

None of them is fitted to a validation case; the FasterTransformer 13B test (§6) reports the error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...base.errors import InfeasibleError, InputError
from ...base.units import GIB
from .. import efficiency as eff
from ..architecture import Architecture

# --- precisions --------------------------------------------------------------------------------

#: Bytes per stored weight / KV element for each precision word the CLI accepts.
PRECISION_BYTES: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}

#: Activations stay 16-bit in every mode here (W8A8 / FP8 kernels read and write bf16 between GEMMs).
ACTIVATION_BYTES = 2.0

# --- efficiency defaults (stated priors, not fitted) -------------------------------------------

#: Fraction of HBM bandwidth that the weight and KV streaming of a decode step reaches. Memory-bound
#: GEMV/attention kernels reach 75-90 % of the datasheet bandwidth (STREAM-like copies ~0.9 on A100 /
#: H100; llm-analysis' "aggressive" HBM efficiency is 0.9, kipp.ly profiled FasterTransformer at 0.9
#: for the best kernels, lower for the rest). 0.8: the middle of that range.
DEFAULT_HBM_FRACTION = 0.8

#: Fraction of HBM bandwidth of the unfused elementwise kernels (norms, residual adds, activation
#: function): the training model's memory efficiency, one prior for both.
DEFAULT_ELEMENTWISE_HBM_FRACTION = eff.MEMORY_EFFICIENCY

#: Fixed cost of one kernel in an inference engine (C++ launches or CUDA graphs): efficiency's figure.
DEFAULT_KERNEL_OVERHEAD_S = eff.ENGINE_KERNEL_OVERHEAD_S

#: Kernels per transformer layer in a fused inference engine: 2 norms, QKV GEMM, attention, output
#: GEMM, 2 residual adds, 2 FFN GEMMs (up/gate fused), activation = 10.
KERNELS_PER_LAYER = 10

#: Fraction of the one-direction link bandwidth an all-reduce reaches as bus bandwidth on the small
#: messages of inference: the training model's NVLink figure (nccl-tests, Calculon), one prior for both.
DEFAULT_LINK_FRACTION = eff.INTRA_NODE_LINK_EFFICIENCY

#: Fraction of device memory the server may fill with weights + KV cache (vLLM's default
#: ``gpu_memory_utilization`` 0.9: the rest is CUDA context, activations workspace, fragmentation).
DEFAULT_MEMORY_FRACTION = 0.9

#: Paged-attention block size in tokens (vLLM default 16).
DEFAULT_BLOCK_TOKENS = 16

#: Upper bound on concurrent sequences per replica (vLLM default ``max_num_seqs`` 256).
DEFAULT_MAX_BATCH = 256

#: Largest tensor-parallel degree tried (within a node, then across nodes at inter-node speed).
MAX_TENSOR_PARALLEL = 64


# --- precision resolution ----------------------------------------------------------------------

def precision_bytes(name: str, field_name: str = "precision") -> float:
    """Bytes per element of a precision word (bf16 2, fp16 2, fp8 1, int8 1, int4 0.5)."""
    key = str(name).strip().lower()
    if key not in PRECISION_BYTES:
        raise InputError(field_name, f"must be one of {', '.join(PRECISION_BYTES)}, got {name!r}")
    return PRECISION_BYTES[key]


def _check_16bit(profile, precision: str, field_name: str, supported: dict) -> None:
    """A 16-bit format (bf16, fp16) the device has no dense peak for is refused, as ``planner simulate``
    refuses it (a V100 has no bf16: serving it in fp16 is a different numeric format, not a fallback).
    8- and 4-bit weights may still be weight-only (dequantised to the device's 16-bit GEMMs)."""
    if precision in ("bf16", "fp16") and precision not in supported:
        other = [d for d in ("bf16", "fp16") if d in supported]
        hint = f"; use --{field_name.replace('_', '-')} {other[0]}" if other else ""
        raise InputError(field_name, f"{profile.name} has no dense {precision} peak (supported: "
                                     f"{', '.join(supported)}){hint}")


def tensor_parallel_ok(arch: Architecture, tp: int) -> bool:
    """True when ``tp`` splits the attention heads evenly: it divides the query heads, and divides the KV
    heads or is a multiple of them (each KV head then replicated), vLLM's rule (``vllm/config``: "Total
    number of attention heads must be divisible by tensor parallel size"; KV heads are replicated when
    tp > num_kv_heads). MLA caches one latent, replicated on every rank: only the query heads split."""
    tp = int(tp)
    if tp < 1 or arch.n_heads % tp:
        return False
    if arch.attention == "mla":
        return True
    kv = arch.n_kv_heads
    return kv % tp == 0 if tp <= kv else tp % kv == 0


def check_tensor_parallel(arch: Architecture, tp: int, field_name: str = "tensor_parallel") -> None:
    """InputError naming the degrees that work unless :func:`tensor_parallel_ok`."""
    if not tensor_parallel_ok(arch, tp):
        valid = [t for t in range(1, MAX_TENSOR_PARALLEL + 1) if tensor_parallel_ok(arch, t)]
        raise InputError(field_name, f"{tp} does not split the {arch.n_heads} attention heads "
                                 f"({arch.n_kv_heads} KV heads) of {arch.name} evenly; use one of "
                                 f"{', '.join(map(str, valid))}")


def compute_dtype(profile, weight_precision: str) -> str:
    """The dtype the GEMMs run in: the weight precision when the device has a dense peak for it
    (FP8 on Hopper, INT8 W8A8), otherwise bf16 (weight-only quantisation, e.g. W4A16 AWQ/GPTQ,
    dequantised to bf16 in the kernel), falling back to fp16 where bf16 has no peak (V100)."""
    supported = profile.peak_dense_tflops.supported()
    w = weight_precision.lower()
    if w in ("fp8", "int8") and w in supported:
        return w
    if w in ("bf16", "fp16") and w in supported:
        return w
    for d in ("bf16", "fp16", "fp32"):
        if d in supported:
            return d
    return next(iter(supported))


# --- model geometry (pure, small) ---------------------------------------------------------------

def kv_cache_bytes_per_token(arch: Architecture, kv_bytes: float = 2.0, tp: int = 1) -> float:
    """KV-cache bytes per token per device: ``2 · L · ceil(g_kv / t) · head_dim · bytes``.

    Formula sheet §5.2 (Inference): keys and values (the 2), every layer, the KV heads (GQA: ``g_kv``,
    not the query heads) of this tensor-parallel rank -- at least one head per rank, since a KV head
    is replicated when ``t > g_kv`` (vLLM does the same) -- and the real ``head_dim``, which need not
    be ``d_model / n_heads`` (Qwen3, Gemma). MLA (DeepSeek-V2 §2.1.3) caches the compressed latent
    ``kv_lora_rank + qk_rope_head_dim`` per layer instead, replicated on every rank.
    """
    if arch.attention == "mla":
        return float(arch.n_layers * (arch.kv_lora_rank + arch.qk_rope_head_dim) * kv_bytes)
    heads_per_rank = math.ceil(arch.n_kv_heads / tp)
    return float(2 * arch.n_layers * heads_per_rank * arch.head_dim * kv_bytes)


def weight_bytes(arch: Architecture, w_bytes: float) -> float:
    """Bytes of all weights stored (every expert, embedding and untied output layer)."""
    return arch.params() * w_bytes


def matmul_params_dense(arch: Architecture) -> float:
    """Weights multiplied by every token regardless of routing: attention, dense FFNs, shared experts,
    routers and the logits layer (Megatron count, architecture.matmul_params_per_token less the
    routed experts)."""
    attn = arch.n_layers * arch.attention_params_per_layer()
    ffn = arch.n_dense_layers * arch.dense_ffn_params()
    if arch.is_moe:
        ffn += arch.n_moe_layers * (arch.n_shared_experts * arch.expert_params() + arch.router_params())
    return attn + ffn + arch.vocab_size * arch.d_model


def experts_touched(n_experts, top_k, tokens):
    """Expected distinct experts one MoE layer reads for ``tokens`` tokens routed uniformly at random:
    ``E · (1 − (1 − k/E)^tokens)`` (occupancy of E bins by ``tokens`` draws of k). For a dense model
    (E = 1) this is 1."""
    tokens = np.asarray(tokens, dtype=float)
    return n_experts * (1.0 - (1.0 - top_k / n_experts) ** np.maximum(tokens, 0.0))


def attention_flops(arch: Architecture, query_tokens, context_tokens):
    """Forward attention-core FLOPs ``2 · L · (qk_dim + v_dim) · Σ context`` (QKᵀ and AV, PaLM App. B
    / Megatron §5.2), where ``context_tokens`` is the sum over the queries of the keys each attends to
    (decode: the sequence lengths; a causal prompt of P tokens: ``P(P+1)/2``, since fused kernels skip
    the masked half)."""
    del query_tokens  # the count depends on the (query, key) pairs only
    return 2.0 * arch.n_layers * (arch.qk_dim + arch.v_dim) * np.asarray(context_tokens, dtype=float)


def elementwise_bytes_per_token(arch: Architecture) -> float:
    """HBM bytes of the unfused elementwise kernels per token, all layers: 2 norms (read + write,
    4h), 2 residual adds (2 reads + 1 write, 6h), the FFN activation (GELU: read + write f; SwiGLU:
    read 2f, write f), 16-bit activations. An estimate of the memory-bound part of a layer that the
    GEMM roofline does not see (Korthikanti et al. 2022 list the same operators)."""
    act = 3 if arch.ffn_kind == "swiglu" else 2
    ffn = arch.expert_ffn * (arch.top_k + arch.n_shared_experts) if arch.is_moe else arch.ffn_hidden
    per_layer = 10 * arch.d_model + act * ffn
    return float(arch.n_layers * per_layer * ACTIVATION_BYTES)


def all_reduce_time_s(nbytes, n: int, bandwidth_bytes_per_s: float, latency_s: float,
                      link_fraction: float = DEFAULT_LINK_FRACTION):
    """Ring all-reduce at ``link_fraction`` of the link (:func:`efficiency.ring_all_reduce_s`)."""
    return eff.ring_all_reduce_s(nbytes, n, link_fraction * bandwidth_bytes_per_s, latency_s)


def roofline_time_s(flops, nbytes, flops_per_s: float, bytes_per_s: float):
    """``max(F / achievable FLOP/s, bytes / achievable bandwidth)`` (Williams et al. 2009 roofline;
    llm-analysis takes the same max per layer)."""
    return np.maximum(np.asarray(flops, dtype=float) / flops_per_s, np.asarray(nbytes, dtype=float) / bytes_per_s)


# --- the per-iteration model of one replica -----------------------------------------------------

@dataclass(frozen=True)
class ServingModel:
    """Iteration times of one replica: ``arch`` on ``tp`` devices of ``profile`` at a precision.

    Build with :func:`build_model`. All methods are vectorised over numpy arrays.
    """

    arch: Architecture
    profile_name: str
    tp: int
    weight_precision: str
    kv_precision: str
    compute_dtype: str
    w_bytes: float
    kv_bytes_elem: float
    flops_per_s: float  # achievable, per device
    hbm_bytes_per_s: float  # achievable for weight / KV streaming, per device
    elementwise_bytes_per_s: float
    link_bytes_per_s: float
    link_latency_s: float
    link_fraction: float
    kernel_overhead_s: float
    iteration_overhead_s: float
    memory_bytes: float  # per device, usable (memory fraction applied)
    matmul_fraction: float
    hbm_fraction: float
    notes: tuple[str, ...] = field(default=())

    # geometry per device
    @property
    def kv_bytes_per_token(self) -> float:
        """KV bytes per token on one device of the replica."""
        return kv_cache_bytes_per_token(self.arch, self.kv_bytes_elem, self.tp)

    @property
    def kv_bytes_per_token_replica(self) -> float:
        return self.kv_bytes_per_token * self.tp

    @property
    def weight_bytes_per_device(self) -> float:
        """Weights on one device: all weights / t (norms and the embedding are sharded too in
        vocab-parallel engines; replicated norms are negligible)."""
        return weight_bytes(self.arch, self.w_bytes) / self.tp

    @property
    def kv_capacity_tokens(self) -> float:
        """Tokens of KV cache that fit beside the weights on every device of the replica."""
        free = self.memory_bytes - self.weight_bytes_per_device
        return max(0.0, free) / self.kv_bytes_per_token

    @property
    def fixed_overhead_s(self) -> float:
        return self.arch.n_layers * KERNELS_PER_LAYER * self.kernel_overhead_s + self.iteration_overhead_s

    def weights_read_bytes(self, tokens):
        """Weight bytes one device reads in an iteration of ``tokens`` tokens (MoE: only the
        experts the tokens are routed to, :func:`experts_touched`)."""
        a = self.arch
        dense = matmul_params_dense(a)
        if a.is_moe:
            routed = a.n_moe_layers * a.expert_params() * experts_touched(a.n_experts, a.top_k, tokens)
        else:
            routed = np.zeros_like(np.asarray(tokens, dtype=float))
        return (dense + routed) * self.w_bytes / self.tp

    def tp_comm_time_s(self, tokens):
        """Two all-reduces per layer of the ``tokens × d_model`` activations (Megatron TP, §5.2)."""
        nbytes = np.asarray(tokens, dtype=float) * self.arch.d_model * ACTIVATION_BYTES
        per = all_reduce_time_s(nbytes, self.tp, self.link_bytes_per_s, self.link_latency_s, self.link_fraction)
        return 2.0 * self.arch.n_layers * per

    def iteration_time_s(self, n_decode, kv_read_tokens, n_prefill=0.0, prefill_pairs=0.0):
        """Time of one iteration that runs ``n_decode`` decode tokens reading ``kv_read_tokens`` cached
        tokens in all, plus ``n_prefill`` prompt tokens whose attention covers ``prefill_pairs``
        (query, key) pairs.

        ``max(weights + KV bytes / (η_hbm · BW), FLOPs / (f_mm · peak)) + elementwise bytes /
        (η_elem · BW) + kernels · t_kernel + TP all-reduces`` -- the roofline of §5.2 (decode:
        bytes of weights + KV over HBM bandwidth against ``2 · N_active · batch``; prefill:
        compute-bound ``2 · N · tokens + attention``), per device of the TP group.
        """
        n_dec = np.asarray(n_decode, dtype=float)
        n_pre = np.asarray(n_prefill, dtype=float)
        tokens = n_dec + n_pre
        kv = np.asarray(kv_read_tokens, dtype=float)
        pairs = np.asarray(prefill_pairs, dtype=float)
        a = self.arch
        flops = 2.0 * a.matmul_params_per_token() * tokens + attention_flops(a, tokens, kv + pairs)
        nbytes = self.weights_read_bytes(tokens) + kv * self.kv_bytes_per_token
        core = roofline_time_s(flops / self.tp, nbytes, self.flops_per_s, self.hbm_bytes_per_s)
        elem = tokens * elementwise_bytes_per_token(a) / self.tp / self.elementwise_bytes_per_s
        return core + elem + self.fixed_overhead_s + self.tp_comm_time_s(tokens)

    def prefill_time_s(self, prompt_tokens, batch=1):
        """Prefill of ``batch`` prompts of ``prompt_tokens`` each in one iteration (TTFT at no load)."""
        p = np.asarray(prompt_tokens, dtype=float)
        b = np.asarray(batch, dtype=float)
        return self.iteration_time_s(0.0, 0.0, b * p, b * p * (p + 1.0) / 2.0)

    def decode_step_time_s(self, batch, context_tokens):
        """One decode step of ``batch`` sequences of ``context_tokens`` cached tokens each."""
        b = np.asarray(batch, dtype=float)
        return self.iteration_time_s(b, b * np.asarray(context_tokens, dtype=float))

    def decode_coefficients(self, batch: int) -> tuple[float, float, float, float, float]:
        """For a fixed decode batch, step time = ``max(A1 + S1·K, A2 + S2·K) + C`` in the total cached
        tokens K: (A1, S1) the memory branch, (A2, S2) the compute branch, C the additive terms.
        The event simulation sums runs of steps in closed form with these."""
        a = self.arch
        b = float(batch)
        A1 = float(self.weights_read_bytes(b)) / self.hbm_bytes_per_s
        S1 = self.kv_bytes_per_token / self.hbm_bytes_per_s
        A2 = 2.0 * a.matmul_params_per_token() * b / self.tp / self.flops_per_s
        S2 = float(attention_flops(a, 1, 1.0)) / self.tp / self.flops_per_s
        C = (b * elementwise_bytes_per_token(a) / self.tp / self.elementwise_bytes_per_s
             + self.fixed_overhead_s + float(self.tp_comm_time_s(b)))
        return A1, S1, A2, S2, C

    def max_batch(self, tokens_per_sequence, max_batch: int = DEFAULT_MAX_BATCH,
                  block_tokens: int = DEFAULT_BLOCK_TOKENS) -> int:
        """Largest number of sequences of ``tokens_per_sequence`` tokens whose KV blocks fit in the
        free memory (llm-analysis ``max_batch_size``; vLLM paged blocks), capped at ``max_batch``."""
        blocks = math.floor(self.kv_capacity_tokens / block_tokens)
        per_seq = math.ceil(tokens_per_sequence / block_tokens)
        return int(max(0, min(max_batch, blocks // max(per_seq, 1))))

    def assumptions(self) -> dict:
        return {
            "compute_dtype": self.compute_dtype,
            "achievable_matmul_fraction": self.matmul_fraction,
            "achievable_flops_per_s_per_device": self.flops_per_s,
            "hbm_fraction": self.hbm_fraction,
            "elementwise_hbm_fraction": self.elementwise_bytes_per_s / (self.hbm_bytes_per_s / self.hbm_fraction),
            "kernel_overhead_s": self.kernel_overhead_s,
            "kernels_per_layer": KERNELS_PER_LAYER,
            "link_fraction": self.link_fraction,
            "iteration_overhead_s": self.iteration_overhead_s,
        }


def build_model(
    arch: Architecture,
    profile,
    *,
    tp: int = 1,
    precision: str = "bf16",
    kv_precision: str | None = None,
    matmul_fraction: float | None = None,
    hbm_fraction: float = DEFAULT_HBM_FRACTION,
    elementwise_hbm_fraction: float = DEFAULT_ELEMENTWISE_HBM_FRACTION,
    kernel_overhead_s: float = DEFAULT_KERNEL_OVERHEAD_S,
    link_fraction: float = DEFAULT_LINK_FRACTION,
    iteration_overhead_s: float = 0.0,
    memory_fraction: float = DEFAULT_MEMORY_FRACTION,
) -> ServingModel:
    """A :class:`ServingModel` of ``arch`` on ``tp`` devices of ``profile``.

    ``precision`` is the weight precision (bf16, fp16, fp8, int8, int4); ``kv_precision`` defaults to
    the weight precision for 8-bit modes and bf16 otherwise (int4 weight-only keeps a 16-bit cache).
    ``matmul_fraction`` defaults to ``profile.achievable_matmul_fraction``.
    """
    if not isinstance(tp, (int, np.integer)) or tp < 1:
        raise InputError("tp", f"must be a whole number >= 1, got {tp!r}")
    w_prec = str(precision).lower()
    w_bytes = precision_bytes(w_prec, "precision")
    supported = profile.peak_dense_tflops.supported()
    _check_16bit(profile, w_prec, "precision", supported)
    cdt = compute_dtype(profile, w_prec)
    if kv_precision is None:
        kv_precision = w_prec if w_prec in ("fp8", "int8") else (cdt if cdt in ("bf16", "fp16") else "bf16")
    kv_b = precision_bytes(kv_precision, "kv_precision")
    _check_16bit(profile, str(kv_precision).lower(), "kv_precision", supported)
    check_tensor_parallel(arch, tp)
    for name, value in (("hbm_fraction", hbm_fraction), ("elementwise_hbm_fraction", elementwise_hbm_fraction),
                        ("link_fraction", link_fraction), ("memory_fraction", memory_fraction)):
        if not (0 < value <= 1):
            raise InputError(name, f"must be in (0, 1], got {value!r}")
    f_mm = float(profile.achievable_matmul_fraction if matmul_fraction is None else matmul_fraction)
    if not (0 < f_mm <= 1):
        raise InputError("matmul_fraction", f"must be in (0, 1], got {matmul_fraction!r}")
    notes = []
    if cdt != w_prec and w_prec not in ("bf16", "fp16"):
        notes.append(f"{profile.name} has no dense {w_prec} peak: weight-only {w_prec}, GEMMs in {cdt}")
    inter = tp > profile.devices_per_node
    bw = profile.memory_bandwidth_bytes_per_s
    return ServingModel(
        arch=arch, profile_name=profile.name, tp=int(tp), weight_precision=w_prec,
        kv_precision=str(kv_precision).lower(), compute_dtype=cdt, w_bytes=w_bytes, kv_bytes_elem=kv_b,
        flops_per_s=f_mm * profile.peak_flops_per_s(cdt),
        hbm_bytes_per_s=hbm_fraction * bw,
        elementwise_bytes_per_s=elementwise_hbm_fraction * bw,
        link_bytes_per_s=(profile.inter_node_bandwidth_bytes_per_s if inter
                          else profile.intra_node_bandwidth_bytes_per_s),
        link_latency_s=profile.inter_node_latency_s if inter else profile.intra_node_latency_s,
        link_fraction=link_fraction, kernel_overhead_s=kernel_overhead_s,
        iteration_overhead_s=iteration_overhead_s,
        memory_bytes=memory_fraction * profile.memory_bytes, matmul_fraction=f_mm,
        hbm_fraction=hbm_fraction, notes=tuple(notes),
    )


def tp_candidates(profile, max_tp: int = MAX_TENSOR_PARALLEL) -> list[int]:
    """Powers of two up to ``max_tp`` (within a node first; beyond it at inter-node speed)."""
    out, t = [], 1
    while t <= max_tp:
        out.append(t)
        t *= 2
    return out


def smallest_fitting_tp(arch: Architecture, profile, tokens_per_sequence: float, *,
                        max_tp: int = MAX_TENSOR_PARALLEL, **kw) -> int:
    """The smallest power-of-two TP degree whose devices hold the weights and the KV blocks of one
    sequence; :class:`InfeasibleError` saying by how much the largest one misses otherwise."""
    last = None
    for t in [t for t in tp_candidates(profile, max_tp) if tensor_parallel_ok(arch, t)]:
        m = build_model(arch, profile, tp=t, **kw)
        if m.max_batch(tokens_per_sequence) >= 1:
            return t
        last = m
    need = last.weight_bytes_per_device + tokens_per_sequence * last.kv_bytes_per_token
    raise InfeasibleError(
        f"{arch.name} does not fit {profile.name} at any tensor-parallel degree up to {last.tp}: "
        f"{need / GIB:.1f} GiB per device needed vs {last.memory_bytes / GIB:.1f} GiB usable"
    )
