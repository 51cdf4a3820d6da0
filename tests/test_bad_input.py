"""Bad input on the command line: one line on stderr and exit 2 (3 infeasible), never a traceback, never a
silent answer. One regression test per reported case, then a property test over every verb's numeric flags."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling_planner.base.errors import InputError
from scaling_planner.cli import main

REPO = Path(__file__).resolve().parents[1]
RUNS_CSV = REPO / "examples" / "runs.csv"
H100_YAML = REPO / "hardware_profiles" / "h100-sxm.yaml"
SHOWN = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # hidden by default


def cli(*argv: str) -> tuple[int, str, str]:
    """``planner ARGV`` in-process: (exit code, stdout, stderr). A warning Python would print on stderr
    (RuntimeWarning, UserWarning: pytest records them instead) is appended to stderr, as a user sees it."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code
    shown = [w for w in caught if not issubclass(w.category, SHOWN)]
    extra = "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in shown)
    return code, out.getvalue(), err.getvalue() + extra


def assert_one_line(code: int, out: str, err: str, expected: int = 2) -> str:
    assert code == expected, (code, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(autouse=True)
def _no_user_profiles(monkeypatch):
    monkeypatch.delenv("SCALING_PLANNER_PROFILES", raising=False)


@pytest.fixture
def small_runs(tmp_path) -> Path:
    """30 runs of examples/runs.csv: a fit in a fraction of a second."""
    path = tmp_path / "runs30.csv"
    path.write_text("\n".join(RUNS_CSV.read_text().splitlines()[:31]) + "\n")
    return path


# -- tracebacks --------------------------------------------------------------------------------------

def test_fit_negative_seed_is_one_line(small_runs):
    line = assert_one_line(*cli("fit", str(small_runs), "--seed", "-1", "--bootstrap", "20"))
    assert "--seed" in line and ">= 0" in line
    with pytest.raises(InputError, match="seed"):
        from scaling_planner.laws.fit import bootstrap, fit_law
        from scaling_planner.laws.runs import load_runs

        runs = load_runs(small_runs)
        bootstrap(runs, fit_law(runs), 10, seed=-1)


def test_fit_bootstrap_beyond_memory_is_refused_with_the_largest_count():
    from scaling_planner.laws.fit import check_bootstrap, max_bootstrap_replicates

    t0 = time.perf_counter()
    line = assert_one_line(*cli("fit", str(RUNS_CSV), "--bootstrap", "100000000"))
    assert time.perf_counter() - t0 < 10  # refused before the fit
    most = max_bootstrap_replicates(245)
    assert "bootstrap" in line and "GiB" in line and f"{most:,}" in line
    assert 1000 < most < 100_000_000
    assert check_bootstrap(245, most) == most
    with pytest.raises(InputError, match="at most"):
        check_bootstrap(245, most + 1)
    with pytest.raises(InputError, match="at least 2"):
        check_bootstrap(245, 1)


@pytest.mark.parametrize("how", ["env", "flag"])
def test_non_utf8_profile_names_the_file(tmp_path, monkeypatch, how):
    bad = tmp_path / "bad-gpu.yaml"
    bad.write_bytes(b"name: bad-gpu\n\xff\xfe junk: 1\n")
    if how == "env":
        monkeypatch.setenv("SCALING_PLANNER_PROFILES", str(tmp_path))
        args = ("profiles", "list")
    else:
        args = ("profiles", "--profiles-dir", str(tmp_path), "list")
    line = assert_one_line(*cli(*args))
    assert str(bad) in line and "UTF-8" in line


def test_sweep_without_torch_says_to_install_the_flows_extra():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['ray'] = None\n"
            "from scaling_planner.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    for argv in (["sweep", "--ci", "--dry-run"], ["sweep", "--ci", "--out", "unused-dir"]):
        proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        line = assert_one_line(proc.returncode, proc.stdout, proc.stderr)
        assert "torch" in line and "scaling-planner[flows]" in line


# -- silent answers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1e400", ".inf", "1.0e+20"])
def test_profile_with_an_infinite_or_absurd_peak_is_refused(tmp_path, monkeypatch, value):
    """YAML reads 1e400 as inf: the plan was a 1262-day job at MFU 0.0 %."""
    text = H100_YAML.read_text().replace("bf16: 989.5", f"bf16: {value}")
    assert f"bf16: {value}" in text
    (tmp_path / "h100-sxm.yaml").write_text(text)
    monkeypatch.setenv("SCALING_PLANNER_PROFILES", str(tmp_path))
    line = assert_one_line(*cli("recommend", "--budget-flops", "1e23", "--gpu", "h100-sxm", "--gpus", "64"))
    assert "peak_dense_tflops.bf16" in line and str(tmp_path / "h100-sxm.yaml") in line


def test_measured_tflops_above_the_peak_is_refused():
    base = ("simulate", "--params", "7B", "--tokens", "1T", "--gpu", "h100-sxm", "--gpus", "64")
    line = assert_one_line(*cli(*base, "--measured-tflops", "5000"))
    assert "measured-tflops" in line and "989.5" in line
    code, out, err = cli(*base, "--measured-tflops", "700", "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["training"]["mfu"] > 0
    from scaling_planner.hardware.profiles import get_profile
    from scaling_planner.simulate.efficiency import DeviceRates

    with pytest.raises(InputError, match="above the dense bf16 peak"):
        DeviceRates(get_profile("h100-sxm"), "bf16", 2e15)


def test_serve_refuses_a_precision_the_device_lacks_as_simulate_does():
    base = ("serve", "--params", "7B", "--gpu", "v100-sxm-32gb", "--tokens-per-day", "1e9", "--analytic")
    line = assert_one_line(*cli(*base, "--precision", "bf16"))
    assert "precision" in line and "no dense bf16 peak" in line and "fp16" in line
    line = assert_one_line(*cli(*base, "--kv-precision", "bf16"))
    assert "kv_precision" in line
    sim = assert_one_line(*cli("simulate", "--params", "7B", "--tokens", "1T", "--gpu", "v100-sxm-32gb",
                               "--gpus", "8", "--precision", "bf16"))
    assert "no dense bf16 peak" in sim
    code, out, err = cli(*base, "--json")  # the default is the device's 16-bit format, said in the output
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["precision"] == "fp16" and doc["kv_precision"] == "fp16"


@pytest.mark.parametrize("bootstrap, field", [
    ('"junk"', "law_file.bootstrap"),
    ("[1, 2]", "law_file.bootstrap"),
    ("{}", "law_file.bootstrap.samples"),
    ('{"replicates": 100}', "law_file.bootstrap.samples"),
    ('{"samples": "x"}', "law_file.bootstrap.samples"),
    ('{"samples": []}', "law_file.bootstrap.samples"),
    ('{"samples": [[1, 2, 3]]}', "law_file.bootstrap.samples"),
    ('{"samples": [[1.8, 400, 400, 0.3, 0.3], [1.8, -1, 400, 0.3, 0.3]]}', "law_file.bootstrap.samples"),
    ('{"samples": [["a", 400, 400, 0.3, 0.3], [1.8, 4, 400, 0.3, 0.3]]}', "law_file.bootstrap.samples"),
])
def test_malformed_bootstrap_in_a_law_file_is_refused(tmp_path, bootstrap, field):
    path = tmp_path / "fit.json"
    path.write_text(f'{{"E": 1.8, "A": 400, "B": 400, "alpha": 0.3, "beta": 0.3, "bootstrap": {bootstrap}}}')
    for args in (("law", "show", "--law-file", str(path)), ("recommend", "--budget-flops", "1e21", "--law-file",
                                                             str(path))):
        line = assert_one_line(*cli(*args))
        assert field in line and str(path) in line


def test_law_file_with_samples_or_without_bootstrap_still_loads(tmp_path):
    from scaling_planner.laws.presets import load_law_file

    rows = [[1.8, 400, 400, 0.3, 0.3], [1.7, 410, 390, 0.31, 0.29]]
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"E": 1.8, "A": 400, "B": 400, "alpha": 0.3, "beta": 0.3,
                                "bootstrap": {"samples": rows}}))
    assert load_law_file(path).samples.shape == (2, 5)
    path.write_text(json.dumps({"E": 1.8, "A": 400, "B": 400, "alpha": 0.3, "beta": 0.3, "bootstrap": None}))
    assert load_law_file(path).samples is None


