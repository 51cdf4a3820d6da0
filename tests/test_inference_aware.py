"""Sardana et al. 2024 inference-aware allocation against nikhilsardana/beyond-chinchilla's README."""

import math

import numpy as np
import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.laws import inference_aware as ia
from scaling_planner.laws.chinchilla import ChinchillaLaw, frontier_tokens_for_params
from scaling_planner.laws.presets import get_law

SARDANA = get_law("sardana2024")  # α=0.336, β=0.283, A=406.4, B=410.7, E=1.69 (repo utils.py)
HOFFMANN = get_law("hoffmann2022")


def printed(text: str):
    """A value as printed, with pytest.approx allowing half a unit in its last printed digit:
    'same printed value' is exactly what a golden value read off a README can promise."""
    mantissa = text.lower().split("e")[0]
    exponent = int(text.lower().split("e")[1]) if "e" in text.lower() else 0
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return pytest.approx(float(text), abs=0.5 * 10.0 ** (exponent - decimals))


def test_readme_compute_optimal_example():
    # README / tests.sh: `compute_optimal.py --loss 1.947 --inference_tokens 2e12` prints
    # N 2.418e+10, D 2.657e+12 and round(100·ratio, 2) = 70.96 / 146.77 / 95.22.
    p = ia.compute_optimal(SARDANA, 1.947, 2e12)
    assert p.params == printed("2.418e10")
    assert p.tokens == printed("2.657e12")
    assert round(100 * p.params_ratio, 2) == 70.96
    assert round(100 * p.tokens_ratio, 2) == 146.77
    assert round(100 * p.flops_ratio, 2) == 95.22
    assert p.objective == "flops" and p.cost_ratio is None


def test_readme_cost_optimal_example():
    # README `cost_optimal.py` example: loss 1.947, 1e10 requests × (1000 in + 250 out) tokens;
    # train on A100_80 at $1.40/h in bf16 (cost_calculator: A100 FP16 peak 3.12e14 FLOP/s, the
    # default --train_dtype), serve on A100_40 at $0.60/h in int8 (A100 INT8 6.24e14 OP/s);
    # MFU train 0.5, prefill 0.4, decode ("generation") 0.2. Requests map to tokens as
    # T_in = reqs·input_tok, T_out = reqs·output_tok. Printed: N 2.053e+10, D 3.302e+12,
    # 60.23 % params, 182.41 % tokens, 88.76 % cost.
    p = ia.cost_optimal(
        SARDANA, 1.947, 1e10 * 1000, 1e10 * 250,
        train_usd_per_flop=ia.usd_per_flop(1.40, 3.12e14),
        inference_usd_per_flop=ia.usd_per_flop(0.60, 6.24e14),
        train_mfu=0.5, prefill_mfu=0.4, decode_mfu=0.2,
    )
    assert p.params == printed("2.053e10")
    assert p.tokens == printed("3.302e12")
    assert round(100 * p.params_ratio, 2) == 60.23
    assert round(100 * p.tokens_ratio, 2) == 182.41
    assert round(100 * p.cost_ratio, 2) == 88.76
    assert p.total_cost_usd == pytest.approx(p.training_cost_usd + p.inference_cost_usd)
    assert p.inference_tokens == 1.25e13


def test_hoffmann_table_reference_3_4():
    # shared/reference/scaling_laws.md §3.4, Hoffmann rounded law, target = loss of the
    # Chinchilla-optimal 7B model. The table's digits are reproduced with that loss unrounded
    # (2.0944399; the table labels it 2.0944): with ℓ rounded to 2.0944 the 1e11 row's lifetime
    # FLOPs print 2.098e22, not 2.097e22. Values printed to 3–4 significant digits.
    target = float(HOFFMANN.loss(7e9, frontier_tokens_for_params(HOFFMANN, 7e9)))
    assert target == printed("2.0944")
    rows = [
        (1e11, "6.34e9", "5.18e11", "82", "2.097e22", "2.104e22"),
        (1e12, "4.26e9", "8.42e11", "198", "3.00e22", "3.36e22"),
        (1e13, "2.32e9", "2.51e12", "1080", "8.13e22", "1.60e23"),
    ]
    p = ia.compute_optimal(HOFFMANN, target, np.array([r[0] for r in rows]))
    for k, (_, n, d, ratio, total, chin) in enumerate(rows):
        assert p.params[k] == printed(n)
        assert p.tokens[k] == printed(d)
        assert p.tokens[k] / p.params[k] == pytest.approx(float(ratio), abs=0.5 if len(ratio) < 4 else 5)
        assert p.total_flops[k] == printed(total)
        assert p.chinchilla_total_flops[k] == printed(chin)
    assert p.chinchilla_params == pytest.approx(7e9, rel=1e-9)


def test_zero_inference_is_chinchilla():
    p = ia.compute_optimal(SARDANA, 2.0, 0.0)
    assert p.params_ratio == pytest.approx(1.0, rel=1e-12)
    assert p.tokens_ratio == pytest.approx(1.0, rel=1e-12)
    # ...and the Chinchilla point it returns is the compute-optimal one of Hoffmann Eq. 4.
    C = 6 * p.chinchilla_params * p.chinchilla_tokens
    assert p.chinchilla_params == pytest.approx(float(SARDANA.optimal_params(C)), rel=1e-10)


