"""Data-constrained scaling: Muennighoff et al. 2023, "Scaling Data-Constrained Language Models"
(NeurIPS 2023, arXiv:2305.16264; code and fitted values: huggingface/datablations README).

Repeated tokens and excess parameters are worth less than fresh ones. With U_D unique tokens
seen and D total training tokens (so D/U_D epochs), the paper's data-constrained law replaces N
and D in the Chinchilla law by effective counts (formula as in the datablations README,
"Parametric Fit"; equation labels below are this module's, not the paper's)::

    R_D = max(D/U_D − 1, 0)                      repetitions beyond the first epoch
    D'  = U_D + U_D·R_D*·(1 − exp(−R_D/R_D*))    effective data                  [D']
    U_N = min(N, N_opt(U_D)),  N_opt(U) = G·(U·G)^(β/α)
    R_N = max(N/U_N − 1, 0)                      "repeated" (excess) parameters
    N'  = U_N + U_N·R_N*·(1 − exp(−R_N/R_N*))    effective parameters            [N']
    L(N, D, U_D) = E + A/N'^α + B/D'^β                                           [L]

N_opt(U) is the compute-optimal model for U tokens under the law (Hoffmann Eq. 4 solved for N),
with G = (αA/(βB))^(1/(α+β)). The default law is the paper's C4 fit, ``get_law("muennighoff2023-c4")``
(E=1.869, A=520.8, B=1487.7, α=β=0.35266, R_D*=15.388, R_N*=5.310, carried in ``law.extra``).

Convention here: ``unique_tokens`` is the number of unique tokens *available*; a run of D < U_D
tokens sees only D of them, so U_D is capped at D (as the datablations allocation does with
``U = min(U_BASE, D)``). Muennighoff's README warns that absolute loss values are less reliable
than the comparisons the law makes (datablations issue #9); report trends, not the third decimal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.checks import positive_array as _positive
from ..base.errors import InputError
from .chinchilla import FLOPS_PER_PARAM_TOKEN, ChinchillaLaw, allocation_constant
from .chinchilla import optimal_params as chinchilla_optimal_params
from .chinchilla import optimal_tokens as chinchilla_optimal_tokens

DEFAULT_LAW_NAME = "muennighoff2023-c4"


def _resolve_law(law: ChinchillaLaw | None) -> ChinchillaLaw:
    if law is None:
        from .presets import get_law

        return get_law(DEFAULT_LAW_NAME)
    return law


def _star(law: ChinchillaLaw, key: str, given) -> float:
    """R_D* or R_N*: the explicit value when given, else ``law.extra[key]``."""
    value = law.extra.get(key) if given is None else given
    if value is None:
        raise InputError(
            key,
            f"law {law.name!r} carries no {key}; pass {key}= explicitly or use "
            f"law {DEFAULT_LAW_NAME!r} (Muennighoff 2023 fit)",
        )
    return float(_positive(value, key))


def _seen_unique(tokens, unique_tokens):
    """Unique tokens a run of D tokens sees: min(U_D, D)."""
    return np.minimum(_positive(unique_tokens, "unique_tokens"), _positive(tokens, "tokens"))


# -- counts ---------------------------------------------------------------------------------------

def epochs(tokens, unique_tokens):
    """Passes over the unique data, D/U_D (Muennighoff 2023: epochs = R_D + 1 for D ≥ U_D)."""
    return _positive(tokens, "tokens") / _positive(unique_tokens, "unique_tokens")


def data_repetitions(tokens, unique_tokens):
    """R_D = max(D/U_D − 1, 0), repetitions beyond the first epoch (Muennighoff 2023, [D'])."""
    U = _seen_unique(tokens, unique_tokens)
    return np.maximum(np.asarray(tokens, dtype=float) / U - 1.0, 0.0)


def effective_tokens(tokens, unique_tokens, R_D_star=None, law: ChinchillaLaw | None = None):
    """Effective data D' = U_D + U_D·R_D*·(1 − exp(−R_D/R_D*)) (Muennighoff 2023, [D']).

    ``R_D_star`` defaults to the law's ``extra["R_D_star"]`` (15.387756 for the C4 fit): a token
    repeated R_D* times beyond the first epoch has lost 1 − 1/e of its value. D' < U_D·(1 + R_D*)
    however many epochs are run.
    """
    rd_star = _star(_resolve_law(law), "R_D_star", R_D_star)
    U = _seen_unique(tokens, unique_tokens)
    R_D = data_repetitions(tokens, unique_tokens)
    return U + U * rd_star * (1.0 - np.exp(-R_D / rd_star))


def params_for_unique_tokens(unique_tokens, law: ChinchillaLaw | None = None):
    """N_opt(U_D) = G·(U_D·G)^(β/α): the compute-optimal model size for U_D tokens (Hoffmann 2022
    Eq. 4 solved for N; datablations README ``D_to_N``). With α = β this is G²·U_D ≈ 0.051·U_D."""
    law = _resolve_law(law)
    U = _positive(unique_tokens, "unique_tokens")
    G = allocation_constant(law)
    return G * (U * G) ** (law.beta / law.alpha)


def effective_params(params, unique_tokens, R_N_star=None, law: ChinchillaLaw | None = None):
    """Effective parameters N' = U_N + U_N·R_N*·(1 − exp(−R_N/R_N*)) (Muennighoff 2023, [N']).

    U_N = min(N, N_opt(U_D)) and R_N = max(N/U_N − 1, 0): parameters beyond what the unique data
    can use decay with constant R_N* (5.309743 for the C4 fit). ``unique_tokens`` here is the
    number of unique tokens *seen* (pass min(U_D, D)).
    """
    law = _resolve_law(law)
    rn_star = _star(law, "R_N_star", R_N_star)
    N = _positive(params, "params")
    U_N = np.minimum(N, params_for_unique_tokens(unique_tokens, law))
    R_N = np.maximum(N / U_N - 1.0, 0.0)
    return U_N + U_N * rn_star * (1.0 - np.exp(-R_N / rn_star))


def repeated_token_value(tokens, unique_tokens, R_D_star=None, law: ChinchillaLaw | None = None):
    """dD'/dD = exp(−R_D/R_D*): the worth of the next repeated token relative to a fresh one
    (derivative of Muennighoff's [D']; 1 during the first epoch)."""
    rd_star = _star(_resolve_law(law), "R_D_star", R_D_star)
    return np.exp(-data_repetitions(tokens, unique_tokens) / rd_star)


# -- loss -----------------------------------------------------------------------------------------

def loss(params, tokens, unique_tokens, law: ChinchillaLaw | None = None):
    """L(N, D, U_D) = E + A/N'^α + B/D'^β (Muennighoff 2023, [L]), vectorised.

    ``unique_tokens`` is the unique data available; the run sees min(U_D, D) of it. The law
    (default the C4 fit) supplies E, A, B, α, β and R_D*, R_N* (``law.extra``).
    """
    law = _resolve_law(law)
    U = _seen_unique(tokens, unique_tokens)
    D_eff = effective_tokens(tokens, U, law=law)
    N_eff = effective_params(params, U, law=law)
    return law.E + law.A / N_eff**law.alpha + law.B / D_eff**law.beta


def isoflop_loss(compute_flops, params, unique_tokens, law: ChinchillaLaw | None = None):
    """Data-constrained loss of N parameters trained on D = C/(6N) tokens (C = 6·N·D, Kaplan Eq. 2.1)."""
    C = _positive(compute_flops, "compute_flops")
    N = _positive(params, "params")
    return loss(N, C / (FLOPS_PER_PARAM_TOKEN * N), unique_tokens, law)


# -- allocation under a unique-token cap ---------------------------------------------------------

@dataclass(frozen=True)
class DataConstrainedAllocation:
    """Optimum of L(N, D, U_D) on the line C = 6·N·D, with the Chinchilla point for comparison.

    ``chinchilla_*`` is the compute-optimal point of the same law ignoring the data cap (Hoffmann
    Eq. 4); ``chinchilla_loss`` is what it would really reach given the cap ([L]), and
    ``chinchilla_unconstrained_loss`` what it would reach on fresh data.
    """

    compute_flops: np.ndarray | float
    unique_tokens: np.ndarray | float
    params: np.ndarray | float
    tokens: np.ndarray | float
    epochs: np.ndarray | float
    loss: np.ndarray | float
    chinchilla_params: np.ndarray | float
    chinchilla_tokens: np.ndarray | float
    chinchilla_epochs: np.ndarray | float
    chinchilla_loss: np.ndarray | float
    chinchilla_unconstrained_loss: np.ndarray | float
    law: str = ""


def _scalar_or_array(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def optimal_allocation(
    compute_flops,
    unique_tokens,
    law: ChinchillaLaw | None = None,
    *,
    span_decades: float = 4.0,
    grid_points: int = 401,
    xatol: float = 1e-10,
) -> DataConstrainedAllocation:
    """Loss-minimising (N, D) for compute C with at most U_D unique tokens (Muennighoff 2023, Fig. 1;
    the datablations README's ``optimal_allocation``, which grid-searches the same problem).

    No closed form is known (datablations README). We minimise the [L] loss over x = log N on
    the line D = C/(6N): first a vectorised scan of ``grid_points`` points spanning
    ±``span_decades`` decades around the Chinchilla N_opt(C) (the min() caps make the curve kinked,
    so a scan guards against local minima), then a bounded Brent minimisation (scipy
    ``minimize_scalar``) between the scan point's neighbours, to |Δ log N| ≤ ``xatol``.
    Broadcasts over ``compute_flops`` and ``unique_tokens``.
    """
    from scipy.optimize import minimize_scalar

    law = _resolve_law(law)
    C = _positive(compute_flops, "compute_flops")
    U = _positive(unique_tokens, "unique_tokens")
    C, U = np.broadcast_arrays(C, U)
    n_chin = chinchilla_optimal_params(law, C)
    d_chin = chinchilla_optimal_tokens(law, C)

    span = span_decades * np.log(10.0)
    offsets = np.linspace(-span, span, grid_points)
    logN = np.log(n_chin)[..., None] + offsets
    grid = isoflop_loss(C[..., None], np.exp(logN), U[..., None], law)
    best = np.argmin(grid, axis=-1)

    step = offsets[1] - offsets[0]
    x_opt = np.empty(C.shape)
    for idx in np.ndindex(C.shape):
        x0 = logN[idx][best[idx]]
        c, u = C[idx], U[idx]
        res = minimize_scalar(
            lambda x, c=c, u=u: float(isoflop_loss(c, np.exp(x), u, law)),
            bounds=(x0 - step, x0 + step),
            method="bounded",
            options={"xatol": xatol},
        )
        x_opt[idx] = res.x if res.fun <= grid[idx][best[idx]] else x0

    N = np.exp(x_opt)
    D = C / (FLOPS_PER_PARAM_TOKEN * N)
    return DataConstrainedAllocation(
        compute_flops=_scalar_or_array(C),
        unique_tokens=_scalar_or_array(U),
        params=_scalar_or_array(N),
        tokens=_scalar_or_array(D),
        epochs=_scalar_or_array(D / U),
        loss=_scalar_or_array(loss(N, D, U, law)),
        chinchilla_params=_scalar_or_array(n_chin),
        chinchilla_tokens=_scalar_or_array(d_chin),
        chinchilla_epochs=_scalar_or_array(d_chin / U),
        chinchilla_loss=_scalar_or_array(loss(n_chin, d_chin, U, law)),
        chinchilla_unconstrained_loss=_scalar_or_array(law.loss(n_chin, d_chin)),
        law=law.name,
    )


# -- marginal return of one more epoch --------------------------------------------------------------

@dataclass(frozen=True)
class EpochReturn:
    """What one more epoch (U_D more tokens, at fixed N) buys.

    ``loss_decrease``: L(N, D, U_D) − L(N, D + U_D, U_D) (> 0 while repeating still helps).
    ``effective_tokens_gained``: D'(D + U_D) − D'(D).
    ``relative_token_value``: effective_tokens_gained / U_D, the average worth of a token of that
    epoch relative to a fresh token (which is worth 1).
    """

    loss_decrease: np.ndarray | float
    effective_tokens_gained: np.ndarray | float
    relative_token_value: np.ndarray | float
    extra_flops: np.ndarray | float


def marginal_epoch_return(params, tokens, unique_tokens, law: ChinchillaLaw | None = None) -> EpochReturn:
    """Loss decrease and token value of training one more epoch of U_D tokens at fixed N
    (Muennighoff 2023: returns shrink as exp(−R_D/R_D*); up to ~4 epochs ≈ fresh data).

    Answers "is another epoch worth it?" (datablations issue #6), which the argmin alone does not.
    """
    law = _resolve_law(law)
    N = _positive(params, "params")
    D = _positive(tokens, "tokens")
    U = _positive(unique_tokens, "unique_tokens")
    D_next = D + U
    gained = effective_tokens(D_next, U, law=law) - effective_tokens(D, U, law=law)
    return EpochReturn(
        loss_decrease=_scalar_or_array(loss(N, D, U, law) - loss(N, D_next, U, law)),
        effective_tokens_gained=_scalar_or_array(gained),
        relative_token_value=_scalar_or_array(gained / U),
        extra_flops=_scalar_or_array(FLOPS_PER_PARAM_TOKEN * N * U),
    )