def test_tensor_parallel_must_split_the_heads():
    from scaling_planner.hardware.profiles import get_profile
    from scaling_planner.simulate.architecture import get_arch
    from scaling_planner.simulate.serving.capacity import fixed_estimate, serving_capacity
    from scaling_planner.simulate.serving.iteration import build_model, tensor_parallel_ok
    from scaling_planner.simulate.training.search import layout_grid

    line = assert_one_line(*cli("serve", "--arch", "llama3-70b", "--gpu", "h100-sxm", "--gpus", "3",
                                "--batch-size", "8"))
    assert "gpus" in line and "8 KV heads" in line and "1, 2, 4, 8" in line
    arch, h100 = get_arch("llama3-70b"), get_profile("h100-sxm")
    assert [t for t in range(1, 65) if tensor_parallel_ok(arch, t)] == [1, 2, 4, 8, 16, 32, 64]
    with pytest.raises(InputError, match="tensor_parallel"):
        build_model(arch, h100, tp=3)
    with pytest.raises(InputError, match="gpus"):
        fixed_estimate(arch, h100, gpus=6, batch_size=1, prompt_tokens=16, output_tokens=16)
    with pytest.raises(InputError, match="tensor_parallel"):
        serving_capacity(arch, h100, tokens_per_day=1e9, tensor_parallel=12, simulate=False)
    assert fixed_estimate(arch, h100, gpus=16, batch_size=1, prompt_tokens=16, output_tokens=16).gpus == 16
    # training: Megatron splits the KV groups too, so no layout of llama3-70b has TP above its 8 groups
    assert set(np.unique(layout_grid(arch, 128)["t"]).tolist()) == {1, 2, 4, 8}


