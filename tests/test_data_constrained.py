"""Muennighoff et al. 2023 data-constrained law against the huggingface/datablations README."""

import math

import numpy as np
import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.laws import data_constrained as dc
from scaling_planner.laws.presets import get_law

LAW = get_law("muennighoff2023-c4")


# README "Parametric Fit" (datablations @ 1370131): scaling_law(...) prints 2.2256440889984477 and
# 2.2269634075087867. Same formula, same parameters, same float64 arithmetic: only rounding-order
# differences remain (~1e-15), so 1e-9 absolute is a wide but meaningful bound (README prints 10+ digits).
@pytest.mark.parametrize(
    ("N", "D", "U", "expected"),
    [(6.34e9, 242e9, 25e9, 2.2256440890), (8.67e9, 178e9, 25e9, 2.2269634075)],
)
def test_readme_loss_golden(N, D, U, expected):
    assert dc.loss(N, D, U) == pytest.approx(expected, abs=1e-9)


def test_readme_figure1_ordering():
    # README: the 6.34B model on 242B tokens "is better" than 8.67B on 178B (same compute, 25B unique).
    assert dc.loss(6.34e9, 242e9, 25e9) < dc.loss(8.67e9, 178e9, 25e9)


def _readme_grid_search(C, U_base):
    """The README's allocation: 500 factors i in linspace(1.0001, 3); D = D_opt·i, N = N_opt/i and
    the mirror D = D_opt/i, N = N_opt·i, with U = min(U_base, D); keep the lowest loss.
    Written here from the README's description to pin down the grid the golden values came from."""
    n0, d0 = LAW.optimal_params(C), LAW.optimal_tokens(C)
    i = np.linspace(1.0001, 3.0, 500)
    N = np.concatenate([n0 / i, n0 * i])
    D = np.concatenate([d0 * i, d0 / i])
    losses = dc.loss(N, D, np.minimum(U_base, D))
    k = int(np.argmin(losses))
    return losses[k], D[k], N[k], i


def test_readme_grid_reproduced_exactly():
    # README prints 237336955477.55075 tokens, 9.49347821910203 epochs, 7022364735.879969 params.
    # Evaluating our loss on the README's grid must land on the same grid point (rel 1e-12).
    _, tokens, params, _ = _readme_grid_search(1e22, 25e9)
    assert tokens == pytest.approx(237336955477.55075, rel=1e-12)
    assert params == pytest.approx(7022364735.879969, rel=1e-12)
    assert tokens / 25e9 == pytest.approx(9.49347821910203, rel=1e-12)


def test_optimal_allocation_matches_readme_within_grid_resolution():
    res = dc.optimal_allocation(1e22, 25e9)
    grid_loss, grid_D, _, i = _readme_grid_search(1e22, 25e9)
    # Why this tolerance: the README's grid steps the factor i by (3 − 1.0001)/499 ≈ 0.0040 and
    # its optimum sits at i = D/D_opt ≈ 1.313, so neighbouring grid points differ by ≈ 0.31 % in N
    # and D. The true (continuous) optimum lies within half a step of the grid's best point:
    # ≤ 0.0020/1.313 ≈ 0.153 % relative. We allow 0.16 %.
    half_step_rel = 0.5 * (i[1] - i[0]) / (grid_D / LAW.optimal_tokens(1e22))
    assert half_step_rel < 1.6e-3
    assert res.tokens == pytest.approx(2.37337e11, rel=1.6e-3)
    assert res.params == pytest.approx(7.02236e9, rel=1.6e-3)
    assert res.epochs == pytest.approx(9.4935, rel=1.6e-3)
    # A continuous minimiser can only do at least as well as the grid (up to float noise).
    assert res.loss <= grid_loss + 1e-12
    assert res.tokens * res.params * 6 == pytest.approx(1e22, rel=1e-12)


def test_allocation_reports_chinchilla_point():
    res = dc.optimal_allocation(1e22, 25e9)
    assert res.chinchilla_params == pytest.approx(float(LAW.optimal_params(1e22)), rel=1e-12)
    assert res.chinchilla_epochs == pytest.approx(res.chinchilla_tokens / 25e9)
    # Under the cap the Chinchilla point is worse than the constrained optimum, and worse than it
    # would be on fresh data; the optimum trains a smaller model for more epochs (README, Fig. 1).
    assert res.loss < res.chinchilla_loss
    assert res.chinchilla_unconstrained_loss < res.chinchilla_loss
    assert res.params < res.chinchilla_params and res.epochs > res.chinchilla_epochs


def test_allocation_without_binding_cap_is_chinchilla():
    # With 1e15 unique tokens and C = 1e21, the Chinchilla point uses < 1 epoch: the cap does not
    # bind and the law reduces to Hoffmann's, whose optimum is N_opt(C) (Brent tolerance 1e-10 in log N).
    res = dc.optimal_allocation(1e21, 1e15)
    assert res.params == pytest.approx(res.chinchilla_params, rel=1e-6)
    assert res.loss == pytest.approx(res.chinchilla_unconstrained_loss, abs=1e-12)


def test_allocation_broadcasts():
    res = dc.optimal_allocation(np.array([1e20, 1e22, 1e24]), 25e9)
    assert res.params.shape == (3,)
    assert np.all(np.diff(res.epochs) > 0)
    assert res.epochs[1] == pytest.approx(dc.optimal_allocation(1e22, 25e9).epochs, rel=1e-9)


def test_effective_tokens_limits():
    U = 1e10
    # One epoch or less: every token is fresh.
    assert dc.effective_tokens(U, U) == pytest.approx(U)
    assert dc.effective_tokens(0.5 * U, U) == pytest.approx(0.5 * U)
    # Many epochs: D' saturates at U·(1 + R_D*).
    assert dc.effective_tokens(1e6 * U, U) == pytest.approx(U * (1 + 15.387756), rel=1e-9)
    # Few epochs are nearly as good as fresh data (paper: up to ~4 epochs ≈ unique data).
    assert dc.effective_tokens(4 * U, U) / (4 * U) > 0.92


def test_effective_params_and_unique_token_model():
    U = 25e9
    n_opt = dc.params_for_unique_tokens(U)
    assert n_opt / U == pytest.approx(0.051, rel=0.01)  # reference §3.3: U_N ≈ 0.051·U_D when α = β
    assert dc.effective_params(0.5 * n_opt, U) == pytest.approx(0.5 * n_opt)  # no excess parameters
    assert dc.effective_params(1e6 * n_opt, U) == pytest.approx(n_opt * (1 + 5.309743), rel=1e-9)


def test_epochs_and_repeated_token_value():
    assert dc.epochs(100e9, 25e9) == 4.0
    assert dc.repeated_token_value(25e9, 25e9) == 1.0
    rd = 3.0  # epochs 4 -> R_D = 3
    assert dc.repeated_token_value(100e9, 25e9) == pytest.approx(math.exp(-rd / 15.387756))


def test_marginal_epoch_return_diminishes():
    N, U = 7e9, 25e9
    D = U * np.arange(1, 60, dtype=float)
    ret = dc.marginal_epoch_return(N, D, U)
    assert np.all(ret.loss_decrease > 0)
    assert np.all(np.diff(ret.loss_decrease) < 0)
    assert np.all(np.diff(ret.relative_token_value) < 0)
    assert 0 < ret.relative_token_value[-1] < ret.relative_token_value[0] <= 1
    # The epoch's average token value is the mean of exp(−R_D/R_D*) over that epoch, which lies
    # between the values at its two ends.
    first = ret.relative_token_value[0]
    assert math.exp(-1 / 15.387756) < first < 1.0
    assert ret.extra_flops == pytest.approx(6 * N * U)


def test_law_without_decay_constants_is_rejected():
    with pytest.raises(InputError, match="R_D_star"):
        dc.loss(1e9, 1e11, 1e10, law=get_law("hoffmann2022"))
    # ... unless given explicitly
    out = dc.effective_tokens(2e10, 1e10, R_D_star=15.0, law=get_law("hoffmann2022"))
    assert 1e10 < out < 2e10


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(params=0.0, tokens=1e11, unique_tokens=1e10), "params"),
        (dict(params=-1e9, tokens=1e11, unique_tokens=1e10), "params"),
        (dict(params=1e9, tokens=math.nan, unique_tokens=1e10), "tokens"),
        (dict(params=1e9, tokens=-1.0, unique_tokens=1e10), "tokens"),
        (dict(params=1e9, tokens=1e11, unique_tokens=0.0), "unique_tokens"),
        (dict(params=1e9, tokens=1e11, unique_tokens=math.inf), "unique_tokens"),
    ],
)
def test_bad_input_names_field(kwargs, field):
    with pytest.raises(InputError, match=rf"^{field}: .*> 0") as exc:
        dc.loss(**kwargs)
    assert exc.value.field == field


@pytest.mark.parametrize(("C", "U", "field"), [(0.0, 25e9, "compute_flops"), (1e22, -1.0, "unique_tokens"),
                                               (math.nan, 25e9, "compute_flops")])
def test_allocation_bad_input(C, U, field):
    with pytest.raises(InputError) as exc:
        dc.optimal_allocation(C, U)
    assert exc.value.field == field
