"""Plans from the calibration history: the measured MFU and matmul rate change the plan, and the plan
names the records it used (issue 6). Records given directly that cannot be used are said and the plan
keeps the profile's defaults; --calibrated / calibration='latest' with a missing or unusable history is
an InputError that says why (more in test_calibration_history.py)."""

import json

import pytest
from conftest import run_cli as run

from scaling_planner.base.errors import InputError
from scaling_planner.calibration import store as cal
from scaling_planner.laws.presets import get_law
from scaling_planner.measure.models import MfuReport
from scaling_planner.planning.recommend import recommend

LAW = get_law("besiroglu2024")
ASK = dict(budget_flops=1e22, gpus=64, gpu="h100-sxm", alternatives=False)




def training(mfu, profile="h100-sxm", dtype="bf16", **kw):
    return cal.new_record(profile=profile, source="training", dtype=dtype, devices=8, mfu=mfu, **kw)


def probe(tflops, profile="h100-sxm", dtype="bf16"):
    return cal.new_record(profile=profile, source="probe", dtype=dtype, devices=8,
                          achieved_matmul_flops_per_s=tflops * 1e12)


@pytest.fixture(scope="module")
def base():
    return recommend(LAW, **ASK)


def test_training_record_sets_the_mfu_and_the_time(tmp_path, base):
    rec = training(0.21)
    cal.append(rec, tmp_path)
    p = recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ASK)
    t, b = p.training, base.training
    # the measured MFU sets the steady-state step; the end-to-end MFU adds failures and checkpoints only
    assert t.mfu_steady_state == pytest.approx(0.21, rel=1e-12)
    assert t.mfu == pytest.approx(0.21 * t.goodput, rel=1e-9) and t.end_to_end_factor == 1.0
    assert t.efficiency_source.startswith(f"measured: MFU 0.210 (calibration record {rec.id})")
    assert rec.id in t.mfu_provenance and t.mfu_provenance.startswith("measured: training measurement")
    assert p.calibration.training_record == rec.id and p.calibration.mfu == pytest.approx(0.21)
    assert p.calibration.directory == str(tmp_path) and p.calibration.probe_record is None
    # same layout and model FLOPs: the failure-free time scales with 1/MFU
    assert t.model_flops == pytest.approx(b.model_flops, rel=1e-12)
    assert t.ideal_time_s == pytest.approx(b.ideal_time_s * b.mfu_steady_state / 0.21, rel=1e-9)
    assert t.cost_usd > b.cost_usd * 1.2  # the prior's end-to-end MFU is ~0.3
    # the band narrows from the published runs' spread to the step model's transfer error
    assert t.gpu_hours_p90 / t.gpu_hours_p10 < 0.7 * (b.gpu_hours_p90 / b.gpu_hours_p10)
    assert any(rec.id in n for n in p.notes)


def test_probe_record_replaces_the_matmul_prior(tmp_path, base):
    slow = probe(400.0)  # 40 % of the 989.5 TFLOP/s bf16 peak, well below the profile's prior
    cal.append(slow, tmp_path)
    p = recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ASK)
    t = p.training
    assert p.calibration.probe_record == slow.id and p.calibration.training_record is None
    assert p.calibration.matmul_flops_per_s == pytest.approx(400e12)
    assert slow.id in t.mfu_provenance and t.mfu_provenance.startswith("simulated with the measured matmul")
    assert t.mfu < base.training.mfu * 0.8  # slower GEMMs, lower simulated MFU
    assert t.wall_clock_days > base.training.wall_clock_days
    # a faster measured GEMM lifts the simulated MFU instead
    fast_dir = tmp_path / "fast"
    cal.append(probe(900.0), fast_dir)
    fast = recommend(LAW, calibration="latest", calibration_dir=fast_dir, **ASK)
    assert fast.training.mfu > base.training.mfu


def test_a_record_measured_long_before_the_newest_is_not_in_the_median(tmp_path):
    old, new = training(0.30, created_at="2025-01-01T00:00:00.000000Z"), training(0.25)
    cal.append(new, tmp_path)
    cal.append(old, tmp_path)  # written later, measured earlier (more than 30 days before the newest)
    p = recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ASK)
    assert p.calibration.training_record == new.id and p.training.mfu_steady_state == pytest.approx(0.25)
    assert p.calibration.training_records == [new.id]
    assert any("1 older qualifying training record" in n for n in p.calibration.notes)


