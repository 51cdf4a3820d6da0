"""The robust fitter against Besiroglu et al. 2024 (Epoch) on the digitised Chinchilla runs."""

import numpy as np
import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.laws.chinchilla import ChinchillaLaw
from scaling_planner.laws.fit import (
    Objective,
    bootstrap,
    fit_law,
    fit_report,
    hoffmann_grid,
    interval,
)
from scaling_planner.laws.runs import load_runs, runs_from_arrays

HOFFMANN_TEX_START = np.array([0.5267228, 6.0073404, 6.0179186, 0.33917084, 0.2849083])  # (e, a, b, alpha, beta)


@pytest.fixture(scope="module")
def runs(chinchilla_runs_path):
    return load_runs(chinchilla_runs_path).drop_highest(5)


@pytest.fixture(scope="module")
def fitted(runs):
    return fit_law(runs)


@pytest.fixture(scope="module")
def booted(runs, fitted):
    import copy

    return bootstrap(runs, copy.deepcopy(fitted), 4000, seed=42)


def test_data_and_outlier_rule(chinchilla_runs_path, runs):
    all_runs = load_runs(chinchilla_runs_path)
    assert len(all_runs) == 245 and len(runs) == 240
    # Epoch's rule drops the 5 highest losses: tiny-D runs at ~1e19 FLOPs (reference §1.2)
    assert sorted(runs.dropped_rows) == [2, 3, 4, 5, 6]
    assert runs.loss.max() < np.sort(all_runs.loss)[-5]


def test_grid_is_hoffmanns():
    grid = hoffmann_grid()
    assert grid.shape == (4500, 5)
    assert set(np.unique(grid[:, 3])) == {0.0, 0.5, 1.0, 1.5, 2.0}
    assert set(np.unique(grid[:, 1])) == {0.0, 5.0, 10.0, 15.0, 20.0, 25.0}
    assert hoffmann_grid(tied=True).shape == (900, 4)


def test_fit_reaches_epochs_grid_optimum(fitted):
    # Epoch cell 18: A=477.84, B=2143.86, E=1.8172, alpha=0.34731, beta=0.36718, objective 1.01827e-3.
    # Their L-BFGS-B stopped slightly early (B differs in the 4th digit), so A, B get 0.1 %.
    p = fitted.params
    assert p["E"] == pytest.approx(1.8172, abs=5e-5)
    assert p["alpha"] == pytest.approx(0.34731, abs=1e-5)
    assert p["beta"] == pytest.approx(0.36718, abs=1e-5)
    assert p["A"] == pytest.approx(477.84, rel=1e-3)
    assert p["B"] == pytest.approx(2143.86, rel=1e-3)
    assert fitted.objective == pytest.approx(1.01827e-3, rel=1e-5)
    assert fitted.starts == 4500
    assert fitted.agreeing_starts > 100  # many starts find the same optimum
    assert fitted.grad_norm < 1e-7
    assert fitted.warnings == []


def test_objective_gradient_matches_finite_differences(runs):
    rng = np.random.default_rng(0)
    obj = Objective(np.log(runs.N), np.log(runs.D), np.log(runs.loss), np.ones(len(runs)))
    theta = HOFFMANN_TEX_START[None, :] + rng.normal(0, 0.01, (3, 5))
    _f, g = obj(theta, np.arange(3))
    h = 1e-7
    for i in range(5):
        step = np.zeros_like(theta)
        step[:, i] = h
        fd = (obj(theta + step, np.arange(3))[0] - obj(theta - step, np.arange(3))[0]) / (2 * h)
        np.testing.assert_allclose(g[:, i], fd, rtol=1e-4, atol=1e-9)


