"""FLOPs per token of a transformer's forward + backward pass: the one copy of the count, used by the
simulator (:meth:`~scaling_planner.simulate.architecture.Architecture.megatron_flops_per_token` and
``palm_flops_per_token``) and by the MFU meter (:mod:`scaling_planner.measure.mfu`, the small GPT of
:mod:`scaling_planner.train`).

    F = 6 N + 6 L T W

N: parameters multiplied per token (each costs 2 FLOPs forward, 4 backward); L layers; T the sequence
length; W the attention width, the query-key plus value widths of a layer (2 H Q for multi-head
attention: QK^T and PV are 2 T Q FLOPs each per head and token forward, x3 with the backward). Which
N and W a count uses is its convention:

* PaLM (Chowdhery et al. 2022, App. B; nanoGPT ``estimate_mfu``; torchtitan): N = non-embedding
  active parameters plus the output head, W = 2 H Q: ``6 N + 12 L H Q T``;
* Megatron-LM (``num_floating_point_operations``; Narayanan et al. 2021 eq. 3 without recompute):
  N = every matmul parameter incl. the logits, W = the q/k and v widths (GQA, MLA);
* ``causal_halving`` halves the attention term, as Megatron-LM's newer count does (the unmasked half
  of a causal score matrix).

Model FLOPs only: recompute is hardware FLOPs (HFU), never counted here.
"""

from __future__ import annotations

from ..base.checks import positive_number

FLOPS_CONVENTION = (
    "6N + 12LHQT per token, forward + backward (PaLM App. B, nanoGPT, torchtitan): N = parameters "
    "multiplied per token (non-embedding, active, plus the output head); attention not halved for the "
    "causal mask; recompute not counted")
FLOPS_CONVENTION_CAUSAL = (
    "6N + 6LHQT per token, forward + backward (Megatron-LM): N = parameters multiplied per token "
    "(non-embedding, active, plus the output head); attention halved for the causal mask; recompute "
    "not counted")


def flops_convention(causal_halving: bool = False) -> str:
    """The one-line description of the FLOPs count :func:`model_flops_per_token` uses."""
    return FLOPS_CONVENTION_CAUSAL if causal_halving else FLOPS_CONVENTION


def flops_per_token(matmul_params: float, n_layers: float, attention_width: float, seq_len: float, *,
                    causal_halving: bool = False) -> float:
    """``6 N + 6 L T W`` (module docstring): model FLOPs per token, forward + backward."""
    attention = 6.0 * n_layers * seq_len * attention_width
    return 6.0 * matmul_params + (attention / 2.0 if causal_halving else attention)


def model_flops_per_token(n_params: float, n_layers: int, n_heads: int, head_dim: int, seq_len: int, *,
                          causal_halving: bool = False) -> float:
    """Model FLOPs per token for one forward + backward pass: ``6 N + 12 L H Q T``.

    Sources: Chowdhery et al. 2022 (PaLM), App. B, "6N + 12LHQT"; karpathy/nanoGPT
    ``GPT.estimate_mfu``; pytorch/torchtitan ``get_nparams_and_flops`` (``12 * l * h * q * t``).
    ``6 N``: each multiplied weight costs 2 FLOPs (multiply-add) forward and 4 backward (input and
    weight gradients). ``12 L H Q T``: per layer and head, QK^T and PV are 2 T Q FLOPs each per
    token forward, x3 with the backward. With ``causal_halving`` the attention term is halved to
    ``6 L H Q T`` as Megatron-LM does (``num_floating_point_operations``: core attention
    ``seq / 2``), counting only the unmasked half of the causal score matrix.

    ``n_params``: parameters multiplied per token -- non-embedding (for MoE the active) parameters
    plus the output head (tied or not); the input embedding lookup and the position embedding are no
    matmul and are left out. Which description applies is :func:`flops_convention`.
    """
    n = positive_number("n_params", n_params)
    layers = positive_number("n_layers", n_layers, integer=True)
    heads = positive_number("n_heads", n_heads, integer=True)
    q = positive_number("head_dim", head_dim, integer=True)
    t = positive_number("seq_len", seq_len, integer=True)
    return flops_per_token(n, layers, 2.0 * heads * q, t, causal_halving=causal_halving)