def test_probe_of_another_dtype_is_not_used_and_said(tmp_path, base):
    fp32 = probe(50.0, dtype="fp32")
    p = recommend(LAW, calibration=[fp32], **ASK)  # given records: said, and the profile's defaults kept
    assert p.calibration.probe_record is None and p.calibration.used == []
    assert any(fp32.id in n and "fp32" in n and "bf16" in n for n in p.calibration.notes)
    assert p.training.mfu == pytest.approx(base.training.mfu, rel=1e-12)
    assert p.training.mfu_provenance == "profile default"
    cal.append(fp32, tmp_path)  # asked for by --calibrated: an error that says why
    with pytest.raises(InputError, match="1 probe record.s. of another dtype than bf16") as info:
        recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ASK)
    assert info.value.field == "calibration" and str(tmp_path) in str(info.value)


def test_training_record_of_another_precision_is_not_used(tmp_path, base):
    rec = training(0.5, dtype="fp32")
    p = recommend(LAW, calibration=[rec], **ASK)
    assert p.training.mfu == pytest.approx(base.training.mfu, rel=1e-12)
    assert any(rec.id in n and "fp32" in n for n in p.calibration.notes)
    cal.append(rec, tmp_path)
    with pytest.raises(InputError, match="1 training record.s. of another precision than bf16") as info:
        recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ASK)
    assert info.value.field == "calibration"


@pytest.mark.parametrize(("setup", "field", "said"), [
    ("missing", "calibration_dir", "does not exist"),
    ("empty", "calibration", "0 record(s) read, 0 for h100-sxm"),
    ("other profile", "calibration", "1 record(s) read, 0 for h100-sxm, none qualified (none is for h100-sxm"),
])
def test_latest_without_a_usable_record_is_an_error_that_says_why(tmp_path, setup, field, said):
    """--calibrated used to plan silently with the profile's defaults ("no calibration found ...")."""
    d = tmp_path / "history"
    if setup != "missing":
        d.mkdir()
    if setup == "other profile":
        cal.append(training(0.2, profile="a100-sxm-80gb"), d)
    with pytest.raises(InputError) as info:
        recommend(LAW, calibration="latest", calibration_dir=d, **ASK)
    assert info.value.field == field and said in info.value.problem and str(d) in info.value.problem
    assert "\n" not in str(info.value)


def test_no_records_given_plans_with_profile_defaults(base):
    """The pre-flight flow loads records itself and may find none: a list plans with the defaults."""
    p = recommend(LAW, calibration=[], **ASK)
    assert p.training.mfu == pytest.approx(base.training.mfu, rel=1e-12)
    assert p.training.cost_usd == pytest.approx(base.training.cost_usd, rel=1e-12)
    assert p.calibration.used == [] and p.calibration.training_record is None
    assert "no calibration found for h100-sxm among the records given" in p.calibration.notes[0]
    assert any("no calibration found" in n for n in p.notes)


def test_environment_variable_names_the_default_directory(tmp_path, monkeypatch):
    rec = training(0.33)
    cal.append(rec, tmp_path)
    monkeypatch.setenv(cal.ENV_VAR, str(tmp_path))
    p = recommend(LAW, calibration="latest", **ASK)
    assert p.calibration.training_record == rec.id and p.training.mfu_steady_state == pytest.approx(0.33)


def test_damaged_file_is_reported_and_the_rest_used(tmp_path):
    rec = training(0.28)
    cal.append(rec, tmp_path)
    (tmp_path / "0000-broken.json").write_text("{not json")
    p = recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ASK)
    assert p.training.mfu_steady_state == pytest.approx(0.28)
    assert any("0000-broken.json" in n and "unreadable" in n for n in p.calibration.notes)


def test_explicit_mfu_wins_over_a_training_record(tmp_path):
    rec = training(0.2)
    cal.append(rec, tmp_path)
    p = recommend(LAW, calibration="latest", calibration_dir=tmp_path, mfu=0.45, **ASK)
    assert p.training.mfu_steady_state == pytest.approx(0.45) and p.training.mfu_provenance == "measured"
    assert any(rec.id in n and "explicit MFU" in n for n in p.calibration.notes)