def test_scipy_lbfgsb_stops_at_its_start_where_we_do_not(runs):
    """Reference §1.6 pitfall 1: with the summed Huber loss (~1e-3), scipy's default L-BFGS-B stopping
    rule fires at once from Hoffmann's values (objective ~1.163e-3); the batched fitter reaches 1.01827e-3."""
    from scipy.optimize import minimize

    obj = Objective(np.log(runs.N), np.log(runs.D), np.log(runs.loss), np.ones(len(runs)))

    def fun(x):
        f, g = obj(x[None, :], np.arange(1))
        return f[0], g[0]

    scipy_res = minimize(fun, HOFFMANN_TEX_START, jac=True, method="L-BFGS-B")
    assert scipy_res.fun > 1.1e-3
    assert np.max(np.abs(scipy_res.x - HOFFMANN_TEX_START)) < 0.05  # barely moved
    ours = fit_law(runs, starts=HOFFMANN_TEX_START[None, :])
    assert ours.objective == pytest.approx(1.01827e-3, rel=1e-5)


def test_bootstrap_matches_epochs_standard_errors(booted):
    # Epoch cells 15/21 (4000 replicates): SEs 0.0257 / 124.5 / 1293 / 0.0154 / 0.0206 for E, A, B, alpha, beta.
    # A different random stream gives different replicates: the Monte-Carlo error of a std over 4000
    # draws is ~1-2 % for E, alpha, beta; A and B are heavy-tailed, so their std varies more.
    s = booted.samples
    assert booted.bootstrap_failed == 0 and s.shape == (4000, 5)
    se = s.std(axis=0, ddof=1)
    assert se[0] == pytest.approx(0.0257, rel=0.08)
    assert se[1] == pytest.approx(124.5, rel=0.12)
    assert se[2] == pytest.approx(1293, rel=0.15)
    assert se[3] == pytest.approx(0.0154, rel=0.08)
    assert se[4] == pytest.approx(0.0206, rel=0.08)
    # Epoch 95 % CIs: E (1.769, 1.871), alpha (0.317, 0.373), beta (0.331, 0.415)
    for col, (lo, hi) in ((0, (1.769, 1.871)), (3, (0.317, 0.373)), (4, (0.331, 0.415))):
        iv = interval(s[:, col])
        assert iv["low"] == pytest.approx(lo, abs=0.006) and iv["high"] == pytest.approx(hi, abs=0.006)
    a = s[:, 4] / (s[:, 3] + s[:, 4])
    assert np.std(a) == pytest.approx(0.020, rel=0.15)


def test_fit_report_is_a_law_file_with_intervals(booted, tmp_path):
    import json

    from scaling_planner.laws.presets import load_law_file

    doc = fit_report(booted, 5.76e23)
    for key in ("E", "A", "B", "alpha", "beta"):
        assert doc[key] == booted.params[key]
        assert doc["intervals"][key]["low"] < doc[key] < doc["intervals"][key]["high"]
    d, iv = doc["derived"], doc["derived_intervals"]
    # a = beta/(alpha+beta) = 0.513 (Epoch); N* at Chinchilla's budget ~ 70B with a band
    assert d["a"] == pytest.approx(0.5139, abs=5e-4)
    assert iv["N_opt"]["low"] < d["N_opt"] < iv["N_opt"]["high"]
    assert 60e9 < d["N_opt"] < 85e9
    assert iv["loss_at_budget"]["high"] - iv["loss_at_budget"]["low"] < 0.1  # derived loss is tight
    p = tmp_path / "fit.json"
    p.write_text(json.dumps(doc))
    law = load_law_file(p)
    assert law.samples.shape == (4000, 5)
    assert law.E == booted.params["E"]


def test_recovers_a_known_law_from_synthetic_runs():
    truth = ChinchillaLaw("truth", E=1.9, A=400.0, B=1800.0, alpha=0.32, beta=0.38)
    rng = np.random.default_rng(1)
    N = np.repeat(np.geomspace(5e7, 5e9, 8), 6)
    D = N * np.tile(np.geomspace(2, 200, 6), 8)
    loss = truth.loss(N, D) * np.exp(rng.normal(0, 0.002, N.size))
    fit = fit_law(runs_from_arrays(N, D, loss))
    assert fit.params["alpha"] == pytest.approx(0.32, abs=0.02)
    assert fit.params["beta"] == pytest.approx(0.38, abs=0.02)
    assert fit.params["E"] == pytest.approx(1.9, abs=0.05)
    assert fit.warnings == []


