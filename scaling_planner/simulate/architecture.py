"""Transformer shapes: a catalog of published architectures, N -> shape, parameters, FLOPs per token.

Conventions (see ``shared/reference/performance_models.md`` §5.2):

* **Megatron count** (``megatron_flops_per_token``): the matrix-multiply FLOPs of one forward and
  backward pass per token, as Megatron-LM's ``num_floating_point_operations`` counts them
  (Narayanan et al. 2021 eq. 3 without recompute): every linear layer ``6 x params`` plus the
  attention core ``12 x L x s x (q_dim)`` (QK^T and AV, causal mask *not* halved), plus the logits
  ``6 x h x V``. This is the **model FLOPs** used for MFU throughout scaling-planner.
* **PaLM convention** (``palm_flops_per_token``): ``6 N_active + 12 L H Q T`` (Chowdhery et al. 2022,
  App. B), with N the non-embedding plus output-layer parameters that are multiplied per token.

Both count model FLOPs only; recomputation is hardware FLOPs and lives in ``training.py``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..base.errors import InputError
from .flops import flops_per_token

FfnKind = Literal["gelu", "swiglu"]
AttentionKind = Literal["mha", "gqa", "mla"]


class Architecture(BaseModel):
    """One decoder-only transformer. Sizes are counts; ``head_dim`` may differ from ``d_model/n_heads``.

    MoE: ``n_experts`` routed experts of width ``expert_ffn`` with ``top_k`` active per token in
    ``n_moe_layers`` layers (the remaining layers are dense with ``ffn_hidden``), plus
    ``n_shared_experts`` always-active experts of width ``expert_ffn``.
    MLA (DeepSeek-V2/V3 multi-head latent attention) is described by the low-rank sizes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    n_layers: int = Field(gt=0)
    d_model: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    n_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    ffn_hidden: int = Field(gt=0)
    ffn_kind: FfnKind = "swiglu"
    vocab_size: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    tied_embeddings: bool = False
    attention: AttentionKind = "gqa"
    # MoE
    n_experts: int = Field(default=1, ge=1)
    top_k: int = Field(default=1, ge=1)
    n_moe_layers: int = Field(default=0, ge=0)
    expert_ffn: int = Field(default=0, ge=0)
    n_shared_experts: int = Field(default=0, ge=0)
    # MLA
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    biases: bool = False
    source: str = ""

    @model_validator(mode="after")
    def _check(self):
        if self.n_heads % self.n_kv_heads:
            raise InputError("arch.n_kv_heads", f"must divide n_heads={self.n_heads}, got {self.n_kv_heads}")
        if self.n_moe_layers > self.n_layers:
            raise InputError("arch.n_moe_layers", f"must be <= n_layers={self.n_layers}")
        if self.top_k > self.n_experts:
            raise InputError("arch.top_k", f"must be <= n_experts={self.n_experts}")
        if self.n_moe_layers and self.expert_ffn <= 0:
            raise InputError("arch.expert_ffn", "must be > 0 when the model has MoE layers")
        return self

    # --- derived sizes -------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.n_moe_layers > 0 and self.n_experts > 1

    @property
    def n_dense_layers(self) -> int:
        return self.n_layers - (self.n_moe_layers if self.is_moe else 0)

    @property
    def ffn_matrices(self) -> int:
        """Weight matrices per FFN: 2 (GELU: up, down) or 3 (SwiGLU: gate, up, down)."""
        return 3 if self.ffn_kind == "swiglu" else 2

    @property
    def qk_head_dim(self) -> int:
        return self.head_dim + self.qk_rope_head_dim if self.attention == "mla" else self.head_dim

    @property
    def v_dim(self) -> int:
        """Width of the attention output before the output projection (heads x value head dim)."""
        return self.n_heads * (self.v_head_dim if self.attention == "mla" else self.head_dim)

    @property
    def qk_dim(self) -> int:
        return self.n_heads * self.qk_head_dim

    def attention_params_per_layer(self) -> float:
        """Weights of Q, K, V and output projections (GQA: K and V have n_kv_heads heads)."""
        h = self.d_model
        if self.attention == "mla":
            q = h * self.qk_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank * self.qk_dim
            kv_down = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv_up = self.kv_lora_rank * self.n_heads * (self.head_dim + self.v_head_dim)
            return float(q + kv_down + kv_up + self.v_dim * h)
        q = h * self.n_heads * self.head_dim
        kv = 2 * h * self.n_kv_heads * self.head_dim
        return float(q + kv + self.v_dim * h)

    def dense_ffn_params(self) -> float:
        return float(self.ffn_matrices * self.d_model * self.ffn_hidden)

    def expert_params(self) -> float:
        """Weights of one expert."""
        return float(self.ffn_matrices * self.d_model * self.expert_ffn)

    def norm_params_per_layer(self) -> float:
        extra = 0
        if self.biases:
            extra = (self.n_heads + 2 * self.n_kv_heads) * self.head_dim + self.d_model
            extra += self.ffn_hidden + self.d_model
        return float(2 * self.d_model + extra)

    def router_params(self) -> float:
        return float(self.d_model * self.n_experts) if self.is_moe else 0.0

    def moe_layer_params(self) -> float:
        """All weights of the FFN block of one MoE layer (routed + shared experts + router)."""
        return (self.n_experts + self.n_shared_experts) * self.expert_params() + self.router_params()

    def moe_layer_active_params(self) -> float:
        return (self.top_k + self.n_shared_experts) * self.expert_params() + self.router_params()

    def embedding_params(self) -> float:
        return float(self.vocab_size * self.d_model)

    def output_params(self) -> float:
        return 0.0 if self.tied_embeddings else float(self.vocab_size * self.d_model)

    def layer_params(self) -> float:
        """Non-embedding parameters of all layers (all experts counted)."""
        attn = self.n_layers * (self.attention_params_per_layer() + self.norm_params_per_layer())
        ffn = self.n_dense_layers * self.dense_ffn_params()
        if self.is_moe:
            ffn += self.n_moe_layers * self.moe_layer_params()
        return attn + ffn

    def params(self) -> float:
        """Total parameters: layers, embedding, untied output layer, final norm."""
        return self.layer_params() + self.embedding_params() + self.output_params() + self.d_model

    def active_params(self) -> float:
        """Parameters touched per token (MoE: top-k and shared experts only)."""
        if not self.is_moe:
            return self.params()
        return self.params() - self.n_moe_layers * (self.moe_layer_params() - self.moe_layer_active_params())

    def matmul_params_per_token(self) -> float:
        """Parameters that are multiplied per token: active layer weights plus the logits (not the lookup)."""
        attn = self.n_layers * self.attention_params_per_layer()
        ffn = self.n_dense_layers * self.dense_ffn_params()
        if self.is_moe:
            ffn += self.n_moe_layers * self.moe_layer_active_params()
        return attn + ffn + self.vocab_size * self.d_model

    # --- FLOPs -----------------------------------------------------------------------------------
    def megatron_flops_per_token(self, seq_len: int | None = None) -> float:
        """Model FLOPs per token, forward + backward, Megatron-LM's count (no recompute).

        ``6 x (active matmul params incl. logits) + 12 x L x s x qk/v width`` -- for a GPT (g=a, f=4h)
        this is exactly ``72 L h^2 (1 + s/(6h) + V/(12 L h))`` of Narayanan et al. 2021.
        """
        s = self.seq_len if seq_len is None else seq_len
        return flops_per_token(self.matmul_params_per_token(), self.n_layers, self.qk_dim + self.v_dim, s)

    def palm_flops_per_token(self, seq_len: int | None = None) -> float:
        """PaLM convention (Chowdhery et al. 2022, App. B): ``6 N + 12 L H Q T``, N non-embedding active."""
        s = self.seq_len if seq_len is None else seq_len
        n = self.active_params() - self.embedding_params()
        return flops_per_token(n, self.n_layers, 2.0 * self.n_heads * self.qk_head_dim, s)

    def with_seq_len(self, seq_len: int) -> Architecture:
        return self.model_copy(update={"seq_len": int(seq_len)})


