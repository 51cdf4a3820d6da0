"""Inference-aware allocation: Sardana et al. 2024, "Beyond Chinchilla-Optimal: Accounting for
Inference in Language Model Scaling Laws" (ICML 2024, arXiv:2401.00448; code
nikhilsardana/beyond-chinchilla, Apache-2.0).

A model is trained once and served many times. For a quality target ℓ and a lifetime inference
demand, find the (N, D_tr) on the iso-loss curve L(N, D_tr) = ℓ of a Chinchilla-form law that
minimises lifetime cost:

* FLOPs (paper Eq. 3):  min 6·N·D_tr + 2·N·D_inf
* dollars (paper Eq. 6): min 6·N·D_tr·c_tr/MFU_tr + 2·N·(T_in·c_inf/MFU_prefill + T_out·c_inf/MFU_decode),
  with c = $ per FLOP = (price per hour)/(3600 · peak FLOP/s).

(Equation numbers as recorded in ``shared/reference/scaling_laws.md`` §3.4.) The dollar form is the
FLOPs form with an effective inference demand D_inf_eff = c_inf·(T_in/MFU_prefill + T_out/MFU_decode)
/ (c_tr/MFU_tr), so both share one solver. Eliminating N with the constraint,
N(D) = (A/(ℓ − E − B·D^−β))^(1/α), and setting d/dD log[N(D)·(6D + 2D_inf)] = 0 gives

    B·(1 + β/α)·D^−β + (β·B·D_inf/(3α))·D^(−β−1) − (ℓ − E) = 0

(the root function of ``Model.compute_optimal_train_tokens`` in the repository). Its left side
falls strictly in D, so the root is unique; it lies between the D where either term alone equals
ℓ − E and the D where each equals (ℓ − E)/2. We find it by a vectorised bisection in log D (no
scipy, no starting guess; the repository uses Newton from D = 1e8).

The comparison model is the equal-loss Chinchilla-optimal one (D_inf = 0):
N = (A·(1 + α/β)/(ℓ − E))^(1/α), D = (B·(1 + β/α)/(ℓ − E))^(1/β).

Every ratio is "optimum / equal-loss Chinchilla", as printed by the repository's scripts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..base.checks import finite_array as _finite
from ..base.errors import InputError
from ..base.units import SECONDS_PER_HOUR
from .chinchilla import FLOPS_PER_PARAM_TOKEN, ChinchillaLaw, check_target_loss

INFERENCE_FLOPS_PER_PARAM_TOKEN = 2.0  # forward pass only (Kaplan Eq. 2.1; Sardana §2)


def _scalar_or_array(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def _reducible(law: ChinchillaLaw, target_loss):
    """ℓ − E, after checking ℓ is finite and above E (InputError otherwise)."""
    check_target_loss(law, target_loss, field="target_loss")
    return np.asarray(target_loss, dtype=float) - law.E


# -- closed forms --------------------------------------------------------------------------------

def chinchilla_params_for_loss(law: ChinchillaLaw, target_loss):
    """Training-compute-optimal N reaching ℓ: (A·(1 + α/β)/(ℓ − E))^(1/α) (Hoffmann Eq. 4 on the
    iso-loss curve; beyond-chinchilla ``utils.chinchilla_params_from_loss``)."""
    r = _reducible(law, target_loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, (law.A * (1.0 + law.alpha / law.beta) / r) ** (1.0 / law.alpha), np.inf)


def chinchilla_tokens_for_loss(law: ChinchillaLaw, target_loss):
    """Training-compute-optimal D reaching ℓ: (B·(1 + β/α)/(ℓ − E))^(1/β) (beyond-chinchilla
    ``utils.chinchilla_tokens_from_loss``)."""
    r = _reducible(law, target_loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, (law.B * (1.0 + law.beta / law.alpha) / r) ** (1.0 / law.beta), np.inf)


def params_for_loss_and_tokens(law: ChinchillaLaw, target_loss, tokens):
    """N with L(N, D) = ℓ at fixed D: (A/(ℓ − E − B·D^−β))^(1/α); inf where D alone cannot reach ℓ
    (Hoffmann Eq. 2 solved for N; beyond-chinchilla ``utils.params_from_loss_and_tokens``)."""
    return _params_on_iso_loss(law, _reducible(law, target_loss), _finite(tokens, "tokens"))


def _params_on_iso_loss(law: ChinchillaLaw, reducible, D):
    """(A/(r − B·D^−β))^(1/α) for r = ℓ − E, unvalidated; inf where unreachable (NaN D included)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = reducible - law.B / D**law.beta
        return np.where(rest > 0, (law.A / np.where(rest > 0, rest, 1.0)) ** (1.0 / law.alpha), np.inf)