def test_tied_exponents():
    truth = ChinchillaLaw("truth", E=1.87, A=520.0, B=1490.0, alpha=0.35, beta=0.35)
    N = np.repeat(np.geomspace(1e8, 3e9, 6), 5)
    D = N * np.tile(np.geomspace(5, 100, 5), 6)
    fit = fit_law(runs_from_arrays(N, D, truth.loss(N, D)), tied=True)
    assert fit.tied and fit.starts == 900
    assert fit.params["alpha"] == fit.params["beta"] == pytest.approx(0.35, abs=1e-4)


def test_asymmetric_loss_fits_the_lower_envelope():
    truth = ChinchillaLaw("truth", E=1.9, A=400.0, B=1800.0, alpha=0.32, beta=0.38)
    rng = np.random.default_rng(2)
    N = np.repeat(np.geomspace(5e7, 5e9, 8), 6)
    D = N * np.tile(np.geomspace(2, 200, 6), 8)
    # under-tuned runs sit above the envelope: one-sided noise
    loss = truth.loss(N, D) * np.exp(np.abs(rng.normal(0, 0.02, N.size)))
    runs = runs_from_arrays(N, D, loss)
    sym, asym = fit_law(runs), fit_law(runs, loss_function="asymmetric", overestimate_penalty=10)
    err_sym = np.abs(np.log(sym.law().loss(N, D) / truth.loss(N, D))).mean()
    err_asym = np.abs(np.log(asym.law().loss(N, D) / truth.loss(N, D))).mean()
    assert err_asym < 0.5 * err_sym


def test_identification_warnings():
    N = np.repeat(np.geomspace(1e8, 4e8, 3), 3)  # 0.6 decades of N
    D = 20 * N  # and a fixed tokens per parameter
    truth = ChinchillaLaw("truth", E=1.9, A=400.0, B=1800.0, alpha=0.32, beta=0.38)
    fit = fit_law(runs_from_arrays(N, D, truth.loss(N, D)))
    text = " ".join(fit.warnings)
    assert "decades of N" in text and "collinear" in text


def test_too_few_runs():
    with pytest.raises(InputError, match="need at least 6 runs"):
        fit_law(runs_from_arrays([1e8] * 5, [1e9] * 5, [3.0] * 5))
    with pytest.raises(InputError, match="need at least 5 runs"):
        fit_law(runs_from_arrays([1e8] * 4, [1e9] * 4, [3.0] * 4), tied=True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        ("N,loss\n1e8,3.0\n", "missing column 'D'"),
        ("N,D,loss\n1e8,2e9,3.0\n2e8,abc,2.9\n", "row 3, column D: 'abc' is not a number"),
        ("N,D,loss\n1e8,2e9,nan\n", "row 2, column loss: 'nan' is not finite"),
        ("N,D,loss\n1e8,2e9,3.0\n-2e8,2e9,2.9\n", "row 3, column N: must be > 0"),
        ("N,D,loss\n1e8,2e9,0\n", "row 2, column loss: must be > 0"),
        ("N,D,loss\n1e8,2e9\n", "row 2, column loss: '' is not a number"),
    ],
)
def test_bad_csv_names_row_and_column(tmp_path, content, expected):
    p = tmp_path / "runs.csv"
    p.write_text(content)
    with pytest.raises(InputError) as err:
        load_runs(p)
    assert expected in str(err.value)


def test_missing_file_and_aliases(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_runs(tmp_path / "nope.csv")
    p = tmp_path / "runs.csv"
    p.write_text("params,tokens,val_loss\n1e8,2e9,3.0\n\n2e8,4e9,2.8\n")
    runs = load_runs(p)
    assert len(runs) == 2 and list(runs.rows) == [2, 4]


def test_drop_highest_bounds(runs):
    with pytest.raises(InputError, match="drop all"):
        runs.drop_highest(len(runs))
    with pytest.raises(InputError, match=">= 0"):
        runs.drop_highest(-1)
