"""The calibration history as a team shares it (real files in a real directory): records readable by
the group per the umask, a schema version, a robust (median) choice of recent records so one
contended run does not steer every plan, orphaned temporary files of a killed writer cleaned up and
never read, and --calibrated with nothing usable an error that says why."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO
from conftest import run_cli as run

from scaling_planner.base.errors import InputError
from scaling_planner.calibration import store as cal
from scaling_planner.calibration.choice import RECENT_RECORDS, resolve
from scaling_planner.laws.presets import get_law
from scaling_planner.planning.recommend import recommend

LAW = get_law("besiroglu2024")
ASK = dict(budget_flops=1e22, gpus=64, gpu="h100-sxm", alternatives=False)


def training(mfu: float, day: int, profile: str = "h100-sxm", dtype: str = "bf16") -> cal.CalibrationRecord:
    return cal.new_record(profile=profile, source="training", dtype=dtype, devices=8, mfu=mfu,
                          created_at=f"2026-03-{day:02d}T12:00:00.000000Z")


# ---- 1. file mode -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_records_are_created_readable_per_the_umask(tmp_path: Path, umask: int, mode: int):
    """They were 0600 (tempfile.mkstemp), unreadable to the rest of a team sharing the directory."""
    old = os.umask(umask)
    try:
        path = cal.append(training(0.4, 1), tmp_path / "team")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in (tmp_path / "team").iterdir()] == [path.name]  # no temporary file left


# ---- 2. schema version ----------------------------------------------------------------------------------

def test_records_carry_a_schema_version_and_old_files_read_as_version_1(tmp_path: Path):
    rec = training(0.4, 1)
    path = cal.append(rec, tmp_path)
    assert json.loads(path.read_text())["schema_version"] == cal.SCHEMA_VERSION == 1
    legacy = json.loads(path.read_text())
    del legacy["schema_version"]
    legacy["id"] = "legacy"
    (tmp_path / "20260301T000000Z-legacy.json").write_text(json.dumps(legacy))  # written before the field
    records, problems = cal.history(tmp_path)
    assert problems == [] and {r.id: r.schema_version for r in records} == {"legacy": 1, rec.id: 1}


def test_a_record_of_a_newer_schema_is_skipped_with_a_note_not_deleted(tmp_path: Path):
    good = training(0.4, 1)
    cal.append(good, tmp_path)
    future = {**training(0.2, 2).model_dump(mode="json"), "schema_version": 2, "id": "future",
              "field_of_the_future": [1, 2]}
    newer = tmp_path / "20260302T120000Z-future.json"
    newer.write_text(json.dumps(future))
    records, problems = cal.history(tmp_path)
    assert [r.id for r in records] == [good.id]
    assert problems == [f"{newer.name}: skipped, schema version 2 is newer than this planner reads (1; upgrade "
                        "scaling-planner to use it)"]
    assert newer.exists()
    p = recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ASK)
    assert p.calibration.training_records == [good.id]
    assert any(newer.name in n and "schema version 2" in n for n in p.calibration.notes)
    with pytest.raises(InputError) as info:  # a version this planner does not know is never written
        cal.new_record(**{k: v for k, v in future.items() if k != "field_of_the_future"})
    assert info.value.field == "schema_version"


# ---- 3. a robust choice: the median of the recent records -------------------------------------------------

GOOD = [0.39, 0.40, 0.40, 0.41]  # median 0.40


def test_one_contended_run_does_not_move_the_plan(tmp_path: Path):
    """The newest record used to win: one 0.4 % MFU run on a contended node steered every later plan."""
    good_dir, mixed_dir = tmp_path / "good", tmp_path / "mixed"
    good = [training(m, day) for day, m in enumerate(GOOD, start=1)]
    outlier = training(0.004, 9)  # the newest record
    for rec in good:
        cal.append(rec, good_dir)
        cal.append(rec, mixed_dir)
    cal.append(outlier, mixed_dir)

    clean = recommend(LAW, calibration="latest", calibration_dir=good_dir, **ASK)
    mixed = recommend(LAW, calibration="latest", calibration_dir=mixed_dir, **ASK)
    assert clean.calibration.mfu == pytest.approx(0.40) and mixed.calibration.mfu == pytest.approx(0.40)
    assert mixed.training.mfu_steady_state == pytest.approx(clean.training.mfu_steady_state, rel=1e-12)
    assert mixed.training.gpu_hours == pytest.approx(clean.training.gpu_hours, rel=1e-12)
    assert mixed.training.cost_usd == pytest.approx(clean.training.cost_usd, rel=1e-12)
    # what newest-wins would have planned with: the outlier alone
    alone = recommend(LAW, calibration=[outlier], **ASK)
    assert alone.training.gpu_hours > 20 * mixed.training.gpu_hours

    # the plan says which records it used and how
    use = mixed.calibration
    assert use.training_records == [outlier.id] + [r.id for r in reversed(good)]
    assert use.training_record == outlier.id  # the newest of them
    assert len(use.used) == 5 and all(r.id in line for r, line in zip([outlier, *reversed(good)], use.used,
                                                                         strict=True))
    assert any(n.startswith("training MFU 0.400: median of 5 records") for n in use.notes)
    assert "median MFU 0.400 of 5 training measurements" in mixed.training.mfu_provenance
    assert outlier.id in mixed.training.mfu_provenance
    assert mixed.training.efficiency_source.startswith("measured: MFU 0.400 (median of 5 calibration records")


def test_the_median_takes_the_newest_five_within_thirty_days_of_the_newest(tmp_path: Path):
    old = training(0.10, 1).model_copy(update={"created_at": "2026-01-15T00:00:00.000000Z"})  # 2 months before
    wrong_dtype = training(0.90, 12, dtype="fp32")  # other filters kept: precision
    too_high = cal.new_record(profile="h100-sxm", source="training", dtype="bf16", devices=8, mfu=1.2,
                              created_at="2026-03-13T12:00:00.000000Z")  # MFU > 1
    recent = [training(m, day) for day, m in zip(range(3, 10), [0.20, 0.21, 0.30, 0.31, 0.32, 0.33, 0.34],
                                                  strict=True)]
    for rec in [old, wrong_dtype, too_high, *recent]:
        cal.append(rec, tmp_path)
    use = resolve("latest", tmp_path, "h100-sxm")
    newest5 = list(reversed(recent))[:RECENT_RECORDS]
    assert use.training_records == [r.id for r in newest5] and use.mfu == pytest.approx(0.32)
    assert any("3 older qualifying training record(s) not used" in n for n in use.notes)
    assert any(wrong_dtype.id in n and "fp32" in n for n in use.notes)
    assert any(too_high.id in n and "> 1" in n for n in use.notes)


def test_cli_simulate_calibrated_uses_the_median(tmp_path: Path):
    for day, m in enumerate([*GOOD, 0.004], start=1):
        cal.append(training(m, day), tmp_path)
    argv = ["simulate", "--params", "7e9", "--tokens", "1e12", "--gpu", "h100-sxm", "--gpus", "64", "--json"]
    code, out, err = run(*argv, "--calibrated", "--calibration-dir", str(tmp_path))
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["training"]["mfu_steady_state"] == pytest.approx(0.40)
    assert len(doc["calibration"]["training_records"]) == 5
    assert "median of 5 calibration records" in doc["training"]["efficiency_source"]


# ---- 4. orphaned temporary files --------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import os, sys, time
    from scaling_planner.calibration import store

    def hang(src, dst):  # the record is written and synced; killed before the rename
        print("written", flush=True)
        time.sleep(120)

    os.replace = hang
    store.append(store.new_record(profile="h100-sxm", source="training", dtype="bf16", devices=8, mfu=0.01),
                 sys.argv[1])
""")


