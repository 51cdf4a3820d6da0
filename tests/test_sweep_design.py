"""Sweep design: the isoFLOP ladder on real shapes, up-front rejection of bad definitions (API and CLI),
run keys, the fitter's suggestion, and the held-out prediction and verdict (all without training)."""

import json
import math

import numpy as np
import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.cli import main
from scaling_planner.laws.fit import bootstrap, fit_law
from scaling_planner.laws.runs import runs_from_arrays
from scaling_planner.sweep.design import (
    FLOPS_PER_PARAM_TOKEN,
    CorpusSize,
    SweepDefinition,
    candidate_rungs,
    plan_ladder,
    shape_catalogue,
    suggest,
)
from scaling_planner.sweep.heldout import law_loss, predict, verdict

CORPUS = CorpusSize("docs_large.txt.xz", 21_435_873, 2_381_764)  # the sweep's shipped corpus's splits


@pytest.mark.parametrize("preset", ["default", "ci"])
def test_ladder_rungs_are_real_shapes_on_their_isoflop_budget(preset):
    from scaling_planner.train.gpt import GPTConfig

    defn = getattr(SweepDefinition, preset)()
    ladder = plan_ladder(defn, CORPUS)
    assert list(ladder.rows) == defn.budgets_flops
    tps = defn.tokens_per_step
    for C, row in ladder.rows.items():
        assert len(row) >= 2
        assert [r.params for r in row] == sorted({r.params for r in row})  # distinct, ascending
        for r in row:
            cfg = GPTConfig(n_layer=r.n_layer, n_head=r.n_head, d_model=r.d_model, seq_len=defn.seq_len)
            assert cfg.params_nonembedding() == r.params
            assert r.tokens % tps == 0 and r.tokens // tps >= defn.min_steps
            # D = C / 6N rounded to a whole step: 6ND within half a step's compute of the budget
            assert abs(r.compute_flops - C) <= FLOPS_PER_PARAM_TOKEN * r.params * tps / 2 * 1.0001
            assert r.tokens <= defn.max_epochs * CORPUS.train_tokens
    h = ladder.heldout
    assert h.role == "heldout"
    assert h.compute_flops > max(r.compute_flops for r in ladder.isoflop)
    assert h.compute_flops == pytest.approx(defn.heldout_compute_flops, rel=0.01)
    assert len({(r.params, r.tokens) for r in ladder.isoflop}) >= 6


