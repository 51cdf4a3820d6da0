"""``planner recommend``: the JSON contract, the acceptance checks, --explain re-done by hand, exit codes."""

import json
import re

import pytest
from conftest import run_cli as run
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling_planner.laws.presets import get_law


def test_json_contract_fields():
    code, out, err = run("recommend", "--target-loss", "2.0", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["compute_flops"] > 0
    for k in ("params", "tokens"):
        assert doc["model"][k] > 0
    for k in ("gpu_hours", "wall_clock_days", "mfu", "cost_usd", "energy_kwh"):
        assert doc["training"][k] > 0
    assert doc["training"]["mfu_provenance"] == "profile default"
    for k in ("compute_flops", "wall_clock_days", "cost_usd"):
        b = doc["uncertainty"][k]
        assert b["p10"] < b["p50"] < b["p90"]
    assert 0 <= doc["uncertainty"]["probability_within_budget"] <= 1
    assert [a["name"] for a in doc["alternatives"]][:2] == ["compute-optimal", "over-trained 2x smaller"]


def test_acceptance_target_loss_matches_the_closed_form():
    code, out, _ = run("recommend", "--target-loss", "2.0", "--law", "besiroglu2024", "--json")
    doc = json.loads(out)
    law = get_law("besiroglu2024")
    assert code == 0
    assert doc["compute_flops"] == pytest.approx(float(law.compute_for_loss(2.0)), rel=1e-12)


def test_acceptance_chinchilla_budget():
    code, out, _ = run("recommend", "--budget-flops", "5.76e23", "--json")
    m = json.loads(out)["model"]
    assert code == 0
    assert 55e9 < m["params"] < 90e9 and 1.0e12 < m["tokens"] < 1.8e12
    assert 18 <= m["tokens_per_param"] <= 26


NUM = r"([0-9][0-9.e+\-]*)"


def _grab(pattern, text):
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in explain output:\n{text}"
    return [float(g) for g in m.groups()]


def test_acceptance_explain_lets_a_reader_verify_the_plan():
    code, out, _ = run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--gpu", "h100-sxm", "--explain")
    assert code == 0
    text = out.split("The arithmetic", 1)[1]
    N, D, C = _grab(rf"C = 6·N·D = 6 × {NUM} params × {NUM} tokens = {NUM} FLOPs", text)
    assert C == pytest.approx(1e22, rel=1e-6) and 6 * N * D == pytest.approx(C, rel=1e-5)
    F, G, peak, mfu, ideal = _grab(rf"= {NUM} FLOPs / \({NUM} × {NUM} FLOP/s × {NUM}\) = {NUM} s", text)
    assert G == 64 and peak == pytest.approx(989.5e12, rel=1e-6)
    assert F / (G * peak * mfu) == pytest.approx(ideal, rel=1e-5)
    ideal2, goodput, factor, wall_s, wall_d = _grab(
        rf"wall-clock \(P50\) = ideal time / goodput × end-to-end factor = {NUM} s / {NUM} × {NUM} = {NUM} s = "
        rf"{NUM} days", text)
    assert ideal2 == ideal and ideal / goodput * factor == pytest.approx(wall_s, rel=1e-5) and factor > 1
    assert wall_s / 86400 == pytest.approx(wall_d, rel=1e-5)
    f10, f90, d10, d90 = _grab(rf"efficiency band: P10 = P50 × {NUM}, P90 = P50 × {NUM} .*: {NUM} \.\. {NUM} days",
                               text)
    assert f10 < 1 < f90 and d10 == pytest.approx(wall_d * f10, rel=1e-5) and d90 == pytest.approx(wall_d * f90,
                                                                                                  rel=1e-5)
    G2, hours, gpuh = _grab(rf"GPU-hours = GPUs × wall-clock hours = {NUM} × {NUM} h = {NUM} GPU-h", text)
    assert G2 == G and hours == pytest.approx(wall_d * 24, rel=1e-5) and G * hours == pytest.approx(gpuh, rel=1e-5)
    gpuh2, price, cost = _grab(rf"cost = GPU-hours × price = {NUM} GPU-h × \${NUM}/GPU-h = \${NUM}", text)
    assert gpuh2 == gpuh and gpuh * price == pytest.approx(cost, rel=1e-4)
    gpuh3, dev_w, host_w, pue, kwh = _grab(rf"= {NUM} × \({NUM} \+ {NUM}\) W × {NUM} / 1000 = {NUM} kWh", text)
    assert gpuh3 == gpuh and gpuh * (dev_w + host_w) * pue / 1000 == pytest.approx(kwh, rel=1e-5)
    # and the same numbers are what --json reports
    doc = json.loads(run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--json")[1])
    t = doc["training"]
    assert t["gpu_hours"] == pytest.approx(gpuh, rel=1e-5) and t["cost_usd"] == pytest.approx(cost, rel=1e-5)
    assert t["energy_kwh"] == pytest.approx(kwh, rel=1e-5) and t["wall_clock_days"] == pytest.approx(wall_d, rel=1e-5)
    assert t["mfu_steady_state"] == pytest.approx(mfu, rel=1e-5) and doc["model"]["params"] == pytest.approx(N,
                                                                                                          rel=1e-6)
    assert t["gpu_hours_p10"] == pytest.approx(gpuh * f10, rel=1e-5) and t["gpu_hours_p90"] == pytest.approx(
        gpuh * f90, rel=1e-5)


def test_table_shows_plan_alternatives_and_gpu_choice():
    code, out, _ = run("recommend", "--target-loss", "2.0", "--inference-tokens", "1e13")
    assert code == 0
    for text in ("model size N", "P10 .. P90", "wall-clock", "GPU count: chosen", "Alternatives",
                 "inference-optimal", "lifetime $", "assumed MFU"):
        assert text in out


@pytest.mark.parametrize(("argv", "text"), [
    (["--budget-usd", "$3M"], '"budget_usd"'),
    (["--gpu-hours", "2e5", "--price", "2.0"], '"gpu_hours"'),
    (["--gpus", "128", "--deadline-days", "20"], '"objective": "deadline"'),
    (["--target-loss", "2.1", "--mfu", "0.35"], '"mfu_provenance": "measured"'),
    (["--target-loss", "2.1", "--gpu", "a100-sxm-80gb"], '"gpu": "a100-sxm-80gb"'),
])
def test_objectives_and_flags(argv, text):
    code, out, err = run("recommend", *argv, "--json")
    assert code == 0 and err == ""
    assert text in out
    doc = json.loads(out)
    assert doc["training"]["cost_usd"] > 0


def test_data_constrained_through_the_cli():
    # datablations README golden allocation (C = 1e22, 25B unique tokens), see tests/test_data_constrained.py
    code, out, err = run("recommend", "--budget-flops", "1e22", "--unique-tokens", "25B", "--law",
                         "muennighoff2023-c4", "--gpus", "64", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    s = doc["data_constrained"]
    assert doc["model"]["params"] == pytest.approx(7.02236e9, rel=1.6e-3)
    assert doc["model"]["tokens"] == pytest.approx(2.37337e11, rel=1.6e-3)
    assert s["epochs"] == pytest.approx(9.4935, rel=1.6e-3) and s["unique_tokens"] == 25e9
    assert s["loss"] < s["chinchilla_loss"] and s["unlimited_data_loss"] < s["loss"]
    for k in ("effective_tokens", "repeated_token_value", "loss_floor"):
        assert s[k] > 0
    assert s["next_epoch"]["loss_decrease"] > 0
    code, out, _ = run("recommend", "--budget-flops", "1e22", "--unique-tokens", "25e9", "--law",
                       "muennighoff2023-c4", "--gpus", "64")
    assert code == 0
    for text in ("Data-constrained (Muennighoff 2023): 25B unique tokens", "epochs D/U", "9.49",
                 "loss with repeated data", "one more epoch", "chinchilla allocation (ignores the cap)"):
        assert text in out


@pytest.mark.parametrize(("argv", "code", "text"), [
    (["--target-loss", "2.15", "--unique-tokens", "25e9", "--law", "muennighoff2023-c4"], 3, "no compute goes below"),
    (["--target-loss", "1.5"], 2, "irreducible loss E = 1.8169 of law 'besiroglu2024'"),
    (["--target-loss", "1.81"], 2, "irreducible"),
    (["--target-loss", "1.817"], 3, "lowest target in range"),
    (["--budget-usd", "1"], 3, "too small for any model"),
    (["--gpu-hours", "0.01"], 3, "too small for any model"),
    (["--budget-flops", "1e10"], 3, "too small for any model"),
    (["--gpus", "8", "--deadline-days", "0.0001"], 3, "too small for any model"),
    (["--target-loss", "2.0", "--gpus", "64", "--deadline-days", "1"], 3, "deadline"),
    (["--target-loss", "2.0", "--gpus", "12"], 2, "multiple of the 8 devices"),
    (["--target-loss", "2.0", "--gpu", "no-such-gpu"], 2, "unknown hardware profile"),
    (["--target-loss", "1.9", "--gpus", "8"], 3, "does not fit"),
])
def test_bad_or_infeasible_requests_are_one_line(argv, code, text):
    got, out, err = run("recommend", *argv)
    assert got == code and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert text in err


@pytest.mark.parametrize("argv", [
    [], ["--gpus", "64"], ["--deadline-days", "30"], ["--target-loss", "2", "--budget-usd", "1e6"],
    ["--budget-usd", "1e6", "--gpu-hours", "1e5"], ["--target-loss", "2", "--mfu", "1.5"],
    ["--target-loss", "2", "--mfu", "0"], ["--target-loss", "2", "--price", "-1"],
    ["--target-loss", "2", "--gpus", "0"],
    ["--target-loss", "2", "--gpus", "2.5"], ["--budget-usd", "abc"],
    ["--target-loss", "2", "--inference-tokens", "-5"],
    ["--target-loss", "2", "--deadline-days", "0"],
    ["--target-loss", "2", "--unique-tokens", "0"], ["--target-loss", "2", "--unique-tokens", "-1e9"],
    ["--target-loss", "2", "--unique-tokens", "nan"], ["--target-loss", "2", "--unique-tokens", "lots"],
    ["--target-loss", "2", "--unique-tokens"],
])
def test_usage_errors_exit_2(argv):
    code, out, err = run("recommend", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


FLAGS = ["--target-loss", "--budget-flops", "--budget-usd", "--gpu-hours", "--gpus", "--deadline-days", "--mfu",
         "--price", "--inference-tokens", "--gpu", "--law", "--unique-tokens", "--experts", "--top-k",
         "--serving-days", "--p99-tpot"]
VALUES = st.one_of(st.sampled_from(["2.0", "1.7", "0", "-1", "1e22", "$5M", "1e5", "64", "7", "0.4", "abc", "nan",
                                    "inf", "1e400", "h100-sxm", "hoffmann2022", "12", "30", "1e-9"]),
                   st.text(max_size=6).filter(lambda s: not s.startswith("-")))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=4))
def test_generated_argv_never_tracebacks(pairs):
    argv = ["recommend"] + [x for pair in pairs for x in pair]
    code, out, err = run(*argv)
    assert code in (0, 2, 3), (argv, err)
    assert "Traceback" not in err
    if code:
        assert out == "" and len(err.strip().splitlines()) == 1, (argv, err)


def test_moe_through_the_cli():
    code, out, err = run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--experts", "64", "--top-k", "8",
                         "--json")
    assert code == 0 and err == ""
    m = json.loads(out)["moe"]
    assert (m["experts"], m["top_k"]) == (64, 8)
    assert m["params_non_embedding"] > 5 * m["active_params_non_embedding"] > 0
    assert m["training"]["gpus"] == 64 and m["training"]["cost_usd"] > 0
    code, out, _ = run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--experts", "64", "--top-k", "8")
    assert code == 0
    for text in ("Mixture of experts (Krajewski 2024", "total parameters (non-embedding)", "active parameters",
                 "dense compute for the same loss", "extrapolation"):
        assert text in out


@pytest.mark.parametrize("argv", [
    ["--target-loss", "2", "--top-k", "2"], ["--target-loss", "2", "--experts", "1"],
    ["--target-loss", "2", "--experts", "0"], ["--target-loss", "2", "--experts", "8", "--top-k", "3"],
    ["--target-loss", "2", "--experts", "8", "--top-k", "8"], ["--target-loss", "2", "--experts", "2.5"],
    ["--target-loss", "2", "--experts", "many"],
])
def test_moe_usage_errors(argv):
    code, out, err = run("recommend", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_serving_demand_through_the_cli():
    code, out, err = run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--tokens-per-day", "5e9",
                         "--serving-days", "180", "--prompt-tokens", "512", "--output-tokens", "128", "--p99-ttft", "1",
                         "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    v = doc["serving"]
    fleet = v["fleet"]  # planner serve's plan, embedded
    assert fleet["demand"]["tokens_per_day"] == 5e9 and v["serving_days"] == 180
    assert fleet["demand"]["prompt_tokens"] == 512 and fleet["slo"]["p99_ttft_s"] == 1 and fleet["devices"] >= 1
    assert v["lifetime_cost_usd"] == pytest.approx(doc["training"]["cost_usd"] + v["serving_cost_usd"], rel=1e-12)
    assert doc["inference_tokens"] == pytest.approx(9e11)
    assert all(a["lifetime_cost_usd"] is not None for a in doc["alternatives"] if a["tokens"] is not None)
    code, out, _ = run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--tokens-per-day", "5e9",
                       "--serving-days", "180")
    assert code == 0
    for text in ("Serving the plan's model", "replicas x TP", "lifetime cost", "serve GPUs", "serving $"):
        assert text in out


@pytest.mark.parametrize("argv", [
    ["--tokens-per-day", "1e10"], ["--serving-days", "30"], ["--tokens-per-day", "1e10", "--serving-days", "0"],
    ["--tokens-per-day", "-5", "--serving-days", "30"], ["--prompt-tokens", "100"],
    ["--tokens-per-day", "1e10", "--serving-days", "30", "--inference-tokens", "2e11"],  # disagrees with T x S
    ["--tokens-per-day", "1e10", "--serving-days", "30", "--peak-factor", "0.5"],
    ["--tokens-per-day", "1e10", "--serving-days", "30", "--p99-tpot", "0"],
    ["--tokens-per-day", "1e10", "--serving-days", "30", "--output-tokens", "2.5"],
])
def test_serving_usage_errors(argv):
    code, out, err = run("recommend", "--target-loss", "2.0", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unmeetable_serving_slo_through_the_cli():
    code, out, err = run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--tokens-per-day", "1e9",
                         "--serving-days", "30", "--p99-tpot", "1e-6")
    assert code == 0 and err == "" and "no fleet for the demand" in out


def test_explain_serving_arithmetic():
    code, out, _ = run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--tokens-per-day", "1e10",
                       "--serving-days", "90", "--explain")
    assert code == 0
    text = out.split("The arithmetic", 1)[1]
    dev, price, days, serve = _grab(rf"serving cost = devices × price × 24 h × days = {NUM} × \${NUM}/GPU-h × 24 h "
                                    rf"× {NUM} = \${NUM}", text)
    assert days == 90 and dev * price * 24 * days == pytest.approx(serve, rel=1e-5)
    train, serve2, life = _grab(rf"lifetime cost = training \+ serving = \${NUM} \+ \${NUM} = \${NUM}", text)
    assert serve2 == serve and train + serve == pytest.approx(life, rel=1e-5)