def _orphan_by_sigkill(directory: Path) -> Path:
    """A real orphan: a writer process SIGKILLed between writing its temporary file and the rename."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    (orphan,) = directory.glob(cal.TMP_GLOB)
    return orphan


def test_a_killed_writers_orphan_is_never_read_and_removed_once_stale(tmp_path: Path):
    good = training(0.4, 1)
    cal.append(good, tmp_path)
    orphan = _orphan_by_sigkill(tmp_path)
    assert json.loads(orphan.read_text())["mfu"] == 0.01  # a whole record, but never committed

    # young: perhaps a write in progress; not read, not removed, not reported
    records, problems = cal.history(tmp_path)
    assert [r.id for r in records] == [good.id] and problems == [] and orphan.exists()

    stale = time.time() - cal.STALE_TMP_S - 60
    os.utime(orphan, (stale, stale))
    records, problems = cal.history(tmp_path)
    assert [r.id for r in records] == [good.id]
    assert not orphan.exists()
    assert len(problems) == 1 and problems[0].startswith(f"{orphan.name}: stale temporary file")
    assert "removed" in problems[0]
    assert list(tmp_path.glob(cal.TMP_GLOB)) == []
    # the plan uses the committed record only
    p = recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ASK)
    assert p.calibration.training_records == [good.id] and p.calibration.mfu == pytest.approx(0.4)


# ---- 5. --calibrated with nothing usable is an error that says why ---------------------------------------------

def test_api_latest_with_no_usable_record_names_the_directory_the_count_and_why(tmp_path: Path):
    cal.append(training(0.4, 1, dtype="fp32"), tmp_path)
    cal.append(training(0.4, 2, profile="a100-sxm-80gb"), tmp_path)
    (tmp_path / "0000-broken.json").write_text("{not json")
    with pytest.raises(InputError) as info:
        recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ASK)
    msg = info.value.problem
    assert info.value.field == "calibration" and "\n" not in msg
    assert f"in {tmp_path}: 2 record(s) read, 1 for h100-sxm, none qualified" in msg
    assert "1 training record(s) of another precision than bf16" in msg and "1 unreadable or skipped" in msg


@pytest.mark.parametrize("verb", [
    ["recommend", "--budget-flops", "1e22", "--gpus", "64"],
    ["simulate", "--params", "7e9", "--tokens", "1e12", "--gpu", "h100-sxm", "--gpus", "64"],
])
@pytest.mark.parametrize("setup", ["missing", "unusable"])
def test_cli_calibrated_with_no_usable_record_is_one_line_exit_2(tmp_path: Path, verb, setup):
    d = tmp_path / "history"
    if setup == "unusable":
        cal.append(cal.new_record(profile="h100-sxm", source="probe", dtype="fp32", devices=1,
                                  achieved_matmul_flops_per_s=50e12), d)
    code, out, err = run(*verb, "--calibrated", "--calibration-dir", str(d))
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and str(d) in err
    if setup == "missing":
        assert "calibration_dir: no calibration history" in err
    else:
        assert "calibration: " in err and "1 record(s) read, 1 for h100-sxm" in err
        assert "1 probe record(s) of another dtype than bf16" in err


def test_the_preflight_path_with_no_records_still_plans_with_the_defaults():
    """The pre-flight flow loads records itself (tasks.load_calibration) and passes a list: none found is
    a plan on the profile's defaults, not an error."""
    from scaling_planner import tasks

    result = tasks.simulate_training.fn(7e9, 1e12, "h100-sxm", 64, calibration=[])
    assert result.training.mfu > 0
    base = recommend(LAW, **ASK)
    assert recommend(LAW, calibration=[], **ASK).training.mfu == pytest.approx(base.training.mfu, rel=1e-12)
