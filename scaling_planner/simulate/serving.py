"""Serving cost model: per-iteration time of prefill and decode, KV cache, batch limits, capacity.

Two layers (reference/performance_models.md §4 "Lesson for us"):

1. **Per-iteration model** (this module): the time of one forward iteration of a continuous-batching
   server that runs ``n_decode`` decode tokens and ``n_prefill`` prompt tokens together, as a roofline
   over the device's HBM bandwidth and achievable FLOP/s (llm-analysis ``infer``, §1; formula sheet
   §5.2 "Inference"), plus the memory-bound elementwise kernels, a fixed cost per kernel and the
   tensor-parallel all-reduces. Small pure functions, vectorised with numpy.
2. **Load** (``serving_sim.py``): a discrete-event simulation of continuous batching that turns
   iteration times into TTFT / time-per-output-token percentiles, and the capacity search on top.

:func:`serving_capacity` is the entry point the planner calls: replicas, devices, cost and energy
for a demand under an SLO.

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

from ..base.errors import InfeasibleError, InputError
from .architecture import Architecture

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
#: function); the same prior as the training model's memory efficiency (0.75).
DEFAULT_ELEMENTWISE_HBM_FRACTION = 0.75

#: Fixed cost of one kernel in an inference engine that launches from C++ or CUDA graphs (launch,
#: prologue, last partial wave): a few microseconds on A100/H100. 3 us is a prior.
DEFAULT_KERNEL_OVERHEAD_S = 3e-6

#: Kernels per transformer layer in a fused inference engine: 2 norms, QKV GEMM, attention, output
#: GEMM, 2 residual adds, 2 FFN GEMMs (up/gate fused), activation = 10.
KERNELS_PER_LAYER = 10

#: Fraction of the one-direction link bandwidth an all-reduce reaches as bus bandwidth on the small
#: messages of inference (nccl-tests: ~230 of 300 GB/s on NVSwitch A100 at 1 GB, less for MB-size
#: messages); Calculon's A100 system file also uses 0.6.
DEFAULT_LINK_FRACTION = 0.6

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
    """Ring all-reduce ``latency + 2(n−1)/n · S / (η · BW)`` (nccl-tests bus-bandwidth convention,
    formula sheet §5.2 "Collectives"); 0 for ``n = 1``."""
    nbytes = np.asarray(nbytes, dtype=float)
    if n <= 1:
        return np.zeros_like(nbytes)
    return latency_s + 2.0 * (n - 1) / n * nbytes / (link_fraction * bandwidth_bytes_per_s)


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
    if kv_precision is None:
        kv_precision = w_prec if w_prec in ("fp8", "int8") else ("fp16" if w_prec == "fp16" else "bf16")
    kv_b = precision_bytes(kv_precision, "kv_precision")
    for name, value in (("hbm_fraction", hbm_fraction), ("elementwise_hbm_fraction", elementwise_hbm_fraction),
                        ("link_fraction", link_fraction), ("memory_fraction", memory_fraction)):
        if not (0 < value <= 1):
            raise InputError(name, f"must be in (0, 1], got {value!r}")
    f_mm = float(profile.achievable_matmul_fraction if matmul_fraction is None else matmul_fraction)
    if not (0 < f_mm <= 1):
        raise InputError("matmul_fraction", f"must be in (0, 1], got {matmul_fraction!r}")
    cdt = compute_dtype(profile, w_prec)
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
    for t in tp_candidates(profile, max_tp):
        m = build_model(arch, profile, tp=t, **kw)
        if m.max_batch(tokens_per_sequence) >= 1:
            return t
        last = m
    need = last.weight_bytes_per_device + tokens_per_sequence * last.kv_bytes_per_token
    raise InfeasibleError(
        f"{arch.name} does not fit {profile.name} at any tensor-parallel degree up to {last.tp}: "
        f"{need / 2**30:.1f} GiB per device needed vs {last.memory_bytes / 2**30:.1f} GiB usable"
    )


# --- load and capacity ----------------------------------------------------------------------------

#: Default SLOs: the Vidur paper's (reference §4: TTFT P90 < 2 s, TBT P99 < 200 ms), applied at p99.
DEFAULT_P99_TTFT_S = 2.0
DEFAULT_P99_TPOT_S = 0.2
#: Peak-to-mean ratio of the daily demand the fleet is sized for (diurnal chat traffic peaks at about
#: twice its mean; a stated prior, override with --peak-factor).
DEFAULT_PEAK_FACTOR = 2.0
DEFAULT_PROMPT_TOKENS = 1024
DEFAULT_OUTPUT_TOKENS = 256
DEFAULT_SIM_REQUESTS = 2000
SECONDS_PER_DAY = 86400.0


def analytic_curve(model: ServingModel, prompt_tokens: float, output_tokens: float, batch):
    """Steady state of a vLLM-style replica holding ``batch`` sequences on average (fixed point of
    the load): a request's prompt is prefilled alone in ``t_p`` and its ``O − 1`` other tokens come
    from decode steps of ``t_d(B)`` at the mean context ``P + O/2``; decodes pause during prefills.
    Token balance ``λ (O − 1) t_d = (1 − λ t_p) B`` gives

        ``λ(B) = B / ((O − 1) t_d(B) + B t_p)``,   ``TPOT(B) = t_d(B) + B t_p / (O − 1)``,

    and the mean TTFT ≈ ``t_p + t_d(B)/2`` (wait for the running step, then the prefill).
    Returns (qps, tpot_s, ttft_s) arrays over ``batch``."""
    b = np.asarray(batch, dtype=float)
    tp_ = float(model.prefill_time_s(prompt_tokens))
    td = model.decode_step_time_s(b, prompt_tokens + output_tokens / 2.0)
    o1 = max(output_tokens - 1.0, 1.0)
    qps = b / (o1 * td + b * tp_)
    tpot = td + b * tp_ / o1
    ttft = tp_ + td / 2.0
    return qps, tpot, ttft


def analytic_capacity(model: ServingModel, prompt_tokens: float, output_tokens: float, max_batch: int,
                      p99_ttft_s: float, p99_tpot_s: float) -> tuple[float, int]:
    """Largest ``λ(B)`` of :func:`analytic_curve` over ``B = 1 … max_batch`` whose mean TPOT and TTFT
    meet the SLO values (means against p99 targets: optimistic; the simulation refines it).
    (0, 0) when even batch 1 misses them."""
    b = np.arange(1, max(int(max_batch), 1) + 1)
    qps, tpot, ttft = analytic_curve(model, prompt_tokens, output_tokens, b)
    ok = (tpot <= p99_tpot_s) & (ttft <= p99_ttft_s)
    if not ok.any():
        return 0.0, 0
    i = int(np.argmax(np.where(ok, qps, -1.0)))
    return float(qps[i]), int(b[i])


def analytic_batch_at(model: ServingModel, prompt_tokens: float, output_tokens: float, qps: float,
                      max_batch: int) -> tuple[float, float]:
    """Mean batch and TPOT the fixed point predicts at load ``qps`` (bisection on real B);
    (inf, inf) beyond the saturation load ``λ(max_batch)``."""
    lo, hi = 1e-6, float(max_batch)
    if analytic_curve(model, prompt_tokens, output_tokens, hi)[0] < qps:
        return math.inf, math.inf
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if analytic_curve(model, prompt_tokens, output_tokens, mid)[0] < qps:
            lo = mid
        else:
            hi = mid
    _, tpot, _ = analytic_curve(model, prompt_tokens, output_tokens, hi)
    return hi, float(tpot)


def simulated_max_qps(model: ServingModel, prompt_tokens: float, output_tokens: float, p99_ttft_s: float,
                      p99_tpot_s: float, *, guess_qps: float, max_batch: int = DEFAULT_MAX_BATCH,
                      requests: int = DEFAULT_SIM_REQUESTS, seed: int = 0, chunked_prefill: bool = False,
                      output_dist: str = "fixed", iterations: int = 9):
    """Largest Poisson load whose simulated p99 TTFT and p99 TPOT meet the SLO: bisection over QPS
    (Vidur's capacity search, reference §4) with common random numbers across loads.
    Returns (qps, summary at that qps); (0, summary at the lowest load tried) when none does."""
    from .serving_sim import poisson_workload, simulate

    def run(q):
        wl = poisson_workload(q, requests, prompt_tokens, output_tokens, output_dist=output_dist, seed=seed)
        s = simulate(model, wl, max_batch=max_batch, chunked_prefill=chunked_prefill).summary()
        return s["ttft_s"]["p99"] <= p99_ttft_s and s["tpot_s"]["p99"] <= p99_tpot_s, s

    hi = max(guess_qps, 1e-9) * 1.25
    ok, s_hi = run(hi)
    lo, s_lo = None, None
    for _ in range(8):
        if not ok:
            break
        lo, s_lo = hi, s_hi
        hi *= 1.6
        ok, s_hi = run(hi)
    if lo is None:
        lo = hi / 2.0
        for _ in range(10):
            ok, s = run(lo)
            if ok:
                s_lo = s
                break
            hi, lo = lo, lo / 2.0
        else:
            return 0.0, s
    for _ in range(iterations):
        mid = math.sqrt(lo * hi)
        ok, s = run(mid)
        if ok:
            lo, s_lo = mid, s
        else:
            hi = mid
    return lo, s_lo


def _model_info(arch: Architecture):
    from .serving_models import ModelInfo

    return ModelInfo(name=arch.name, params=arch.params(), active_params=arch.active_params(),
                     n_layers=arch.n_layers, d_model=arch.d_model, n_heads=arch.n_heads,
                     n_kv_heads=arch.n_kv_heads, head_dim=arch.head_dim, source=arch.source)


def _hardware_info(profile, price_usd_per_hour: float | None):
    from .serving_models import HardwareInfo

    return HardwareInfo(profile=profile.name, display_name=profile.display_name,
                        price_usd_per_device_hour=profile.price_usd_per_hour if price_usd_per_hour is None
                        else float(price_usd_per_hour),
                        memory_bytes_per_device=profile.memory_bytes,
                        memory_bandwidth_bytes_per_s=profile.memory_bandwidth_bytes_per_s)


def _memory(model: ServingModel, kv_tokens: float):
    from .serving_models import MemoryPerDevice

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
    from .serving_models import StepBreakdown

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
                   price_usd_per_hour: float | None = None, **model_kw):
    """TTFT, time per output token and throughput of exactly one configuration: ``gpus`` devices in
    one tensor-parallel replica, a batch of ``batch_size`` identical requests prefilled together and
    decoded together (the llm-analysis ``infer`` setting)."""
    from .serving_models import FixedEstimate

    for name, v in (("gpus", gpus), ("batch_size", batch_size), ("prompt_tokens", prompt_tokens),
                    ("output_tokens", output_tokens)):
        _check_positive(v, name, integer=True)
    m = build_model(arch, profile, tp=int(gpus), precision=precision, kv_precision=kv_precision, **model_kw)
    seq = prompt_tokens + output_tokens
    need = m.weight_bytes_per_device + batch_size * seq * m.kv_bytes_per_token
    if need > m.memory_bytes:
        raise InfeasibleError(
            f"{arch.name} at batch {batch_size} x {seq} tokens needs {need / 2**30:.1f} GiB per device on "
            f"{gpus} x {profile.name}, {(need - m.memory_bytes) / 2**30:.1f} GiB more than the "
            f"{m.memory_bytes / 2**30:.1f} GiB usable; the largest batch that fits is {m.max_batch(seq, 10**9)}"
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
    hw = _hardware_info(profile, price_usd_per_hour)
    cost = gpus * hw.price_usd_per_device_hour / 3600.0 / out_tps * 1e6
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
    price_usd_per_hour: float | None = None,
    tensor_parallel: int | None = None,
    seed: int = 0,
    _with_ttc_baseline: bool = True,
    **model_kw,
):
    """Replicas, devices, latency, cost and energy to serve ``arch`` on ``profile`` at a demand.

    Demand is ``tokens_per_day`` (prompt + answer tokens users exchange) or mean ``qps``; the fleet
    is sized for ``peak_factor`` × the mean. With test-time compute each query decodes ``samples``
    sequences of ``output + thinking`` tokens (prompts are not shared between samples: no prefix
    caching, an upper bound on prefill work). For each tensor-parallel degree from the smallest that
    fits up to 8× it, the analytic fixed point (:func:`analytic_capacity`) gives the max QPS per
    replica; the cheapest candidates are refined by simulation (:func:`simulated_max_qps`) against
    the p99 SLOs. Raises :class:`InfeasibleError` when no degree meets the SLO, with the best
    latencies reachable.
    """
    from . import energy as en
    from .serving_models import SLO, Demand, LatencyAtLoad, Percentiles, ReplicaOption, ServingPlan, TestTimeCompute
    from .test_time_compute import decode_tokens_per_query, pass_at_k

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
        mean_qps = tokens_per_day / SECONDS_PER_DAY / (prompt_tokens + output_tokens)
    else:
        _check_positive(qps, "qps")
        mean_qps = float(qps)
        tokens_per_day = mean_qps * SECONDS_PER_DAY * (prompt_tokens + output_tokens)
    samples = int(samples)
    seq_out = float(decode_tokens_per_query(output_tokens, thinking_tokens, 1))
    peak_qps = peak_factor * mean_qps
    seq_peak_qps = peak_qps * samples
    hw = _hardware_info(profile, price_usd_per_hour)
    price = hw.price_usd_per_device_hour
    seq_tokens = prompt_tokens + seq_out
    kw = dict(precision=precision, kv_precision=kv_precision, **model_kw)

    t0 = smallest_fitting_tp(arch, profile, seq_tokens, **kw)
    cands = [tensor_parallel] if tensor_parallel else [t for t in tp_candidates(profile) if t0 <= t <= 8 * t0]
    options, models = [], {}
    for t in cands:
        m = build_model(arch, profile, tp=int(t), **kw)
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

    latency = None
    if simulate:
        from .serving_sim import poisson_workload
        from .serving_sim import simulate as run_sim

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
        base_cost = base_dev = None
        if _with_ttc_baseline:
            try:
                base = serving_capacity(
                    arch, profile, qps=mean_qps, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                    p99_ttft_s=p99_ttft_s, p99_tpot_s=p99_tpot_s, precision=precision, kv_precision=kv_precision,
                    peak_factor=peak_factor, simulate=simulate, sim_requests=sim_requests,
                    chunked_prefill=chunked_prefill, max_batch=max_batch, price_usd_per_hour=price_usd_per_hour,
                    tensor_parallel=tensor_parallel, seed=seed, _with_ttc_baseline=False, **model_kw)
                base_cost, base_dev = base.cost_usd_per_day, base.devices
            except InfeasibleError:
                base_cost, base_dev = math.nan, 0
        queries_day = mean_qps * SECONDS_PER_DAY
        ttc = TestTimeCompute(
            thinking_tokens_per_query=float(thinking_tokens), samples_per_query=samples,
            decode_tokens_per_query=float(decode_tokens_per_query(output_tokens, thinking_tokens, samples)),
            decode_multiplier=samples * seq_out / output_tokens, devices_without=int(base_dev or 0),
            devices_with=best.devices, cost_usd_per_day_without=float(base_cost if base_cost is not None else math.nan),
            cost_usd_per_day_with=cost_day,
            extra_cost_usd_per_day=cost_day - float(base_cost if base_cost is not None else math.nan),
            cost_usd_per_query_with=cost_day / queries_day,
            cost_usd_per_query_without=float(base_cost if base_cost is not None else math.nan) / queries_day,
            single_sample_accuracy=single_sample_accuracy,
            pass_at_k=None if single_sample_accuracy is None else float(pass_at_k(single_sample_accuracy, samples)),
        )
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


def _option(t, bmax, m, lam_an, lam_sim, ttft1, tpot1, seq_peak_qps, price):
    from .serving_models import ReplicaOption

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