def lifetime_flops(params, training_tokens, inference_tokens):
    """6·N·D_tr + 2·N·D_inf: training plus inference FLOPs over a model's life (Sardana Eq. 3)."""
    N = np.asarray(params, dtype=float)
    return N * (FLOPS_PER_PARAM_TOKEN * np.asarray(training_tokens, dtype=float)
                + INFERENCE_FLOPS_PER_PARAM_TOKEN * np.asarray(inference_tokens, dtype=float))


def usd_per_flop(price_usd_per_device_hour, peak_flops_per_s):
    """$ per FLOP at 100 % utilisation: price per GPU-hour / (3600 s · dense peak FLOP/s)
    (beyond-chinchilla ``cost_calculator.cost_per_flop``). Divide by MFU for $ per useful FLOP."""
    price = _finite(price_usd_per_device_hour, "price_usd_per_device_hour")
    peak = _finite(peak_flops_per_s, "peak_flops_per_s")
    return price / (SECONDS_PER_HOUR * peak)


# -- the 1-D solve -------------------------------------------------------------------------------

def optimal_training_tokens(law: ChinchillaLaw, target_loss, inference_tokens, iterations: int = 200):
    """D_tr minimising 6·N·D_tr + 2·N·D_inf on L(N, D_tr) = ℓ (Sardana Eq. 3), vectorised.

    Root of B(1 + β/α)·D^−β + (βB·D_inf/(3α))·D^(−β−1) = ℓ − E by bisection in log D between
    D_lo = max((c1/r)^(1/β), (c2/r)^(1/(β+1))) (left side ≥ r) and D_hi, the same with 2c1, 2c2
    (left side ≤ r); the bracket is at most a factor 2^(1/β) wide, so ~60 halvings reach double
    precision. ``inference_tokens`` = 0 returns the Chinchilla D exactly.
    """
    r = _reducible(law, target_loss)
    d_inf = _finite(inference_tokens, "inference_tokens", inclusive=True)
    a, b = law.alpha, law.beta
    c1 = law.B * (1.0 + b / a)
    c2 = b * law.B * d_inf / (3.0 * a)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.maximum(np.log(c1 / r) / b, np.log(c2 / r) / (b + 1.0))
        hi = np.maximum(np.log(2.0 * c1 / r) / b, np.log(2.0 * c2 / r) / (b + 1.0))
    lo, hi = np.broadcast_arrays(lo, hi)
    lo, hi = lo.copy(), hi.copy()
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        positive = c1 * np.exp(-b * mid) + c2 * np.exp(-(b + 1.0) * mid) > r
        lo = np.where(positive, mid, lo)
        hi = np.where(positive, hi, mid)
        with np.errstate(invalid="ignore"):
            if np.all(~(hi - lo > 1e-15 * np.maximum(1.0, np.abs(hi)))):
                break
    return np.exp(0.5 * (lo + hi))