def _gpt(name, layers, h, heads, vocab, seq, source, ffn=None, tied=True) -> Architecture:
    return Architecture(
        name=name, n_layers=layers, d_model=h, n_heads=heads, n_kv_heads=heads, head_dim=h // heads,
        ffn_hidden=ffn or 4 * h, ffn_kind="gelu", vocab_size=vocab, seq_len=seq, tied_embeddings=tied,
        attention="mha", biases=False, source=source,
    )


def _llama(name, layers, h, heads, kv, ffn, vocab, seq, source) -> Architecture:
    return Architecture(
        name=name, n_layers=layers, d_model=h, n_heads=heads, n_kv_heads=kv, head_dim=h // heads,
        ffn_hidden=ffn, ffn_kind="swiglu", vocab_size=vocab, seq_len=seq, tied_embeddings=False,
        attention="mha" if kv == heads else "gqa", source=source,
    )


_LLAMA2 = "Touvron et al. 2023 (arXiv:2307.09288); HF config"
_LLAMA3 = "Llama 3 herd paper (arXiv:2407.21783) Table 3"
_KORTHIKANTI = "Korthikanti et al. 2022 (arXiv:2205.05198) Table 3; vocab 51,200, s=2048, MHA, GELU"

CATALOG: dict[str, Architecture] = {
    "gpt3-175b": _gpt("gpt3-175b", 96, 12288, 96, 50257, 2048, "Brown et al. 2020 Table 2.1"),
    "megatron-22b": _gpt("megatron-22b", 48, 6144, 64, 51200, 2048, _KORTHIKANTI),
    "megatron-175b": _gpt("megatron-175b", 96, 12288, 96, 51200, 2048, _KORTHIKANTI),
    "megatron-530b": _gpt("megatron-530b", 105, 20480, 128, 51200, 2048, _KORTHIKANTI),
    "megatron-1t": _gpt("megatron-1t", 128, 25600, 160, 51200, 2048, _KORTHIKANTI),
    "llama2-7b": _llama("llama2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, _LLAMA2),
    "llama2-70b": _llama("llama2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, _LLAMA2),
    "llama3-8b": _llama("llama3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, _LLAMA3),
    "llama3-70b": _llama("llama3-70b", 80, 8192, 64, 8, 28672, 128256, 8192, _LLAMA3),
    "llama3-405b": _llama("llama3-405b", 126, 16384, 128, 8, 53248, 128256, 8192, _LLAMA3),
    "mixtral-8x7b": Architecture(
        name="mixtral-8x7b", n_layers=32, d_model=4096, n_heads=32, n_kv_heads=8, head_dim=128,
        ffn_hidden=14336, ffn_kind="swiglu", vocab_size=32000, seq_len=4096, attention="gqa",
        n_experts=8, top_k=2, n_moe_layers=32, expert_ffn=14336,
        source="Jiang et al. 2024 (arXiv:2401.04088) Table 1; HF config",
    ),
    "deepseek-v3": Architecture(
        name="deepseek-v3", n_layers=61, d_model=7168, n_heads=128, n_kv_heads=128, head_dim=128,
        ffn_hidden=18432, ffn_kind="swiglu", vocab_size=129280, seq_len=4096, attention="mla",
        n_experts=256, top_k=8, n_moe_layers=58, expert_ffn=2048, n_shared_experts=1,
        q_lora_rank=1536, kv_lora_rank=512, qk_rope_head_dim=64, v_head_dim=128,
        source="DeepSeek-AI 2024 (arXiv:2412.19437) §4.2; HF config (MTP module not counted)",
    ),
}


def arch_names() -> list[str]:
    return sorted(CATALOG)


def get_arch(name: str) -> Architecture:
    try:
        return CATALOG[name.lower()]
    except KeyError:
        raise InputError("arch", f"unknown architecture {name!r}; known: {', '.join(arch_names())}") from None


# --- N -> shape -----------------------------------------------------------------------------------
ASPECT_RATIO = 128  # d_model / n_layers; Llama 2/3 span 102-130, Kaplan et al. 2020 Fig. 5 is flat ~50-200
HEAD_DIM = 128
DEFAULT_VOCAB = 128256
DEFAULT_SEQ_LEN = 4096


def _round_to(x: float, m: int) -> int:
    return max(m, round(x / m) * m)


def shape_for_params(
    params: float, *, seq_len: int = DEFAULT_SEQ_LEN, vocab_size: int = DEFAULT_VOCAB,
    aspect_ratio: float = ASPECT_RATIO,
) -> Architecture:
    """A Llama-style shape whose total parameter count is closest to ``params``.

    Rules: ``d_model = aspect_ratio x n_layers`` rounded to a multiple of 128 (head_dim 128), of
    1024 from 2048 up (so the head count divides by 8 for tensor parallelism); GQA
    with 8 KV heads once there are >= 16 heads (Llama 2 70B / Llama 3); SwiGLU FFN
    ``8/3 d`` rounded up to a multiple of 256; untied embeddings; ``vocab_size`` 128,256 (Llama 3).
    Every layer count 1..256 is tried and the closest total wins.
    """
    if not (params > 0 and math.isfinite(params)):
        raise InputError("params", f"must be a positive finite number, got {params!r}")
    source = f"derived from N by shape_for_params (aspect ratio {aspect_ratio:g}, head dim 128)"
    best = _closest(params, _dense_shapes(seq_len, vocab_size, aspect_ratio))
    return best.model_copy(update={"name": f"auto-{params:.3g}", "source": source})


def _dense_shapes(seq_len: int, vocab_size: int, aspect_ratio: float):
    """The dense shapes of :func:`shape_for_params`'s rules for 1..256 layers, smallest first."""
    for layers in range(1, 257):
        width = aspect_ratio * layers
        h = _round_to(width, 8 * HEAD_DIM if width >= 16 * HEAD_DIM else HEAD_DIM)
        heads = h // HEAD_DIM
        kv = 8 if heads >= 16 else heads
        yield Architecture(
            name="dense", n_layers=layers, d_model=h, n_heads=heads, n_kv_heads=kv, head_dim=HEAD_DIM,
            ffn_hidden=int(math.ceil(8 * h / 3 / 256) * 256), ffn_kind="swiglu", vocab_size=vocab_size,
            seq_len=seq_len, attention="gqa" if kv < heads else "mha")


def _closest(params: float, shapes) -> Architecture:
    """The shape whose total parameters are closest to ``params`` (log distance); stops once a
    shape is 4x too large (the shapes come smallest first)."""
    best = None
    for arch in shapes:
        err = abs(math.log(arch.params() / params))
        if best is None or err < best[0]:
            best = (err, arch)
        if arch.params() > 4 * params:
            break
    return best[1]


def moe_shape_for_params(
    params: float, *, experts: int, top_k: int, active_params: float | None = None, shared_experts: int = 0,
    seq_len: int = DEFAULT_SEQ_LEN, vocab_size: int = DEFAULT_VOCAB, aspect_ratio: float = ASPECT_RATIO,
) -> Architecture:
    """A Llama-style MoE shape (every layer MoE, SwiGLU experts) with ``params`` in all and, when given,
    about ``active_params`` touched per token.

    ``experts`` routed experts per layer, ``top_k`` of them and ``shared_experts`` always-active ones
    per token (DeepSeekMoE, Dai et al. 2024; Llama 4). With ``active_params`` the backbone (layers,
    d_model, heads) is the dense shape of :func:`shape_for_params` for the active count -- an MoE is
    designed as a dense model whose FFN is split into experts -- and the expert width follows from
    the parameters that are *not* active: ``(params - active) / (layers x 3 d (experts - top_k))``.
    This reproduces the published shapes closely (Granite 3.0 MoE, Phi-3.5-MoE, DeepSeek-V2,
    Llama 4 Scout, JetMoE: layers within 20 %, expert widths within 2x; fine-grained designs get
    narrow experts). Without it each expert is as wide as the dense FFN of the same d_model
    (``8/3 d``, the coarse-grained Switch/Mixtral design, Jiang et al. 2024) and the layer count is
    the one whose total is closest to ``params``.
    """
    for field, value in (("experts", experts), ("top-k", top_k)):
        if int(value) != value or value < 1:
            raise InputError(field, f"must be a whole number >= 1, got {value!r}")
    if int(shared_experts) != shared_experts or shared_experts < 0:
        raise InputError("shared-experts", f"must be a whole number >= 0, got {shared_experts!r}")
    experts, top_k, shared_experts = int(experts), int(top_k), int(shared_experts)
    if experts < 2:
        raise InputError("experts", f"an MoE needs >= 2 routed experts, got {experts}")
    if top_k >= experts:
        raise InputError("top-k", f"must be < experts ({experts}), got {top_k}")
    if not (params > 0 and math.isfinite(params)):
        raise InputError("params", f"must be a positive finite number, got {params!r}")
    if active_params is not None and not (0 < active_params < params):
        raise InputError("active-params", f"must be > 0 and < params ({params:.4g}), got {active_params!r}")
    source = (f"derived by moe_shape_for_params ({experts} experts, top-{top_k}"
              + (f", {shared_experts} shared" if shared_experts else "")
              + (f", {active_params:.3g} active" if active_params is not None else "") + ")")

    def moe(base: Architecture, width: int) -> Architecture:
        return base.model_copy(update={
            "name": f"auto-moe-{params:.3g}", "ffn_hidden": width, "n_experts": experts, "top_k": top_k,
            "n_moe_layers": base.n_layers, "expert_ffn": width, "n_shared_experts": shared_experts,
            "source": source})

    if active_params is not None:
        base = shape_for_params(active_params, seq_len=seq_len, vocab_size=vocab_size, aspect_ratio=aspect_ratio)
        width = round((params - active_params) / (base.n_layers * 3.0 * base.d_model * (experts - top_k)))
        return moe(base, max(1, int(width)))
    # coarse-grained experts as wide as the dense FFN of the same d_model
    return _closest(params, (moe(base, base.ffn_hidden) for base in _dense_shapes(seq_len, vocab_size, aspect_ratio)))