def test_solution_is_on_the_iso_loss_curve_and_minimal():
    ell, d_inf = 2.1, 5e12
    p = ia.compute_optimal(SARDANA, ell, d_inf)
    assert SARDANA.loss(p.params, p.tokens) == pytest.approx(ell, abs=1e-12)
    # Independent check of the stationarity derivation: scan the iso-loss curve directly.
    D = p.tokens * np.exp(np.linspace(-0.5, 0.5, 2001))
    N = ia.params_for_loss_and_tokens(SARDANA, ell, D)
    total = ia.lifetime_flops(N, D, d_inf)
    assert np.argmin(total) == 1000
    assert p.total_flops <= total.min() * (1 + 1e-12)


def test_more_demand_means_smaller_longer_trained_models():
    p = ia.compute_optimal(SARDANA, 2.0, np.logspace(9, 14, 11))
    assert np.all(np.diff(p.params) < 0) and np.all(np.diff(p.tokens) > 0)
    assert np.all(p.flops_ratio <= 1.0 + 1e-12)


def test_cost_form_equals_flops_form_with_equal_prices_and_mfus():
    # c_tr = c_inf and all MFUs equal: dollars are FLOPs times a constant.
    c = ia.usd_per_flop(2.0, 9.89e14)
    p_usd = ia.cost_optimal(SARDANA, 2.0, 3e12, 1e12, train_usd_per_flop=c, inference_usd_per_flop=c,
                            train_mfu=0.4, prefill_mfu=0.4, decode_mfu=0.4)
    p_flops = ia.compute_optimal(SARDANA, 2.0, 4e12)
    assert p_usd.params == pytest.approx(p_flops.params, rel=1e-12)
    assert p_usd.cost_ratio == pytest.approx(p_flops.flops_ratio, rel=1e-12)


def test_usd_per_flop():
    # $2/h on a 9.89e14 FLOP/s H100 (bf16 dense) = 2 / (3600 · 9.89e14) $ per FLOP.
    assert ia.usd_per_flop(2.0, 9.89e14) == pytest.approx(2.0 / 3.5604e18, rel=1e-12)


@pytest.mark.parametrize("bad", [1.69, 1.5, math.nan, math.inf])
def test_target_at_or_below_E_or_not_finite(bad):
    with pytest.raises(InputError) as exc:
        ia.compute_optimal(SARDANA, bad, 1e12)
    assert exc.value.field == "target_loss"


def test_target_error_message_states_the_allowed_range():
    with pytest.raises(InputError, match=r"target_loss: .*irreducible loss E = 1\.6900"):
        ia.compute_optimal(SARDANA, 1.6, 1e12)


@pytest.mark.parametrize("bad", [-1.0, math.nan, "lots"])
def test_bad_inference_tokens(bad):
    with pytest.raises(InputError, match=r"^inference_tokens: must be a finite number >= 0"):
        ia.compute_optimal(SARDANA, 2.0, bad)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        (dict(train_mfu=0.0), "train_mfu"),
        (dict(prefill_mfu=1.5), "prefill_mfu"),
        (dict(decode_mfu=math.nan), "decode_mfu"),
        (dict(train_usd_per_flop=-1e-18), "train_usd_per_flop"),
        (dict(input_tokens=-5.0), "input_tokens"),
    ],
)
def test_cost_bad_inputs(override, field):
    kwargs = dict(input_tokens=1e13, output_tokens=2.5e12, train_usd_per_flop=1e-18,
                  inference_usd_per_flop=1e-18, train_mfu=0.5, prefill_mfu=0.4, decode_mfu=0.2)
    kwargs.update(override)
    with pytest.raises(InputError) as exc:
        ia.cost_optimal(SARDANA, 2.0, **kwargs)
    assert exc.value.field == field


def test_usd_per_flop_bad_peak():
    with pytest.raises(InputError, match="peak_flops_per_s"):
        ia.usd_per_flop(2.0, 0.0)


def test_law_of_draws_vectorises_and_leaves_unreachable_draws_nan():
    # A law with array parameters (bootstrap draws) solves every draw at once; draws whose E is at
    # or above the target cannot reach it and come back non-finite instead of raising.
    import warnings

    base = get_law("besiroglu2024")
    if base.samples is None:
        pytest.skip("besiroglu2024 ships without bootstrap draws in this checkout")
    law = base.draws()
    target = float(np.median(law.E))  # about half the draws cannot reach it
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        p = ia.compute_optimal(law, target, 1e12)
    reachable = np.asarray(law.E) < target
    assert reachable.any() and (~reachable).any()
    assert np.all(np.isfinite(p.params[reachable])) and np.all(np.isfinite(p.tokens[reachable]))
    assert not np.any(np.isfinite(p.tokens[~reachable]))
    # Each reachable draw matches the scalar solve of that draw.
    k = int(np.flatnonzero(reachable)[0])
    one = ia.compute_optimal(
        ChinchillaLaw("one", *(float(np.asarray(v)[k]) for v in (law.E, law.A, law.B, law.alpha, law.beta))),
        target, 1e12,
    )
    assert p.params[k] == pytest.approx(one.params, rel=1e-12)