# -- results -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InferenceAwarePlan:
    """Lifetime-optimal model at loss ℓ and the equal-loss Chinchilla model, with ratios
    (optimum / Chinchilla). Cost fields are None for the FLOPs objective. FLOPs are model FLOPs."""

    target_loss: np.ndarray | float
    inference_tokens: np.ndarray | float
    params: np.ndarray | float
    tokens: np.ndarray | float
    training_flops: np.ndarray | float
    inference_flops: np.ndarray | float
    total_flops: np.ndarray | float
    chinchilla_params: np.ndarray | float
    chinchilla_tokens: np.ndarray | float
    chinchilla_total_flops: np.ndarray | float
    params_ratio: np.ndarray | float
    tokens_ratio: np.ndarray | float
    flops_ratio: np.ndarray | float
    objective: str = "flops"
    law: str = ""
    training_cost_usd: np.ndarray | float | None = None
    inference_cost_usd: np.ndarray | float | None = None
    total_cost_usd: np.ndarray | float | None = None
    chinchilla_total_cost_usd: np.ndarray | float | None = None
    cost_ratio: np.ndarray | float | None = None


def _plan(law: ChinchillaLaw, target_loss, N, D, n_c, d_c, d_inf, objective: str, **extra) -> InferenceAwarePlan:
    """The plan at (N, D) beside the equal-loss Chinchilla-optimal model (n_c, d_c), with FLOPs and ratios."""
    total = lifetime_flops(N, D, d_inf)
    total_c = lifetime_flops(n_c, d_c, d_inf)
    return InferenceAwarePlan(
        target_loss=_scalar_or_array(target_loss),
        inference_tokens=_scalar_or_array(d_inf),
        params=_scalar_or_array(N),
        tokens=_scalar_or_array(D),
        training_flops=_scalar_or_array(FLOPS_PER_PARAM_TOKEN * N * D),
        inference_flops=_scalar_or_array(INFERENCE_FLOPS_PER_PARAM_TOKEN * N * d_inf),
        total_flops=_scalar_or_array(total),
        chinchilla_params=_scalar_or_array(n_c),
        chinchilla_tokens=_scalar_or_array(d_c),
        chinchilla_total_flops=_scalar_or_array(total_c),
        params_ratio=_scalar_or_array(N / n_c),
        tokens_ratio=_scalar_or_array(D / d_c),
        flops_ratio=_scalar_or_array(total / total_c),
        objective=objective,
        law=law.name,
        **extra,
    )


def _check_solution(law: ChinchillaLaw, N, D):
    """InputError when a law with scalar parameters yields no finite optimum. For a law of draws
    (array parameters, :meth:`ChinchillaLaw.draws`) the draws that cannot reach ℓ stay NaN."""
    if np.ndim(law.E) > 0:
        return
    if not (np.all(np.isfinite(N)) and np.all(np.isfinite(D)) and np.all(N > 0)):
        raise InputError(
            "target_loss", "no finite model reaches this loss under the law (check E and the target)"
        )


def _quiet_draws(func):
    """Run ``func`` with numpy's divide/invalid warnings off: only the draws of a law of draws that
    cannot reach ℓ produce inf/NaN there (a scalar law raises InputError first)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with np.errstate(divide="ignore", invalid="ignore"):
            return func(*args, **kwargs)

    return wrapper


@_quiet_draws
def compute_optimal(law: ChinchillaLaw, target_loss, inference_tokens) -> InferenceAwarePlan:
    """Minimise lifetime FLOPs 6·N·D_tr + 2·N·D_inf subject to L(N, D_tr) = ℓ (Sardana Eq. 3;
    beyond-chinchilla ``compute_optimal.py``). ``inference_tokens`` = D_inf, input plus output
    tokens served over the model's life. Raises InputError for ℓ ≤ E or a bad demand."""
    D = optimal_training_tokens(law, target_loss, inference_tokens)
    N = _params_on_iso_loss(law, _reducible(law, target_loss), D)
    _check_solution(law, N, D)
    d_inf = np.asarray(inference_tokens, dtype=float)
    n_c = chinchilla_params_for_loss(law, target_loss)
    d_c = chinchilla_tokens_for_loss(law, target_loss)
    return _plan(law, target_loss, N, D, n_c, d_c, d_inf, "flops")


