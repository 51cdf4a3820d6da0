"""A small decoder-only GPT for real training runs on CPU or one GPU.

The architecture of GPT-2 (Radford et al. 2019) as nanoGPT writes it: token + learned position
embeddings, pre-LayerNorm blocks of causal self-attention and a 4x GELU MLP, a final LayerNorm and
an output head tied to the token embedding (Press & Wolf 2017). Linear layers have no bias
(nanoGPT's ``bias=False`` option); the LayerNorms have weight and bias. Attention is
``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``.

Parameter counts (d = d_model, L = n_layer, V = vocab_size, T = seq_len):

* per block: attention ``4 d^2`` (QKV ``3 d^2`` + output ``d^2``), MLP ``8 d^2``, two LayerNorms
  ``4 d``; final LayerNorm ``2 d``;
* ``params_nonembedding() = L (12 d^2 + 4 d) + 2 d`` -- Kaplan et al. 2020's N (embeddings
  excluded; the tied head *is* the embedding matrix);
* ``params_total() = params_nonembedding() + V d + T d``;
* ``params_for_flops() = params_nonembedding() + V d``: what is multiplied per token, the N of
  ``6 N + 12 L H Q T`` (the tied head is a matmul; nanoGPT's ``get_num_params`` counts it too).
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from torch.nn import functional

from ..base.errors import InputError
from ..simulate.flops import flops_convention, model_flops_per_token


class GPTConfig(BaseModel):
    """Shape of the GPT. Bad values raise :class:`InputError` naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(256, ge=2, description="tokens in the vocabulary (256 for bytes)")
    seq_len: int = Field(128, ge=1, description="context length T")
    n_layer: int = Field(2, ge=1)
    n_head: int = Field(4, ge=1)
    d_model: int = Field(64, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InputError(".".join(str(p) for p in err["loc"]) or "config", err["msg"]) from None
        if self.d_model % self.n_head:
            raise InputError("d_model", f"must be divisible by n_head={self.n_head}, got {self.d_model}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def params_nonembedding(self) -> int:
        """Non-embedding parameters: ``L (12 d^2 + 4 d) + 2 d`` (blocks and final LayerNorm)."""
        d = self.d_model
        return self.n_layer * (12 * d * d + 4 * d) + 2 * d

    def params_embedding(self) -> int:
        """Token (also the tied head) and position embeddings: ``V d + T d``."""
        return (self.vocab_size + self.seq_len) * self.d_model

    def params_total(self) -> int:
        """Every parameter of the module, the tied head counted once."""
        return self.params_nonembedding() + self.params_embedding()

    def params_for_flops(self) -> int:
        """Parameters multiplied per token: non-embedding plus the (tied) output head ``V d``."""
        return self.params_nonembedding() + self.vocab_size * self.d_model

    def flops_per_token(self, causal_halving: bool = False) -> float:
        """Model FLOPs per token, forward + backward (:func:`~scaling_planner.simulate.flops.model_flops_per_token`)."""
        return model_flops_per_token(self.params_for_flops(), self.n_layer, self.n_head, self.head_dim,
                                     self.seq_len, causal_halving=causal_halving)

    @staticmethod
    def flops_convention(causal_halving: bool = False) -> str:
        return flops_convention(causal_halving)


def config_for_params(n_params: float, *, vocab_size: int = 256, seq_len: int = 128,
                      aspect_ratio: tuple[float, float] = (32.0, 64.0), target_aspect: float = 48.0,
                      max_layers: int = 48, dropout: float = 0.0) -> GPTConfig:
    """A shape whose *non-embedding* parameter count is closest to ``n_params``.

    Every ``n_layer`` in 1..``max_layers`` and every ``d_model`` (a multiple of 16) with
    ``d_model / n_layer`` inside ``aspect_ratio`` is tried; the smallest ``|log(N / n_params)|`` wins,
    ties going to the aspect ratio nearest ``target_aspect`` (Kaplan et al. 2020, Fig. 5: loss is flat
    for d/L from about 20 to 200; small models are better a bit wider than they are deep). Head dim is
    32 for ``d_model >= 128`` when it divides, else 16. Raises :class:`InputError` when no shape comes
    within 20% (the range is about 1.2e4 to 5e8 with the defaults).
    """
    try:
        target = float(n_params)
    except (TypeError, ValueError):
        raise InputError("n_params", f"must be a number, got {n_params!r}") from None
    if not (math.isfinite(target) and target > 0):
        raise InputError("n_params", f"must be a finite number > 0, got {n_params!r}")
    lo, hi = aspect_ratio
    if not 0 < lo <= hi:
        raise InputError("aspect_ratio", f"must be (low, high) with 0 < low <= high, got {aspect_ratio!r}")
    best = None
    for layers in range(1, max_layers + 1):
        d_min = max(16, math.ceil(lo * layers / 16) * 16)
        for d in range(d_min, int(hi * layers) + 1, 16):
            n = layers * (12 * d * d + 4 * d) + 2 * d
            score = abs(math.log(n / target)) + 0.01 * abs(math.log(d / layers / target_aspect))
            if best is None or score < best[0]:
                best = (score, layers, d, n)
    _, layers, d, n = best
    if abs(n / target - 1) > 0.2:
        raise InputError("n_params", f"no shape within 20% of {target:.3g} (closest {n}); "
                                     f"with aspect ratio {lo:g}-{hi:g} and <= {max_layers} layers")
    head_dim = 32 if d >= 128 and d % 32 == 0 else 16
    return GPTConfig(vocab_size=vocab_size, seq_len=seq_len, n_layer=layers, n_head=d // head_dim,
                     d_model=d, dropout=dropout)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=False)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(functional.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """``forward(idx[B, T], targets[B, T] | None) -> (logits[B, T, V], mean loss in nats/token | None)``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # tied (Press & Wolf 2017)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual output projections scaled by 1/sqrt(2 L)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        t = idx.shape[1]
        if t > self.config.seq_len:
            raise InputError("seq_len", f"input has {t} tokens, the model's context is {self.config.seq_len}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss
