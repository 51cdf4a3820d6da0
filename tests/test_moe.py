"""Krajewski et al. 2024 fine-grained MoE law, cost model (Eq. 10) and Table 2 optima."""

import math

import numpy as np
import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.laws import moe
from scaling_planner.laws.chinchilla import compute_for_loss

# Table 2 of Krajewski et al. 2024 (reference §3.5): (model label = active params, D, G, FLOPs, loss)
TABLE2 = [
    (100e6, 4.37e9, 8, 2.95e18, 3.133),
    (1e9, 28.94e9, 16, 1.93e20, 2.491),
    (3e9, 72.90e9, 16, 1.41e21, 2.245),
    (7e9, 137.6e9, 32, 6.46e21, 2.076),
    (70e9, 941.07e9, 32, 4.16e23, 1.694),
    (300e9, 2.96e12, 64, 5.69e24, 1.503),
    (1e12, 7.94e12, 64, 4.97e25, 1.367),
]


def _shape_from_active(active):
    """n_blocks, d_model of the paper's shape rule (d_model = 64·n_blocks) for 12·d²·n = active."""
    n = (active / (12 * 64**2)) ** (1 / 3)
    return n, 64 * n


def test_loss_formula_values():
    # Eq. 9 at N = 1e9, D = 1e10, G = 1 written out by hand with Table 1's MoE row.
    want = 0.47 + (2.1 + 18.1) / 1e9**0.115 + 30.8 / 1e10**0.147
    assert moe.loss(1e9, 1e10, 1) == pytest.approx(want, rel=1e-14)
    # Finer experts lower the loss at fixed N, D; the gain saturates (g/G^γ -> 0).
    L = moe.loss(1e9, 1e10, np.array([1, 2, 8, 64, 1e9]))
    assert np.all(np.diff(L) < 0)
    assert L[-1] == pytest.approx(0.47 + 18.1 / 1e9**0.115 + 30.8 / 1e10**0.147, abs=1e-5)


def test_dense_row_is_a_chinchilla_law():
    law = moe.dense_law()
    assert law.loss(1e9, 1e10) == pytest.approx(0.47 + 16.3 / 1e9**0.126 + 26.7 / 1e10**0.127, rel=1e-14)


def test_granularity_and_params_from_shape():
    assert moe.granularity(4096, 512) == 8
    assert moe.total_params(1024, 16) == (8 * 64 + 4) * 1024**2 * 16
    assert moe.active_params(1024, 16) == 12 * 1024**2 * 16


@pytest.mark.parametrize(("active", "D", "G", "flops", "_loss"), TABLE2)
def test_eq10_reproduces_table2_flops(active, D, G, flops, _loss):
    # c_f = 6, c_r = 14 (inferred; see module docstring). Table 2 labels models by rounded active
    # size (100M, 1B, ...), so the shape we rebuild from the label is off by the rounding; across
    # the rows that leaves ≤ 0.5 % between Eq. 10 and the printed FLOPs. We allow 1 %.
    n, d = _shape_from_active(active)
    assert moe.training_flops(d, n, D, G) == pytest.approx(flops, rel=1e-2)


@pytest.mark.parametrize(("active", "D", "G", "flops", "loss"), TABLE2)
def test_compute_optimal_reproduces_table2(active, D, G, flops, loss):
    r = moe.compute_optimal(flops)
    # G: exact (the search is over powers of two, as the table reports).
    assert r.granularity == G
    # Active size and tokens: observed 1.4–2.5 % above and 1.6–2.2 % below the table; the table's
    # sizes are rounded labels and its coefficients (Table 1) are rounded to 3 digits.
    assert r.active_params == pytest.approx(active, rel=0.035)
    assert r.tokens == pytest.approx(D, rel=0.03)
    # Loss: ours is 0.011–0.024 below the table in every row (see module docstring: consistent
    # with the rounding of Table 1's exponents; not fully explained). 0.03 bounds that gap.
    assert r.loss == pytest.approx(loss, abs=0.03)
    assert r.loss < loss
    # The returned point spends the budget exactly.
    assert moe.training_flops(r.d_model, r.n_blocks, r.tokens, r.granularity) == pytest.approx(flops, rel=1e-12)
    assert r.params == pytest.approx(float(moe.total_params(r.d_model, r.n_blocks)), rel=1e-12)


def test_moe_beats_dense_by_about_20x_at_1e20():
    # Paper claim (reference §3.5): at 1e20 FLOPs the compute-optimal MoE matches a dense model
    # trained with ~20× the compute. We get 21×, computing the dense side as the compute-optimal
    # dense law (Table 1 dense row) reaching the same loss. The paper's ">40× beyond 1e25" gives
    # ~32× here and is not asserted.
    r = moe.compute_optimal(1e20)
    ratio = float(compute_for_loss(moe.dense_law(), r.loss)) / 1e20
    assert 15 < ratio < 30


@pytest.mark.parametrize(
    ("args", "field"),
    [((0.0, 1e10, 1), "params"), ((1e9, -1.0, 1), "tokens"), ((1e9, 1e10, 0.5), "granularity"),
     ((math.nan, 1e10, 1), "params"), ((1e9, 1e10, math.inf), "granularity")],
)
def test_bad_loss_input(args, field):
    with pytest.raises(InputError) as exc:
        moe.loss(*args)
    assert exc.value.field == field


def test_bad_budget_and_granularities():
    with pytest.raises(InputError, match=r"^compute_flops: must be a finite number > 0"):
        moe.compute_optimal(-1.0)
    with pytest.raises(InputError, match="granularities"):
        moe.compute_optimal(1e20, granularities=[0.5, 2])
    with pytest.raises(InputError, match="granularities"):
        moe.compute_optimal(1e20, granularities=[])
