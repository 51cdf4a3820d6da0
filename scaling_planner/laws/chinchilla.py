"""The Chinchilla parametric law and its closed forms (Hoffmann et al. 2022, arXiv:2203.15556).

    L(N, D) = E + A / N**alpha + B / D**beta            (Hoffmann Eq. 2, "Approach 3")

with training compute C = 6·N·D FLOPs (Kaplan et al. 2020, Eq. 2.1). Every function here is pure
numpy and broadcasts over its arguments *and* over the law's parameters: a law whose E, A, B,
alpha, beta are arrays of shape (K,) (see :meth:`ChinchillaLaw.draws`) evaluates K laws at once,
which is how plans carry the law's uncertainty.

N counts all parameters (embeddings included) and D all training tokens, as in Hoffmann; see
:mod:`scaling_planner.laws.kaplan` for the non-embedding convention and a converter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..base.errors import InputError

FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6·N·D: forward (2) + backward (4) FLOPs per parameter per token


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A/N^alpha + B/D^beta, with its name, provenance and optional parameter draws.

    ``samples`` holds parameter draws of shape (K, 5), columns (E, A, B, alpha, beta), e.g. bootstrap
    replicates of a fit; they let a plan report a band instead of a point.
    """

    name: str
    E: Any
    A: Any
    B: Any
    alpha: Any
    beta: Any
    source: str = ""
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)
    extra: dict = field(default_factory=dict, compare=False)

    # -- convenience wrappers over the module functions -------------------------------------------
    def loss(self, N, D):
        return loss(self, N, D)

    def optimal_params(self, C):
        return optimal_params(self, C)

    def optimal_tokens(self, C):
        return optimal_tokens(self, C)

    def frontier_loss(self, C):
        return frontier_loss(self, C)

    def compute_for_loss(self, L):
        return compute_for_loss(self, L)

    def tokens_per_param(self, C):
        return tokens_per_param(self, C)

    @property
    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}

    def draws(self) -> ChinchillaLaw:
        """This law with array parameters, one entry per draw in ``samples`` (shape (K,))."""
        if self.samples is None:
            raise InputError("law", f"law {self.name!r} carries no parameter draws (fit with --bootstrap)")
        s = np.asarray(self.samples, dtype=float)
        return replace(self, E=s[:, 0], A=s[:, 1], B=s[:, 2], alpha=s[:, 3], beta=s[:, 4], samples=None)

    def to_dict(self) -> dict:
        out = {"name": self.name, **{k: float(v) for k, v in self.params.items()}, "source": self.source}
        out.update(self.extra)
        return out


# -- the law ---------------------------------------------------------------------------------------

def loss(law: ChinchillaLaw, N, D):
    """Predicted loss L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann 2022, Eq. 2)."""
    N = np.asarray(N, dtype=float)
    D = np.asarray(D, dtype=float)
    return law.E + law.A / N**law.alpha + law.B / D**law.beta


def allocation_exponents(law: ChinchillaLaw):
    """(a, b) = (beta/(alpha+beta), alpha/(alpha+beta)): N_opt ∝ C^a, D_opt ∝ C^b (Hoffmann Eq. 4)."""
    s = law.alpha + law.beta
    return law.beta / s, law.alpha / s


def allocation_constant(law: ChinchillaLaw):
    """G = (alpha·A / (beta·B))^(1/(alpha+beta)) of Hoffmann Eq. 4."""
    return (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / (law.alpha + law.beta))


def optimal_params(law: ChinchillaLaw, C):
    """Compute-optimal parameters N_opt(C) = G·(C/6)^a (Hoffmann Eq. 4)."""
    a, _ = allocation_exponents(law)
    return allocation_constant(law) * (np.asarray(C, dtype=float) / FLOPS_PER_PARAM_TOKEN) ** a


def compute_for_params(law: ChinchillaLaw, N):
    """The compute whose optimal model has N parameters: Hoffmann Eq. 4 inverted, C = 6·(N/G)^(1/a)."""
    a, _ = allocation_exponents(law)
    return FLOPS_PER_PARAM_TOKEN * (np.asarray(N, dtype=float) / allocation_constant(law)) ** (1.0 / a)


def optimal_tokens(law: ChinchillaLaw, C):
    """Compute-optimal tokens D_opt(C) = G^-1·(C/6)^b (Hoffmann Eq. 4)."""
    _, b = allocation_exponents(law)
    return (np.asarray(C, dtype=float) / FLOPS_PER_PARAM_TOKEN) ** b / allocation_constant(law)


def tokens_per_param(law: ChinchillaLaw, C):
    """D_opt/N_opt at compute C; constant only when alpha == beta."""
    return optimal_tokens(law, C) / optimal_params(law, C)