# -- also --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ("recommend", "--budget-flops", "-5e23"),
    ("recommend", "--budget-flops=-5e23"),
    ("recommend", "--budget-flops", "-inf"),
    ("simulate", "--params", "-7B", "--tokens", "1T", "--gpu", "h100-sxm", "--gpus", "8"),
    ("simulate", "--params", "7B", "--tokens", "-.5T", "--gpu", "h100-sxm", "--gpus", "8"),
    ("serve", "--params", "1B", "--gpu", "h100-sxm", "--qps", "-1e3"),
    ("fit", str(RUNS_CSV), "--budget-flops", "-1e22"),
    ("sweep", "--ci", "--dry-run", "--lr", "-1e-3"),
])
def test_a_negative_number_is_a_value_not_a_flag(argv):
    line = assert_one_line(*cli(*argv))
    assert "expected one argument" not in line
    assert "must be" in line or "expected a number" in line


def test_csv_with_a_utf8_bom_is_read(tmp_path, small_runs):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + small_runs.read_bytes())
    code, out, err = cli("fit", str(bom), "--json")
    assert code == 0 and err == ""
    plain = json.loads(cli("fit", str(small_runs), "--json")[1])
    assert json.loads(out)["E"] == pytest.approx(plain["E"])


def test_sweep_dry_run_json_is_one_object():
    code, out, err = cli("sweep", "--ci", "--dry-run", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["dry_run"] is True and len(doc["rungs"]) >= 6
    assert doc["heldout"]["role"] == "heldout" and doc["definition"]["bootstrap"] == 400
    assert all(r["compute_flops"] > 0 and r["steps"] >= 1 for r in doc["rungs"])


def test_no_verb_prints_the_help():
    code, out, err = cli()
    assert code == 2 and out == ""
    assert err.startswith("usage: planner") and "recommend" in err and "simulate" in err and "sweep" in err


def test_recommend_unreachable_target_loss_is_one_line():
    line = assert_one_line(*cli("recommend", "--target-loss", "100"))
    assert "target_loss" in line


# -- more of the same kinds, found by the property test ----------------------------------------------

@pytest.mark.parametrize("argv", [
    ("recommend", "--budget-flops", "1e21", "--gpus", "8", "--price", "1e308"),  # was a plan costing $inf
    ("simulate", "--params", "125M", "--tokens", "5e-324", "--gpu", "h100-sxm", "--gpus", "8"),  # ZeroDivision
    ("simulate", "--params", "125M", "--tokens", "2.5B", "--gpu", "h100-sxm", "--gpus", "8", "--seq-len",
     "99999999999999999999"),  # OverflowError: Python int too large to convert to C long
    ("serve", "--params", "1B", "--gpu", "h100-sxm", "--tokens-per-day", "1e9", "--peak-factor", "1e308"),
    ("serve", "--params", "1B", "--gpu", "h100-sxm", "--qps", "2.5e-324", "--analytic"),
    ("sweep", "--ci", "--dry-run", "--tokens-per-param", "1e308"),  # math domain error
    ("sweep", "--ci", "--dry-run", "--budgets", "1e11,1e300"),
])
def test_numbers_out_of_float_range_are_refused(argv):
    line = assert_one_line(*cli(*argv))
    assert "out of range" in line or "must be <=" in line


@pytest.mark.parametrize("config", [
    "tokens_per_param: 1.0e+308",  # sqrt(C / 6e308) underflowed to 0: math domain error in snap()
    "budgets_flops: [5.0e-324, 1.0e-323]",
    "heldout_factor: 1.7e+308",  # the held-out compute overflowed: cannot convert float infinity to integer
    "heldout_tokens_per_param: 5.0e-324",
])
def test_sweep_config_extremes_are_one_line(tmp_path, config):
    path = tmp_path / "sweep.yaml"
    path.write_text(config + "\n")
    assert_one_line(*cli("sweep", "--ci", "--dry-run", "--config", str(path)))


def test_csv_beyond_the_csv_field_limit_is_one_line(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("N,D,loss\n\"" + "x" * 200_000 + "\",1,1\n")  # was _csv.Error: field larger than field limit
    line = assert_one_line(*cli("fit", str(path)))
    assert str(path) in line and "field limit" in line


def test_a_line_break_in_an_echoed_name_stays_on_one_line(tmp_path):
    line = assert_one_line(*cli("law", "show", "--law-file", str(tmp_path / "a\nb\x85c.json")))
    assert "a\\nb\\x85c.json" in line
    line = assert_one_line(*cli("fit", str(tmp_path / "runs\u2028.csv")))
    assert "runs\\u2028.csv" in line


@pytest.mark.parametrize("argv", [
    ("law", "show", "--law-file", "a\x00b"),  # was ValueError: embedded null byte (pathlib)
    ("fit", "a\x00b"),
    ("fit", str(RUNS_CSV), "--out", "a\x00b"),
    ("sweep", "--ci", "--dry-run", "--config", "a\x00b"),
])
def test_a_nul_in_an_argument_is_one_line(argv):
    assert "NUL" in assert_one_line(*cli(*argv))


def test_a_global_batch_above_the_training_tokens_is_refused():
    """It planned 0.11 optimizer steps of 8.8T tokens each, as if that were a training run."""
    line = assert_one_line(*cli("simulate", "--params", "1B", "--tokens", "1T", "--gpu", "h100-sxm", "--gpus", "8",
                                "--global-batch", "2147483647"))
    assert "global-batch" in line and "less than one step" in line


def test_a_flow_request_may_count_beyond_two_to_the_31():
    """Verb flags stop at 2**31 - 1; a flow's request (every field a flag) reads counts such as tokens up to 2**53."""
    import argparse

    from pydantic import BaseModel, Field

    from scaling_planner.cli.options import add_model_arguments

    class Request(BaseModel):
        tokens: int = Field(5_000_000_000, gt=0)

    parser = argparse.ArgumentParser()
    add_model_arguments(parser, Request, every_field=True)
    assert parser.parse_args(["--tokens", "5000000000"]).tokens == 5_000_000_000


def test_a_very_sparse_serving_load_does_not_hang():
    t0 = time.perf_counter()
    code, out, err = cli("serve", "--params", "1B", "--gpu", "h100-sxm", "--tokens-per-day", "1e-30", "--json")
    assert code == 0 and err == "" and json.loads(out)["devices"] == 1
    assert time.perf_counter() - t0 < 30  # the event simulation's step count fix-up used to loop for ever


def test_bootstrap_of_few_runs_prints_no_warnings(small_runs):
    code, out, err = cli("fit", str(small_runs), "--bootstrap", "300", "--json")
    assert code == 0 and err == ""
    assert "intervals" in json.loads(out)


def test_plot_of_a_flat_regime_prints_no_warnings(tmp_path):
    pytest.importorskip("matplotlib")
    code, out, err = cli("plot", "--budget-flops", "1e21", "--gpus", "8", "--unique-tokens", "3", "--out",
                         str(tmp_path), "--json")
    assert code == 0 and err == ""
    assert len(json.loads(out)["files"]) == 3


# -- property test: every verb's numeric flags -------------------------------------------------------

SPECIAL = ["-1", "0", "-0", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "1e308", "5e-324",
           "1e-400", "1e100", "1e-100", "1e101", "garbage", "", " ", "-", "1e", "0x10", "1_000", "+3", "2.5T", "$1M",
           "-5e23", "0.5", "1", "2", "3", "7", "8", "64", "4096", "2147483647", "2147483648",
           "99999999999999999999", "3.7", "1.0000001", "0.999999"]
VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**25, max_value=10**25).map(str),
    st.text(max_size=6),
)

