"""The planner CLI for fit, law and recommend: output contracts, exit codes, one-line errors."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling_planner.cli import main
from scaling_planner.laws.presets import get_law


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_usage(capsys, *argv):
    """Usage errors exit through argparse (SystemExit) or, for a request the model rejects, return the
    InputError's exit code; either way 2."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err


def test_recommend_json_matches_the_closed_form(capsys):
    code, out, err = run(capsys, "recommend", "--target-loss", "2.0", "--law", "besiroglu2024", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    law = get_law("besiroglu2024")
    assert doc["compute_flops"] == pytest.approx(float(law.compute_for_loss(2.0)), rel=1e-12)
    assert doc["model"]["params"] == pytest.approx(float(law.optimal_params(doc["compute_flops"])), rel=1e-12)
    assert doc["model"]["tokens"] == pytest.approx(float(law.optimal_tokens(doc["compute_flops"])), rel=1e-12)
    u = doc["uncertainty"]
    assert u["compute_flops"]["p10"] < doc["compute_flops"] < u["compute_flops"]["p90"]
    assert 0.3 < u["probability_target_met"] < 0.7  # the point law sits mid-spread


def test_recommend_budget_lands_near_chinchilla(capsys):
    code, out, _ = run(capsys, "recommend", "--budget-flops", "5.76e23", "--json")
    doc = json.loads(out)
    assert code == 0
    assert 55e9 < doc["model"]["params"] < 90e9  # Chinchilla: 70B
    assert 1.0e12 < doc["model"]["tokens"] < 1.8e12  # Chinchilla: 1.4T
    assert 18 <= doc["model"]["tokens_per_param"] <= 26


def test_recommend_table(capsys):
    code, out, _ = run(capsys, "recommend", "--target-loss", "2.0")
    assert code == 0
    assert "model size N" in out and "FLOPs" in out and "P10 .. P90" in out


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["recommend", "--target-loss", "1.0"], 2, "irreducible loss E = 1.8169"),
        (["recommend", "--target-loss", "1.69", "--law", "hoffmann2022"], 2, "E = 1.6900"),
        (["recommend", "--target-loss", "2", "--law", "nope"], 2, "unknown law"),
        (["recommend", "--target-loss", "2", "--law", "hoffmann2022", "--law-file", "x.json"], 2, "not both"),
        (["recommend", "--target-loss", "2", "--law-file", "/no/such/fit.json"], 2, "no such file"),
        (["fit", "/no/such/file.csv"], 2, "no such file"),
        (["law", "show", "nope"], 2, "unknown law"),
        (["law", "show"], 2, "needs a law name"),
    ],
)
def test_bad_input_is_one_line_with_exit_code(capsys, argv, code, text):
    got, out, err = run(capsys, *argv)
    assert got == code and out == ""
    assert_one_line_error(err)
    assert text in err


@pytest.mark.parametrize(
    "argv",
    [
        ["recommend"],
        ["recommend", "--target-loss", "abc"],
        ["recommend", "--budget-flops", "0"],
        ["recommend", "--budget-flops", "-1e22"],
        ["recommend", "--target-loss", "2", "--budget-flops", "1e22"],
        ["fit"],
        ["fit", "runs.csv", "--bootstrap", "-3"],
        ["fit", "runs.csv", "--loss", "l2"],
        ["nosuchverb"],
    ],
)
def test_usage_errors_exit_2_in_one_line(capsys, argv):
    code, out, err = run_usage(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_line_error(err)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=12).filter(lambda s: not s.startswith("-")))
def test_generated_target_loss_never_tracebacks(text):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["recommend", "--target-loss", text, "--json"])
        except SystemExit as exc:
            code = exc.code
    assert code in (0, 2)
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1


def test_fit_cli_json_and_law_file_round_trip(capsys, tmp_path, chinchilla_runs_path):
    out_path = tmp_path / "fit.json"
    code, out, err = run(capsys, "fit", str(chinchilla_runs_path), "--drop-highest", "5", "--bootstrap", "200",
                         "--out", str(out_path), "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    for k in ("E", "A", "B", "alpha", "beta"):
        assert k in doc and k in doc["intervals"]
    assert doc["E"] == pytest.approx(1.8172, abs=5e-5)
    assert "samples" not in doc["bootstrap"]  # kept in the file, not printed
    saved = json.loads(out_path.read_text())
    assert len(saved["bootstrap"]["samples"]) == 200
    code, out, _ = run(capsys, "recommend", "--target-loss", "2.0", "--law-file", str(out_path), "--json")
    rec = json.loads(out)
    assert code == 0 and rec["law"]["E"] == pytest.approx(doc["E"])
    assert rec["uncertainty"]["draws"] == 200
    code, out, _ = run(capsys, "law", "show", "--law-file", str(out_path))
    assert code == 0 and "200 parameter draws" in out


def test_fit_cli_table_and_bad_rows(capsys, tmp_path):
    p = tmp_path / "runs.csv"
    p.write_text("N,D,loss\n1e8,2e9,3.1\n2e8,x,3.0\n")
    code, _out, err = run(capsys, "fit", str(p))
    assert code == 2 and "row 3, column D" in err
    assert_one_line_error(err)


def test_law_list_and_show(capsys):
    code, out, _ = run(capsys, "law", "list")
    assert code == 0 and "besiroglu2024 (default)" in out and "muennighoff2023-c4" in out
    code, out, _ = run(capsys, "law", "show", "hoffmann2022", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["E"] == 1.69 and "Hoffmann" in doc["source"]
    assert doc["allocation"][1]["params"] == pytest.approx(3.22e10, rel=3e-3)