def test_records_given_directly_from_an_mfu_report():
    report = MfuReport(device="cuda:0", profile="h100-sxm", dtype="bf16", steps=20, tokens=81920, elapsed_s=10.0,
                       tokens_per_s=8192.0, flops_per_token=6 * 7e9, flops_convention="6N",
                       achieved_flops_per_s=8192.0 * 6 * 7e9, peak_flops_per_s=989.5e12, mfu=8192.0 * 42e9 / 989.5e12)
    rec = cal.record_from_mfu(report)
    p = recommend(LAW, calibration=rec, **ASK)
    assert p.calibration.requested == "records" and p.calibration.training_record == rec.id
    assert p.training.mfu_steady_state == pytest.approx(report.mfu, rel=1e-12)
    both = recommend(LAW, calibration=[rec, probe(700.0)], **ASK)
    assert both.calibration.training_record == rec.id and both.calibration.probe_record is not None


@pytest.mark.parametrize("kw", [
    {"calibration": "newest"}, {"calibration": 3}, {"calibration": [object()]},
    {"calibration": training(0.3, profile="a100-sxm-80gb")},
    {"calibration_dir": "/tmp"}, {"calibration": training(0.3), "calibration_dir": "/tmp"},
])
def test_bad_calibration_requests(kw):
    with pytest.raises(InputError):
        recommend(LAW, **{**ASK, **kw})


def test_law_level_plan_cannot_be_calibrated():
    with pytest.raises(InputError, match="GPU profile"):
        recommend(LAW, budget_flops=1e22, gpu=None, calibration="latest")


# -- the CLI ----------------------------------------------------------------------------------------

def test_cli_recommend_calibrated_names_the_record(tmp_path):
    rec = training(0.22)
    cal.append(rec, tmp_path)
    code, out, err = run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--calibrated",
                         "--calibration-dir", str(tmp_path), "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["training"]["mfu_steady_state"] == pytest.approx(0.22) and rec.id in doc["training"]["mfu_provenance"]
    assert doc["calibration"]["training_record"] == rec.id
    code, out, _ = run("recommend", "--budget-flops", "1e22", "--gpus", "64", "--calibrated",
                       "--calibration-dir", str(tmp_path))
    assert code == 0 and f"measured, calibration {rec.id}" in out and rec.id in out


def test_cli_recommend_without_history(tmp_path):
    code, out, err = run("recommend", "--target-loss", "2.0", "--calibrated", "--calibration-dir",
                         str(tmp_path / "none"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "calibration_dir" in err and str(tmp_path / "none") in err and "does not exist" in err


def test_cli_simulate_calibrated(tmp_path):
    rec = training(0.3)
    cal.append(rec, tmp_path)
    argv = ["simulate", "--params", "7e9", "--tokens", "1e12", "--gpu", "h100-sxm", "--gpus", "64", "--json"]
    base = json.loads(run(*argv)[1])
    code, out, err = run(*argv, "--calibrated", "--calibration-dir", str(tmp_path))
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["training"]["mfu_steady_state"] == pytest.approx(0.3) and doc["calibration"]["training_record"] == rec.id
    assert doc["training"]["efficiency_source"].startswith(f"measured: MFU 0.300 (calibration record {rec.id})")
    tuned = json.loads(run(*argv, "--efficiency", "tuned")[1])["training"]
    # the measured MFU scales the tuned stack's best step
    assert doc["training"]["step_time_s"] == pytest.approx(
        tuned["step_time_s"] * tuned["mfu_steady_state"] / 0.3, rel=1e-9)
    assert base["training"]["gpu_hours"] > tuned["gpu_hours"]
    code, out, err = run(*argv[:-1], "--calibrated", "--calibration-dir", str(tmp_path / "none"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "calibration_dir" in err and str(tmp_path / "none") in err


@pytest.mark.parametrize("argv", [
    ["recommend", "--target-loss", "2", "--calibration-dir", "/tmp"],
    ["simulate", "--params", "7e9", "--tokens", "1e12", "--gpu", "h100-sxm", "--gpus", "8", "--calibration-dir", "x"],
    ["recommend", "--target-loss", "2", "--calibrated", "--calibration-dir"],
])
def test_cli_calibration_usage_errors(argv):
    code, out, err = run(*argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