BASES = {
    "recommend": ["recommend", "--budget-flops", "1e21", "--gpus", "8"],
    "simulate": ["simulate", "--params", "125M", "--tokens", "2.5B", "--gpu", "h100-sxm", "--gpus", "8"],
    "serve": ["serve", "--params", "1B", "--gpu", "h100-sxm", "--gpus", "1", "--batch-size", "4"],
    "serve-demand": ["serve", "--params", "1B", "--gpu", "h100-sxm", "--tokens-per-day", "1e9", "--analytic"],
    "fit": ["fit", "RUNS"],
    "plot": ["plot", "--budget-flops", "1e21", "--gpus", "8", "--out", "OUT"],
    "sweep": ["sweep", "--ci", "--dry-run"],
}
# verbs with no numeric flag: their word arguments get the same values
WORDS = {
    "law": [["law", "show", "VALUE"], ["law", "show", "--law-file", "VALUE"]],
    "profiles": [["profiles", "show", "VALUE"], ["profiles", "--profiles-dir", "VALUE", "list"]],
    "validate": [["validate", "--group", "VALUE"]],
    "simulate": [["simulate", "--arch", "VALUE", "--tokens", "1T", "--gpu", "h100-sxm", "--gpus", "8"],
                 ["simulate", "--params", "1B", "--tokens", "1T", "--gpu", "VALUE", "--gpus", "8"]],
    "recommend": [["recommend", "--budget-flops", "1e21", "--law", "VALUE"]],
}


