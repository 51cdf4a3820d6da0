"""Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (arXiv:2001.08361).

Single-factor laws (Kaplan Eq. 1.1 and 1.2) and the joint law (Eq. 1.5 = Eq. 4.1, Table 2)::

    L(N)    = (N_c / N)^α_N                          α_N = 0.076, N_c = 8.8e13
    L(D)    = (D_c / D)^α_D                          α_D = 0.095, D_c = 5.4e13 tokens
    L(N, D) = [(N_c / N)^(α_N/α_D) + D_c / D]^α_D    α_N = 0.076, α_D = 0.103,
                                                     N_c = 6.4e13, D_c = 1.8e13   (Table 2)

Loss is in nats per token on WebText2 with the GPT-2 tokenizer, so the constants N_c and D_c are
tokenizer-specific; the exponents are what transfers. **N counts NON-EMBEDDING parameters**
(Kaplan §2.1: token and position embeddings excluded), unlike Hoffmann 2022 and the rest of
:mod:`scaling_planner.laws`, which count all parameters. Two converters are offered:

* exact, from a model shape: embedding params = vocab·d_model (+ n_ctx·d_model for learned
  position embeddings; Kaplan §2.1);
* approximate, from Pearce & Song 2024 ("Reconciling Kaplan and Chinchilla Scaling Laws",
  arXiv:2406.12907, §3; the fit as coded in their ``script_analysis_kaplan_chinchilla.py``):
  N_total = N_nonemb + 47491·N_nonemb^(1/3), fitted to Chinchilla's model shapes (vocab 32k,
  aspect ratio d_model/n_layers ≈ 39.2); its inverse is solved numerically.

Caveat (Kaplan §4): D in the joint law is early-stopped and may be multi-epoch, so C = 6·N·D
does not hold for that fit.
"""

from __future__ import annotations

import numpy as np

from ..base.checks import positive_array as _positive
from ..base.errors import InputError

# Kaplan Eq. 1.1 (converged, large D)
ALPHA_N = 0.076
N_C = 8.8e13
# Kaplan Eq. 1.2 (large N, early stopping)
ALPHA_D = 0.095
D_C = 5.4e13
# Kaplan Table 2, the joint fit L(N, D) of Eq. 1.5
JOINT_ALPHA_N = 0.076
JOINT_ALPHA_D = 0.103
JOINT_N_C = 6.4e13
JOINT_D_C = 1.8e13
# Pearce & Song 2024 (§3 and their analysis script): N_total = N_nonemb + γ·N_nonemb^(1/3)
PEARCE_SONG_GAMMA = 47491.0


def loss_from_params(nonembedding_params, alpha_N: float = ALPHA_N, N_c: float = N_C):
    """L(N) = (N_c/N)^α_N for a model trained to convergence on ample data (Kaplan Eq. 1.1).

    ``nonembedding_params`` is N, the NON-EMBEDDING parameter count (Kaplan §2.1).
    """
    N = _positive(nonembedding_params, "nonembedding_params")
    return (N_c / N) ** alpha_N


def loss_from_tokens(tokens, alpha_D: float = ALPHA_D, D_c: float = D_C):
    """L(D) = (D_c/D)^α_D for a large model trained with early stopping (Kaplan Eq. 1.2)."""
    D = _positive(tokens, "tokens")
    return (D_c / D) ** alpha_D


def loss(
    nonembedding_params,
    tokens,
    alpha_N: float = JOINT_ALPHA_N,
    alpha_D: float = JOINT_ALPHA_D,
    N_c: float = JOINT_N_C,
    D_c: float = JOINT_D_C,
):
    """Joint L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (Kaplan Eq. 1.5 / 4.1, Table 2 values).

    N is the NON-EMBEDDING parameter count; D the (early-stopped) training tokens.
    """
    N = _positive(nonembedding_params, "nonembedding_params")
    D = _positive(tokens, "tokens")
    return ((N_c / N) ** (alpha_N / alpha_D) + D_c / D) ** alpha_D


def overfitting_tokens(nonembedding_params):
    """Tokens above which overfitting stays small: D ≳ 5e3·N^0.74 (Kaplan Eq. 4.4), N non-embedding."""
    N = _positive(nonembedding_params, "nonembedding_params")
    return 5.0e3 * N**0.74


# -- total <-> non-embedding parameters ------------------------------------------------------------

def embedding_params(vocab_size, d_model, n_ctx=0):
    """Embedding parameters of a transformer: vocab·d_model (+ n_ctx·d_model for learned position
    embeddings; pass n_ctx=0 for rotary or ALiBi). Kaplan §2.1 excludes these from N. An untied
    output projection adds another vocab·d_model; double ``vocab_size`` to count it.
    """
    V = _positive(vocab_size, "vocab_size")
    d = _positive(d_model, "d_model")
    ctx = np.asarray(n_ctx, dtype=float)
    if not np.all(np.isfinite(ctx)) or np.any(ctx < 0):
        raise InputError("n_ctx", f"must be a finite number >= 0, got {n_ctx!r}")
    return (V + ctx) * d


def total_params_from_shape(nonembedding_params, vocab_size, d_model, n_ctx=0):
    """Exact N_total = N_nonemb + (vocab + n_ctx)·d_model for a known shape (Kaplan §2.1)."""
    N = _positive(nonembedding_params, "nonembedding_params")
    return N + embedding_params(vocab_size, d_model, n_ctx)


def nonembedding_params_from_shape(total_params, vocab_size, d_model, n_ctx=0):
    """Exact N_nonemb = N_total − (vocab + n_ctx)·d_model; InputError if the embeddings exceed N_total."""
    T = _positive(total_params, "total_params")
    out = T - embedding_params(vocab_size, d_model, n_ctx)
    if np.any(out <= 0):
        raise InputError(
            "total_params", "must exceed the embedding parameters (vocab_size + n_ctx)·d_model of the shape"
        )
    return out


def total_params_pearce_song(nonembedding_params, gamma: float = PEARCE_SONG_GAMMA):
    """N_total ≈ N_nonemb + γ·N_nonemb^(1/3), γ = 47491 (Pearce & Song 2024, §3).

    Fitted to Chinchilla's shapes (vocab 32k, d_model/n_layers ≈ 39.2): for an aspect ratio r,
    d_model ≈ (r·N_nonemb/12)^(1/3), so the embeddings vocab·d_model grow as N_nonemb^(1/3).
    """
    N = _positive(nonembedding_params, "nonembedding_params")
    return N + gamma * np.cbrt(N)


def nonembedding_params_pearce_song(total_params, gamma: float = PEARCE_SONG_GAMMA, iterations: int = 60):
    """Inverse of :func:`total_params_pearce_song`, vectorised.

    With x = N_nonemb^(1/3) the relation is the cubic x³ + γ·x − N_total = 0, which has one real
    root (the left side is increasing). Newton's method from x₀ = N_total^(1/3) (where the cubic is
    positive and convex) decreases monotonically onto the root; 60 steps is far more than double
    precision needs (it converges quadratically once within ~γ^(1/2) of the root).
    """
    T = _positive(total_params, "total_params")
    x = np.cbrt(T)
    for _ in range(iterations):
        f = x**3 + gamma * x - T
        x_new = x - f / (3.0 * x**2 + gamma)
        if np.all(np.abs(x_new - x) <= 1e-15 * np.abs(x)):
            x = x_new
            break
        x = x_new
    return x**3