def _frontier_coefficient(law: ChinchillaLaw):
    """K in L*(C) = E + K·(C/6)^(-alpha·beta/(alpha+beta)): K = A·G^-alpha + B·G^beta."""
    G = allocation_constant(law)
    return law.A * G ** (-law.alpha) + law.B * G**law.beta


def frontier_loss(law: ChinchillaLaw, C):
    """Loss on the compute-optimal frontier, L*(C) = E + (A·G^-α + B·G^β)·(C/6)^(-αβ/(α+β))."""
    gamma = law.alpha * law.beta / (law.alpha + law.beta)
    return law.E + _frontier_coefficient(law) * (np.asarray(C, dtype=float) / FLOPS_PER_PARAM_TOKEN) ** (-gamma)


def check_target_loss(law: ChinchillaLaw, L, field: str = "target_loss") -> None:
    """Raise InputError when a target is not finite or at or below the irreducible loss E.

    Only a law with scalar parameters is checked; for a law of draws (array parameters) the
    functions below return inf for the draws whose E is at or above the target.
    """
    L_arr = np.asarray(L, dtype=float)
    if not np.all(np.isfinite(L_arr)):
        raise InputError(field, f"must be a finite number, got {L!r}")
    if np.ndim(law.E) == 0 and np.any(L_arr <= law.E):
        raise InputError(
            field,
            f"{float(np.min(L_arr)):g} is at or below the irreducible loss E = {float(law.E):.4f} of law "
            f"{law.name!r}; no amount of compute reaches it (choose a target above {float(law.E):.4f})",
        )


def compute_for_loss(law: ChinchillaLaw, L):
    """Minimal training compute that reaches loss L on the frontier:

        C(L) = 6·[(A·G^-α + B·G^β) / (L − E)]^((α+β)/(αβ))

    the inverse of :func:`frontier_loss` (Besiroglu et al. 2024, Epoch's
    ``optimal_compute_from_reducible_loss``). Raises InputError for L ≤ E.
    """
    check_target_loss(law, L)
    reducible = np.asarray(L, dtype=float) - law.E
    power = (law.alpha + law.beta) / (law.alpha * law.beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        C = FLOPS_PER_PARAM_TOKEN * (_frontier_coefficient(law) / reducible) ** power
    return np.where(reducible > 0, C, np.inf)


def frontier_tokens_for_params(law: ChinchillaLaw, N):
    """Tokens that put a model of N parameters on the compute-optimal frontier:

    D = G^-(1+b/a)·N^(b/a), the inverse of N_opt(C) substituted into D_opt(C).
    """
    a, b = allocation_exponents(law)
    return allocation_constant(law) ** (-(1.0 + b / a)) * np.asarray(N, dtype=float) ** (b / a)


def tokens_for_loss_at_params(law: ChinchillaLaw, L, N):
    """Tokens D such that L(N, D) = L for a fixed N; inf where N alone cannot reach L.

    Solves B/D^β = L − E − A/N^α for D (used for over-trained, smaller-than-optimal models).
    """
    check_target_loss(law, L)
    rest = np.asarray(L, dtype=float) - law.E - law.A / np.asarray(N, dtype=float) ** law.alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        D = np.where(rest > 0, (law.B / np.where(rest > 0, rest, 1.0)) ** (1.0 / law.beta), np.inf)
    return D


def isoflop_loss(law: ChinchillaLaw, C, N):
    """Loss of a model of N parameters trained with compute C, i.e. on D = C/(6N) tokens."""
    N = np.asarray(N, dtype=float)
    return loss(law, N, np.asarray(C, dtype=float) / (FLOPS_PER_PARAM_TOKEN * N))


def near_optimal_params_range(law: ChinchillaLaw, C, rel_tol: float = 0.005, iterations: int = 200):
    """The range [N_low, N_high] of model sizes whose loss at fixed compute C is within
    ``rel_tol`` (relative) of the frontier loss L*(C).

    IsoFLOP curves are flat near their minimum (Hoffmann Fig. 3), so users ask for this range
    rather than a point. The isoFLOP loss is decreasing in N below N_opt and increasing above it,
    so each end is found by a vectorised bisection in log N on its side of N_opt.
    """
    if not (rel_tol > 0):
        raise InputError("rel_tol", f"must be > 0, got {rel_tol!r}")
    C = np.asarray(C, dtype=float)
    n_opt = np.log(optimal_params(law, C))
    target = frontier_loss(law, C) * (1.0 + rel_tol)

    def bisect(lo, hi, increasing):
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            above = isoflop_loss(law, C, np.exp(mid)) > target
            go_left = above if increasing else ~above
            hi = np.where(go_left, mid, hi)
            lo = np.where(go_left, lo, mid)
        return np.exp(0.5 * (lo + hi))

    span = 60.0  # e^60 on either side: far beyond any meaningful model size
    low = bisect(n_opt - span, n_opt, increasing=False)
    high = bisect(n_opt, n_opt + span, increasing=True)
    return low, high