def lifetime_cost_usd(
    params, training_tokens, input_tokens, output_tokens,
    train_usd_per_flop, inference_usd_per_flop, train_mfu, prefill_mfu, decode_mfu,
):
    """(training $, inference $) =
    (6·N·D_tr·c_tr/MFU_tr, 2·N·(T_in·c_inf/MFU_prefill + T_out·c_inf/MFU_decode))
    (Sardana Eq. 6; beyond-chinchilla ``cost_calculator.total_cost``). MFUs are model-FLOP utilisations."""
    N = np.asarray(params, dtype=float)
    D = np.asarray(training_tokens, dtype=float)
    T_in = np.asarray(input_tokens, dtype=float)
    T_out = np.asarray(output_tokens, dtype=float)
    train = FLOPS_PER_PARAM_TOKEN * N * D * train_usd_per_flop / train_mfu
    tokens_over_mfu = T_in / prefill_mfu + T_out / decode_mfu
    serve = INFERENCE_FLOPS_PER_PARAM_TOKEN * N * inference_usd_per_flop * tokens_over_mfu
    return train, serve


@_quiet_draws
def cost_optimal(
    law: ChinchillaLaw,
    target_loss,
    input_tokens,
    output_tokens,
    *,
    train_usd_per_flop,
    inference_usd_per_flop,
    train_mfu,
    prefill_mfu,
    decode_mfu,
) -> InferenceAwarePlan:
    """Minimise lifetime dollars (Sardana Eq. 6; beyond-chinchilla ``cost_optimal.py``) subject to
    L(N, D_tr) = ℓ. ``input_tokens``/``output_tokens`` are lifetime totals (requests × tokens per
    request), prefilled and decoded at their own MFU. $ per FLOP from :func:`usd_per_flop`.

    Reduces to :func:`optimal_training_tokens` with D_inf_eff = c_inf·(T_in/MFU_prefill +
    T_out/MFU_decode)/(c_tr/MFU_tr). ``flops_ratio`` compares FLOPs with T_in + T_out served.
    """
    T_in = _finite(input_tokens, "input_tokens", inclusive=True)
    T_out = _finite(output_tokens, "output_tokens", inclusive=True)
    c_tr = _finite(train_usd_per_flop, "train_usd_per_flop")
    c_inf = _finite(inference_usd_per_flop, "inference_usd_per_flop")
    u_tr = _finite(train_mfu, "train_mfu", maximum=1.0)
    u_pre = _finite(prefill_mfu, "prefill_mfu", maximum=1.0)
    u_dec = _finite(decode_mfu, "decode_mfu", maximum=1.0)
    d_inf_eff = c_inf * (T_in / u_pre + T_out / u_dec) / (c_tr / u_tr)
    D = optimal_training_tokens(law, target_loss, d_inf_eff)
    N = _params_on_iso_loss(law, _reducible(law, target_loss), D)
    _check_solution(law, N, D)
    n_c = chinchilla_params_for_loss(law, target_loss)
    d_c = chinchilla_tokens_for_loss(law, target_loss)
    args = (T_in, T_out, c_tr, c_inf, u_tr, u_pre, u_dec)
    train, serve = lifetime_cost_usd(N, D, *args)
    train_c, serve_c = lifetime_cost_usd(n_c, d_c, *args)
    d_inf = T_in + T_out
    return _plan(
        law, target_loss, N, D, n_c, d_c, d_inf, "usd",
        training_cost_usd=_scalar_or_array(train),
        inference_cost_usd=_scalar_or_array(serve),
        total_cost_usd=_scalar_or_array(train + serve),
        chinchilla_total_cost_usd=_scalar_or_array(train_c + serve_c),
        cost_ratio=_scalar_or_array((train + serve) / (train_c + serve_c)),
    )