def numeric_flags(verb: str) -> list[tuple[str, tuple[str, ...]]]:
    """(flag, the other flags of its mutually exclusive group) of every flag of ``verb`` with a type."""
    import argparse

    from scaling_planner.cli import build_parser

    parser = build_parser(verb)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    out = []
    for action in sub._actions:
        if action.option_strings and action.type is not None:
            group = next((g for g in sub._mutually_exclusive_groups if action in g._group_actions), None)
            others = () if group is None else tuple(a.option_strings[0] for a in group._group_actions
                                                    if a is not action)
            out.append((action.option_strings[0], others))
    assert out, verb
    return out


def with_value(base: list[str], flag: str, others: tuple[str, ...], value: str) -> list[str]:
    argv = list(base)
    for other in others:  # a flag replaces its group's flag in the base command
        if other in argv:
            i = argv.index(other)
            del argv[i:i + 2]
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


def check_contract(argv: list[str], code, out: str, err: str) -> None:
    assert code in (0, 2, 3), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    assert len(err.strip().splitlines()) <= 1, (argv, err)
    if code != 0:
        assert out == "" and err.strip(), (argv, out, err)
    elif "--json" in argv:
        assert isinstance(json.loads(out), dict), (argv, out)


CASES = [(name, flag, others) for name in BASES for flag, others in numeric_flags(BASES[name][0])]
EXAMPLES = {"fit": 6, "plot": 3}  # per flag; the slower verbs get fewer


@pytest.mark.slow
@pytest.mark.parametrize("name, flag, others", CASES, ids=[f"{n}{f}" for n, f, _ in CASES])
def test_numeric_flags_keep_the_contract(name, flag, others, tmp_path_factory, monkeypatch):
    import scaling_planner.laws.fit as fit_module

    # a bootstrap of the 30 runs is refused above ~850 replicates: any count drawn finishes in a second
    monkeypatch.setattr(fit_module, "BOOTSTRAP_MEMORY_BYTES", 2**21)
    tmp = tmp_path_factory.mktemp("bad-input")
    runs = tmp / "runs.csv"
    runs.write_text("\n".join(RUNS_CSV.read_text().splitlines()[:31]) + "\n")
    base = [str(runs) if a == "RUNS" else str(tmp / "plots") if a == "OUT" else a for a in BASES[name]]

    @settings(max_examples=EXAMPLES.get(name, 12), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(value=VALUES, as_json=st.booleans())
    def check(value, as_json):
        argv = with_value(base, flag, others, value) + (["--json"] if as_json else [])
        check_contract(argv, *cli(*argv))

    check()


@pytest.mark.parametrize("name", list(WORDS))
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES, which=st.integers(0, 1), as_json=st.booleans())
def test_word_arguments_keep_the_contract(name, value, which, as_json):
    template = WORDS[name][which % len(WORDS[name])]
    argv = [value if a == "VALUE" else a for a in template] + (["--json"] if as_json else [])
    check_contract(argv, *cli(*argv))