def test_catalogue_matches_config_for_params():
    from scaling_planner.train.gpt import config_for_params

    cat = shape_catalogue(128)
    # the one-layer models below and between config_for_params' shapes, then its smallest (1 layer, d 32)
    assert [s.params for s in cat[:4]] == [816, 3_168, 7_056, 12_480]
    assert all(s.n_layer == 1 and s.d_model // s.n_head == 8 for s in cat if s.d_model in (8, 16, 24, 40, 56, 72))
    for target in (3e4, 1e5, 3e5, 1e6):
        cfg = config_for_params(target)
        assert any(s.params == cfg.params_nonembedding() and s.d_model == cfg.d_model for s in cat)


def test_budget_too_small_for_the_smallest_model_is_rejected():
    defn = SweepDefinition(budgets_flops=[3e8, 1e9, 3e9])
    with pytest.raises(InputError) as exc:
        plan_ladder(defn, CORPUS)
    assert exc.value.field == "budgets_flops"
    assert "too small for the smallest model" in str(exc.value) and "816" in str(exc.value)
    # the floor it quotes is exactly what min_steps steps of the smallest model cost
    floor = FLOPS_PER_PARAM_TOKEN * 816 * defn.min_steps * defn.tokens_per_step
    assert f"{floor:.2g}" in str(exc.value)


def test_corpus_too_small_for_the_tokens_is_rejected():
    small = CorpusSize("small.txt", 200_000, 20_000)
    with pytest.raises(InputError) as exc:
        plan_ladder(SweepDefinition.ci(), small)
    assert exc.value.field == "corpus" and "too small for the tokens asked" in str(exc.value)
    assert "epochs" in str(exc.value) and "200,000" in str(exc.value)
    # the same corpus passes once max_epochs allows the largest ask
    ladder = plan_ladder(SweepDefinition.ci(max_epochs=100), small)
    assert ladder.heldout.tokens > small.train_tokens


@pytest.mark.parametrize("fields,field", [
    ({"budgets_flops": [3e11, 2e11]}, "budgets_flops"),
    ({"budgets_flops": [1e11]}, "budgets_flops"),
    ({"heldout_flops": 5e11}, "heldout_flops"),  # not above the largest budget (6e11)
    ({"target_loss": 2.0, "target_budget_flops": 1e14}, "target_loss"),
    ({"dtype": "fp8"}, "dtype"),
    ({"sizes_per_budget": 1}, "sizes_per_budget"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_definitions_name_the_field(fields, field):
    with pytest.raises(InputError) as exc:
        SweepDefinition(**fields)
    assert exc.value.field == field


def test_row_with_one_size_and_too_few_rungs_are_rejected():
    with pytest.raises(InputError, match="one model size"):
        plan_ladder(SweepDefinition(size_span=1.05), CORPUS)
    with pytest.raises(InputError, match="needs at least 6"):
        plan_ladder(SweepDefinition(budgets_flops=[7e10, 2e11], sizes_per_budget=2, size_span=2.5), CORPUS)


def test_lr_rule():
    assert SweepDefinition().lr_for(1e4) == SweepDefinition().lr_for(1e6) == 3e-3
    d = SweepDefinition(lr_exponent=0.5)
    assert d.lr_for(4e5) == pytest.approx(1.5e-3) and d.lr_for(2.5e4) == pytest.approx(6e-3)


def test_run_keys_follow_what_changes_the_result():
    rung = plan_ladder(SweepDefinition.ci(), CORPUS).isoflop[0]
    settings = {"seq_len": 128, "batch_size": 16, "seed": 0, "corpus": {"sha256": "ab"}}
    key = rung.key(settings)
    assert key == rung.key(dict(settings)) and key.startswith(f"L{rung.n_layer}-d{rung.d_model}-D{rung.tokens}-")
    assert rung.key({**settings, "seed": 1}) != key
    assert rung.key({**settings, "corpus": {"sha256": "cd"}}) != key
    assert rung.model_copy(update={"tokens": rung.tokens + 2048}).key(settings) != key
    assert rung.model_copy(update={"role": "suggested"}).key(settings) == key  # the role is not the run


# -- the fitter's suggestion ---------------------------------------------------------------------------

def _ensemble(K=400, seed=0):
    rng = np.random.default_rng(seed)
    base = np.array([1.5, 60.0, 80.0, 0.35, 0.30])
    draws = np.tile(base, (K, 1))
    draws[:, 0] += rng.normal(0, 0.05, K)
    draws[:, 3] += rng.normal(0, 0.02, K)
    draws[:, 4] += rng.normal(0, 0.02, K)
    return draws


def test_suggest_picks_the_target_itself_and_shrinks_its_variance_by_the_kalman_formula():
    draws = _ensemble()
    N = np.array([2e4, 5e4, 1e5, 3e5])
    D = np.array([1e6, 5e5, 2e6, 3e6])
    target = (3e5, 3e6)  # also candidate 3
    noise = 0.01
    picks = suggest(draws, N, D, *target, k=2, noise_sd=noise)
    assert picks[0].index == 3
    var = np.var(np.log(law_loss(draws, *target)), ddof=1)
    # observing the target itself: Var' = Var s^2 / (Var + s^2), computed on the winsorised draws
    assert picks[0].sd_before == pytest.approx(math.sqrt(var), rel=0.05)
    expected = math.sqrt(picks[0].sd_before**2 * noise**2 / (picks[0].sd_before**2 + noise**2))
    assert picks[0].sd_after == pytest.approx(expected, rel=1e-6)
    assert picks[1].index != 3 and picks[1].sd_before == pytest.approx(picks[0].sd_after)
    assert picks[1].sd_after <= picks[1].sd_before


def test_suggest_ignores_points_that_carry_no_information():
    rng = np.random.default_rng(1)
    draws = np.tile([1.5, 60.0, 80.0, 0.35, 0.30], (300, 1))
    draws[:, 3] += rng.normal(0, 0.03, 300)  # only alpha is uncertain
    N = np.array([1e30, 1e5])  # at N = 1e30 the N term vanishes: every draw predicts the same loss there
    D = np.array([1e6, 1e6])
    picks = suggest(draws, N, D, 3e5, 3e6, k=2, noise_sd=0.001)
    assert picks[0].index == 1
    assert picks[0].sd_after < 0.5 * picks[0].sd_before  # alpha is pinned by the informative point
    assert len(picks) == 1 or picks[1].sd_after == pytest.approx(picks[1].sd_before, rel=1e-6)  # worth nothing
    drowned = suggest(draws, N, D, 3e5, 3e6, k=1, noise_sd=1.0)  # noise >> spread: almost nothing learned
    assert drowned[0].sd_after == pytest.approx(drowned[0].sd_before, rel=0.01)
    assert suggest(draws, N, D, 3e5, 3e6, k=0, noise_sd=0.01) == []


def test_candidates_stay_between_the_top_budgets_and_away_from_done_rungs():
    defn = SweepDefinition.ci()
    ladder = plan_ladder(defn, CORPUS)
    cands = candidate_rungs(defn, CORPUS, ladder.isoflop, ladder.heldout)
    assert len(cands) >= 10
    lo, hi = defn.budgets_flops[-2], defn.budgets_flops[-1]
    done = {(r.params, r.tokens) for r in ladder.isoflop}
    for c in cands:
        assert c.role == "suggested" and lo <= c.compute_flops <= hi * 1.0001
        assert (c.params, c.tokens) not in done
        assert c.tokens <= defn.max_epochs * CORPUS.train_tokens
        assert min(r.params for r in ladder.isoflop) <= c.params <= max(max(r.params for r in ladder.isoflop),
                                                                           ladder.heldout.params)
        assert c.tokens // defn.tokens_per_step >= defn.min_steps


# -- held-out prediction --------------------------------------------------------------------------------

TRUE = np.array([1.4, 40.0, 90.0, 0.36, 0.31])


def _synthetic_fit(noise=0.01, seed=3):
    rng = np.random.default_rng(seed)
    N = np.repeat([2e4, 5e4, 1e5, 2e5], 4)
    D = np.tile([3e5, 1e6, 3e6, 6e6], 4)
    L = law_loss(TRUE, N, D) * np.exp(rng.normal(0, noise, N.size))
    runs = runs_from_arrays(N, D, L)
    fit = bootstrap(runs, fit_law(runs), 300, seed=1)
    return fit, runs


def test_prediction_interval_covers_the_true_law_and_contains_the_confidence_interval():
    fit, runs = _synthetic_fit()
    N, D = 5e5, 1.2e7  # beyond the fitted runs
    p = predict(fit, runs, N, D, 0.9)
    truth = float(law_loss(TRUE, N, D))
    assert p["predicted_low"] <= p["predicted"] <= p["predicted_high"]
    assert p["predicted_low"] <= truth <= p["predicted_high"]
    assert p["predicted_low"] <= p["confidence_low"] and p["confidence_high"] <= p["predicted_high"]
    assert p["predicted"] == pytest.approx(truth, rel=0.03)
    assert p["residual_sd_log"] == pytest.approx(0.01, rel=0.5)  # the noise put in
    assert p["fit_runs"] == 16 and p["level"] == 0.9
    wider = predict(fit, runs, N, D, 0.99)
    assert wider["predicted_high"] - wider["predicted_low"] > p["predicted_high"] - p["predicted_low"]


def test_prediction_needs_bootstrap_draws():
    fit, runs = _synthetic_fit()
    fit.samples = None
    with pytest.raises(InputError, match="bootstrap"):
        predict(fit, runs, 5e5, 1e7)


def test_verdict_inside_and_outside():
    pred = {"predicted": 2.30, "predicted_low": 2.25, "predicted_high": 2.36, "confidence_low": 2.28,
            "confidence_high": 2.33, "N": 3e5, "D": 3.3e6, "compute_flops": 6 * 3e5 * 3.3e6,
            "residual_sd_log": 0.01}
    ctx = {"fit_max_compute": 2e12, "fit_max_N": 4.5e5, "fit_max_D": 6.7e6, "fit_max_epochs": 3.6,
           "heldout_epochs": 1.8, "fit_warnings": ["runs span only 0.9 decades of N"], "bootstrap_failed": 90,
           "bootstrap_replicates": 1000}
    ok = verdict(pred, 2.32, ctx)
    assert ok["inside"] and ok["miss"] == 0 and ok["reasons"] == [] and ok["error"] == pytest.approx(0.02)
    miss = verdict(pred, 2.46, ctx)
    assert not miss["inside"] and miss["direction"] == "above"
    assert miss["miss"] == pytest.approx(0.10) and miss["error"] == pytest.approx(0.16)
    text = " | ".join(miss["reasons"])
    assert "extrapolation" in text and "3.0x the largest fitted compute" in text
    assert "repeated data" in text and "1.80 epochs" in text
    assert "fit warning: runs span only 0.9 decades of N" in text and "90/1000 bootstrap" in text
    low = verdict(pred, 2.20, ctx)
    assert low["direction"] == "below" and low["miss"] == pytest.approx(0.05)
    assert not any("repeated data" in r for r in low["reasons"])


# -- CLI: bad definitions are one line and exit 2, before anything trains ----------------------------------

def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_rejects_a_budget_too_small(capsys, tmp_path):
    code, out, err = _run(capsys, "sweep", "--budgets", "3e8,1e9,3e9", "--out", str(tmp_path / "o"))
    assert code == 2 and out == ""
    assert "too small for the smallest model" in _one_line(err)
    assert not (tmp_path / "o").exists()  # nothing was created


def test_cli_rejects_a_corpus_too_small(capsys, tmp_path):
    from scaling_planner.train.data import DEFAULT_CORPUS

    small = tmp_path / "small.txt"
    small.write_bytes(DEFAULT_CORPUS.read_bytes()[:60_000])
    code, _, err = _run(capsys, "sweep", "--ci", "--corpus", str(small), "--out", str(tmp_path / "o"))
    assert code == 2 and "too small for the tokens asked" in _one_line(err)


@pytest.mark.parametrize("config,expect", [
    ("bogus: 1\n", "bogus: not a sweep definition field"),
    ("budgets_flops: [3e11, 2e11]\n", "strictly increasing"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("budgets_flops: [7e10\n", "not YAML"),
])
def test_cli_rejects_bad_configs(capsys, tmp_path, config, expect):
    path = tmp_path / "sweep.yaml"
    path.write_text(config)
    code, _, err = _run(capsys, "sweep", "--config", str(path), "--out", str(tmp_path / "o"))
    assert code == 2 and expect in _one_line(err)


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--target-loss", "2", "--target-budget-flops", "1e14"])
    assert exc.value.code == 2 and "not allowed with" in _one_line(capsys.readouterr().err)
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--budgets", "1e11,-3"])
    assert exc.value.code == 2


def test_cli_dry_run_prints_the_ladder_config_then_flags(capsys, tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"budgets_flops": [7e10, 2e11, 6e11], "sizes_per_budget": 3, "size_span": 4}))
    code, out, err = _run(capsys, "sweep", "--config", str(path), "--dry-run", "--suggested-runs", "0")
    assert code == 0 and err == ""
    assert "+ 0 rung(s) the fit will suggest" in out
    assert out.count("isoflop") == 9 and out.count("heldout") == 1
    ladder = plan_ladder(SweepDefinition(budgets_flops=[7e10, 2e11, 6e11], sizes_per_budget=3, size_span=4),
                         CORPUS)
    assert f"{ladder.heldout.compute_flops:.3g}" in out
