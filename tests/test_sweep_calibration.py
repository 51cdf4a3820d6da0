"""The sweep's trust machinery (issue 17), on constructed data whose answer is known: the learning-rate
rule (sweep.lr), the bracketing of isoFLOP rows (sweep.bracket), the rolling backtests and their
split-conformal calibration (sweep.backtests), and the warning when a fitted parameter runs to a bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling_planner.sweep import backtests as bts
from scaling_planner.sweep import bracket
from scaling_planner.sweep import lr as lrm
from scaling_planner.sweep.design import CorpusSize, SweepDefinition, plan_ladder, shape_catalogue
from scaling_planner.sweep.heldout import law_loss

BIG = CorpusSize("big", 50_000_000, 1_000_000)
LAW = (1.2, 400.0, 900.0, 0.45, 0.40)  # E, A, B, alpha, beta: a Chinchilla-form truth with a floor


# -- learning rate ------------------------------------------------------------------------------------

def test_best_lr_is_the_vertex_of_the_parabola_in_log_lr():
    true = 7e-3
    grid = [2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2]
    losses = [2.0 + 0.3 * math.log(g / true) ** 2 for g in grid]
    lr, bracketed = lrm.best_lr(grid, losses)
    assert bracketed and lr == pytest.approx(true, rel=1e-6)


def test_a_best_rate_at_the_edge_of_the_grid_is_not_bracketed_and_said():
    grid = [2e-3, 4e-3, 8e-3]
    lr, bracketed = lrm.best_lr(grid, [3.0, 2.5, 2.2])  # still falling at the largest rate
    assert lr == 8e-3 and not bracketed
    defn = SweepDefinition(lr_grid=grid)
    ladder = plan_ladder(defn, BIG)
    tune = lrm.tuning_rungs(defn, ladder.rows[defn.budgets_flops[0]])
    doc = lrm.tuning_document(defn, [(r, {2e-3: 3.0, 4e-3: 2.5, 8e-3: 2.2}[r.lr]) for r in tune])
    assert len(doc["warnings"]) == len(doc["sizes"]) and "largest rate" in doc["warnings"][0]


def test_the_rule_follows_the_tuned_sizes_and_never_gives_larger_models_a_larger_rate():
    sizes = [1e4, 4e4, 1.6e5]
    rule = lrm.fit_rule(sizes, [1.6e-2 * (n / 1e4) ** -0.5 for n in sizes])
    assert rule["exponent"] == pytest.approx(-0.5)
    assert lrm.lr_of(rule, 6.4e5) == pytest.approx(1.6e-2 * 64**-0.5)
    rising = lrm.fit_rule(sizes, [1e-3, 2e-3, 4e-3])
    assert rising["exponent"] == 0.0  # clipped: a larger model is never given a larger rate
    assert lrm.fit_rule([5e4], [3e-3])["exponent"] == 0.0


def test_tuning_runs_are_the_smallest_rows_sizes_at_every_rate_and_never_a_ladder_rung():
    defn = SweepDefinition(lr_tune_sizes=3)
    ladder = plan_ladder(defn, BIG)
    row = ladder.rows[defn.budgets_flops[0]]
    tune = lrm.tuning_rungs(defn, row)
    sizes = sorted({r.params for r in tune})
    assert sizes[0] == min(r.params for r in row) and sizes[-1] == max(r.params for r in row)
    assert len(tune) == len(sizes) * len(defn.lr_grid) and {r.role for r in tune} == {"lr_tune"}
    settings = {"seed": 0}
    same = row[0].model_copy(update={"lr": tune[0].lr})
    assert tune[0].key(settings) != same.key(settings)


# -- bracketing ---------------------------------------------------------------------------------------

def _row(C: float, ns: list[int], defn: SweepDefinition):
    from scaling_planner.sweep.design import _make_rung, _steps_for

    cat = {s.params: s for s in shape_catalogue(defn.seq_len)}
    return [_make_rung(defn, "isoflop", C, cat[n], _steps_for(C, n, defn.tokens_per_step)) for n in ns]


def test_edge_of_minimum_and_the_extension_beyond_it():
    defn = SweepDefinition()
    row = _row(2e12, [98944, 154400, 222144], defn)
    assert bracket.edge_of_minimum([(r, 2.0 + 1e-6 * r.params) for r in row]) == "left"
    assert bracket.edge_of_minimum([(r, 2.0 - 1e-6 * r.params) for r in row]) == "right"
    assert bracket.edge_of_minimum([(r, (math.log(r.params / 154400)) ** 2) for r in row]) is None
    left, why = bracket.extension(defn, BIG, row, "left")
    assert why == "" and left.params < 98944 and left.role == "extension"
    assert left.compute_flops == pytest.approx(2e12, rel=0.02)
    right, _ = bracket.extension(defn, BIG, row, "right")
    assert right.params > 222144


def test_a_row_that_cannot_move_says_why():
    defn = SweepDefinition(max_epochs=1.0)
    smallest = shape_catalogue(defn.seq_len)[0].params
    row = _row(6e10, [smallest, 27936], defn)
    rung, why = bracket.extension(defn, BIG, row, "left")
    assert rung is None and "no model smaller" in why
    small = CorpusSize("small", 400_000, 50_000)
    row = _row(2e12, [98944, 154400], defn)
    rung, why = bracket.extension(defn, small, row, "left")
    assert rung is None and "max_epochs" in why
    assert "does not bracket" in bracket.unbracketed_warning(2e12, "left", why)


def test_the_row_optimum_is_the_parabola_vertex_in_log_n():
    defn = SweepDefinition()
    row = _row(2e12, [49536, 98944, 154400, 222144], defn)
    n_opt = 120000.0
    pts = [(r, 1.7 + 0.2 * math.log(r.params / n_opt) ** 2) for r in row]
    got = bracket.optimum_of_row(pts)
    assert got["N_opt"] == pytest.approx(n_opt, rel=1e-6) and got["loss_min"] == pytest.approx(1.7)
    assert got["D_opt"] == pytest.approx(2e12 / (6 * n_opt))
    assert bracket.optimum_of_row([(r, 2.0 + 1e-6 * r.params) for r in row]) is None


# -- backtests and calibration ------------------------------------------------------------------------

def test_score_is_one_on_the_interval_edge_and_the_conformal_rank():
    assert bts.score(2.2, 2.0, 1.8, 2.2) == pytest.approx(1.0)
    assert bts.score(1.8, 2.0, 1.8, 2.2) == pytest.approx(1.0)
    assert bts.score(2.0, 2.0, 1.8, 2.2) == 0.0
    scores = [0.1 * i for i in range(1, 20)]  # n = 19: rank ceil(20 x 0.9) = 18
    q, how = bts.conformal_factor(scores, 0.9)
    assert q == pytest.approx(1.8) and "18-th" in how
    q, how = bts.conformal_factor([0.5, 2.5, 0.7], 0.9)  # too few for the rank: the largest, said
    assert q == 2.5 and "too few" in how
    assert bts.conformal_factor([0.2, 0.3], 0.5)[0] == 1.0  # never narrower than stated
    lo, hi = bts.widen({"draws_median": 2.0, "predicted_low": 1.8, "predicted_high": 2.2}, 2.0)
    assert lo == pytest.approx(2.0 * (0.9**2)) and hi == pytest.approx(2.0 * 1.1**2)


def _synthetic_ladder(noise_sd: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    budgets = [1e17, 1e18, 1e19, 1e20]
    N, D, rb = [], [], []
    for C in budgets:
        for n in np.geomspace(1e7, 1e9, 5) * (C / 1e18) ** 0.5:
            N.append(n), D.append(C / (6 * n)), rb.append(C)
    N, D = np.array(N), np.array(D)
    loss = law_loss(LAW, N, D) * np.exp(rng.normal(0, noise_sd, N.size))
    return budgets, N, D, loss, rb


def test_rolling_backtests_predict_each_budget_from_the_ones_below():
    budgets, N, D, loss, rb = _synthetic_ladder(0.003)
    out = bts.rolling_backtests(N, D, loss, budgets, rb, level=0.9, bootstrap=60, tied=False)
    # fits up to 1e18 and up to 1e19 (one budget alone cannot be fitted): the rows at 1e19 and 1e20
    assert [s["fit_up_to_flops"] for s in out["splits"]] == [1e18, 1e19]
    assert out["n"] == 10 and {p["budget_flops"] for p in out["points"]} == {1e19, 1e20}
    # the law is the truth and the noise small: the predictions are close
    assert abs(out["mean_relative_error"]) < 0.03
    assert out["factor"] >= 1.0 and 0.0 <= out["coverage_stated"] <= 1.0


def test_a_biased_extrapolation_widens_the_interval_until_it_covers():
    budgets, N, D, loss, rb = _synthetic_ladder(0.002)
    top = np.isclose(rb, budgets[-1]) | np.isclose(rb, budgets[-2])
    loss = np.where(top, loss * 0.94, loss)  # the upper rows 6 % below the law: a bias the fits cannot see
    out = bts.rolling_backtests(N, D, loss, budgets, rb, level=0.9, bootstrap=60, tied=False)
    assert out["coverage_stated"] <= 0.5  # the first split's row misses entirely
    assert out["factor"] > 1.5
    assert out["coverage_calibrated_loo"] > out["coverage_stated"]


def test_a_parameter_run_to_its_bound_is_a_warning():
    from scaling_planner.laws.fit import fit_law
    from scaling_planner.laws.runs import runs_from_arrays
    from scaling_planner.sweep.report import bound_warnings

    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(1e4, 1e6, 4), np.geomspace(1e6, 1e8, 4)))
    pure = 300.0 / N**0.5 + 80.0 / D**0.3  # two pure power laws: no floor
    warnings = bound_warnings(fit_law(runs_from_arrays(N, D, pure)), 0.9)
    assert any(w.startswith("E ran to its bound") for w in warnings)
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, 4), np.geomspace(1e9, 1e11, 4))
    good = fit_law(runs_from_arrays(N.ravel(), D.ravel(), law_loss(LAW, N.ravel(), D.ravel())))
    assert bound_warnings(good, 0.9) == []


# -- the corpus ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["default", "ci"])
def test_no_rung_of_the_presets_reads_the_shipped_corpus_twice(preset):
    from scaling_planner.sweep.runner import prepare

    defn = getattr(SweepDefinition, preset)()
    corpus, csize, ladder = prepare(defn)
    assert corpus.name.endswith("docs_large.txt.xz") and csize.train_tokens > 20_000_000
    assert defn.max_epochs == 1.0
    assert max(r.tokens for r in [*ladder.isoflop, ladder.heldout]) <= csize.train_tokens
    assert corpus.unigram_entropy_nats("val") > 3.0  # text, not a repeated pattern


def test_a_damaged_compressed_corpus_is_one_clear_error(tmp_path):
    from scaling_planner.base.errors import InputError
    from scaling_planner.train.data import Corpus

    bad = tmp_path / "text.txt.xz"
    bad.write_bytes(b"\xfd7zXZ\x00 not really xz")
    with pytest.raises(InputError, match="cannot decompress") as info:
        Corpus.load(bad)
    assert info.value.field == "corpus"
