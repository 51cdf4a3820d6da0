"""The calibration history: append-only, atomic, newest-per-key lookup, damaged files reported, records
built from a cluster measurement (median over devices) and from an MFU report, bad fields named."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.calibration import store as calibration
from scaling_planner.calibration.store import (
    append,
    calibration_dir,
    history,
    latest,
    new_record,
    record_from_mfu,
    records_from_cluster,
)
from scaling_planner.measure.models import (
    ClusterMeasurement,
    ClusterTotals,
    DeviceMeasurement,
    MfuReport,
    NodeMeasurement,
    ProbeResult,
)


def _probe(profile: str = "h100-sxm", dtype: str = "bf16", rate: float = 700e12, **fields):
    return new_record(profile=profile, source="probe", dtype=dtype, devices=8,
                      achieved_matmul_flops_per_s=rate, **fields)


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir())


# ---- append-only and atomic ---------------------------------------------------------------------------

def test_two_appends_make_two_files_and_nothing_is_overwritten(tmp_path: Path):
    first, second = _probe(rate=600e12), _probe(rate=700e12)
    p1 = append(first, tmp_path)
    before = p1.read_text()
    p2 = append(second, tmp_path)
    assert p1 != p2 and _files(tmp_path) == sorted([p1, p2])
    assert p1.read_text() == before
    assert json.loads(p1.read_text())["achieved_matmul_flops_per_s"] == 600e12
    assert json.loads(p2.read_text())["achieved_matmul_flops_per_s"] == 700e12
    records, problems = history(tmp_path)
    assert [r.id for r in records] == [first.id, second.id] and problems == []


def test_appending_the_same_record_again_is_refused_and_keeps_the_file(tmp_path: Path):
    rec = _probe()
    path = append(rec, tmp_path)
    before = path.read_bytes()
    with pytest.raises(InputError) as info:
        append(rec.model_copy(update={"achieved_matmul_flops_per_s": 1.0}), tmp_path)
    assert info.value.field == "id"
    assert path.read_bytes() == before and _files(tmp_path) == [path]


def test_a_crash_during_the_write_leaves_no_partial_file_and_keeps_the_history(tmp_path: Path, monkeypatch):
    kept = append(_probe(rate=650e12), tmp_path)
    kept_bytes = kept.read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(InputError, match="No space left on device"):
        append(_probe(rate=999e12), tmp_path)
    monkeypatch.undo()

    assert _files(tmp_path) == [kept], "neither the new record nor its temporary file may remain"
    assert kept.read_bytes() == kept_bytes
    records, problems = history(tmp_path)
    assert [r.achieved_matmul_flops_per_s for r in records] == [650e12] and problems == []


def test_interrupt_during_write_also_cleans_up(tmp_path: Path, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        append(_probe(), tmp_path)
    monkeypatch.undo()
    assert _files(tmp_path) == []


# ---- reading ----------------------------------------------------------------------------------------------

def test_latest_picks_the_newest_record_per_profile_source_and_dtype(tmp_path: Path):
    recs = [
        _probe(created_at="2026-01-03T00:00:00.000000Z", rate=710e12),
        _probe(created_at="2026-01-01T00:00:00.000000Z", rate=690e12),
        _probe(created_at="2026-01-05T00:00:00.000000Z", dtype="fp32", rate=60e12),
        _probe(created_at="2026-01-09T00:00:00.000000Z", profile="a100-sxm-80gb", rate=280e12),
        new_record(profile="h100-sxm", source="training", dtype="bf16", devices=1, mfu=0.41,
                   created_at="2026-01-04T00:00:00.000000Z"),
    ]
    for r in recs:  # written out of time order: the file order is not the answer
        append(r, tmp_path)
    assert latest("h100-sxm", tmp_path).created_at.startswith("2026-01-05")  # any source, any dtype
    assert latest("h100-sxm", tmp_path, dtype="bf16").mfu == 0.41
    assert latest("h100-sxm", tmp_path, source="probe", dtype="bf16").achieved_matmul_flops_per_s == 710e12
    assert latest("h100-sxm", tmp_path, source="probe", dtype="fp32").achieved_matmul_flops_per_s == 60e12
    assert latest("h100-sxm", tmp_path, source="training").mfu == 0.41
    assert latest("a100-sxm-80gb", tmp_path).achieved_matmul_flops_per_s == 280e12
    assert latest("b200", tmp_path) is None
    assert latest("h100-sxm", tmp_path / "absent") is None


def test_a_damaged_file_is_reported_not_fatal_and_not_deleted(tmp_path: Path):
    good = append(_probe(rate=700e12), tmp_path)
    broken = tmp_path / "20260101T000000Z-broken.json"
    broken.write_text('{"id": "broken", "profile": ')
    wrong = tmp_path / "20260102T000000Z-wrong.json"
    wrong.write_text(json.dumps({"id": "x", "profile": "h100-sxm", "source": "probe"}))  # fields missing
    records, problems = history(tmp_path)
    assert [r.id for r in records] == [json.loads(good.read_text())["id"]]
    assert sorted(problems) == [f"{broken.name}: unreadable (JSONDecodeError)",
                                f"{wrong.name}: unreadable (ValidationError)"]
    assert latest("h100-sxm", tmp_path).achieved_matmul_flops_per_s == 700e12
    assert broken.exists() and wrong.exists()


def test_directory_comes_from_argument_then_environment_then_default(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(calibration.ENV_VAR, str(tmp_path / "env"))
    assert calibration_dir(tmp_path / "arg") == tmp_path / "arg"
    assert calibration_dir() == tmp_path / "env"
    monkeypatch.delenv(calibration.ENV_VAR)
    assert calibration_dir() == calibration.DEFAULT_DIR.expanduser()


# ---- building records -----------------------------------------------------------------------------------

def _matmul(dtype: str, rate: float, peak: float | None, n: int = 8192) -> ProbeResult:
    return ProbeResult(kind="matmul", backend="torch-cuda", dtype=dtype, size=n, unit="flops_per_s", median=rate,
                       samples=[rate], spread=0.0, warmup=1, repeats=1, timed_s=1.0, total_s=1.2, peak=peak,
                       fraction_of_peak=rate / peak if peak else None)


def _device(node: str, index: int, profile: str | None, rates: dict[str, float], status: str = "ok",
            peak: float | None = 989e12) -> DeviceMeasurement:
    return DeviceMeasurement(node_id=node, hostname=f"host-{node}", device=f"cuda:{index}", profile=profile,
                             status=status, probes=[_matmul(d, r, peak) for d, r in rates.items()])


def _cluster(devices: list[DeviceMeasurement], partial: bool = False) -> ClusterMeasurement:
    nodes = {}
    for d in devices:
        nodes.setdefault(d.node_id, []).append(d)
    return ClusterMeasurement(
        measured_at="2026-02-01T00:00:00.000000Z", ray_address="10.0.0.1:6379", elapsed_s=12.0, partial=partial,
        nodes=[NodeMeasurement(node_id=n, alive=True, devices=ds) for n, ds in nodes.items()],
        totals=ClusterTotals(nodes=len(nodes), nodes_alive=len(nodes), devices=len(devices),
                             devices_ok=sum(d.status == "ok" for d in devices), gpus=len(devices)),
        straggler_margin=0.1)


def test_records_from_cluster_take_the_median_over_devices_of_each_profile():
    bf16 = [600e12, 720e12, 650e12]
    devices = [_device("a", i, "h100-sxm", {"bf16": r, "fp32": 50e12}) for i, r in enumerate(bf16)]
    devices.append(_device("b", 0, "h100-sxm", {"bf16": 10e12}, status="failed"))  # not ok: left out
    devices.append(_device("b", 1, None, {"bf16": 900e12}))  # no profile: cannot calibrate anything
    devices.append(DeviceMeasurement(node_id="c", device="cpu", profile="cpu", status="ok",
                                     probes=[_matmul("fp32", 0.2e12, 0.25e12)]))
    m = _cluster(devices, partial=True)
    recs = records_from_cluster(m)
    by_profile = {r.profile: r for r in recs}
    assert sorted(by_profile) == ["cpu", "h100-sxm"]

    h100 = by_profile["h100-sxm"]
    assert h100.source == "probe" and h100.dtype == "bf16"  # bf16 preferred over fp32
    assert h100.devices == 3
    assert h100.achieved_matmul_flops_per_s == pytest.approx(statistics.median(bf16))
    assert h100.matmul_fraction_of_peak == pytest.approx(statistics.median(r / 989e12 for r in bf16))
    assert h100.details["per_device_flops_per_s"] == bf16
    assert h100.details["partial"] is True and h100.details["ray_address"] == "10.0.0.1:6379"
    assert h100.host == "host-a"

    cpu = by_profile["cpu"]
    assert cpu.dtype == "fp32" and cpu.devices == 1 and cpu.achieved_matmul_flops_per_s == 0.2e12
    assert cpu.matmul_fraction_of_peak == pytest.approx(0.8)


def test_records_from_cluster_use_the_best_probe_of_a_device():
    dev = _device("a", 0, "h100-sxm", {"bf16": 500e12})
    dev.probes.append(_matmul("bf16", 700e12, 989e12, n=16384))
    (rec,) = records_from_cluster(_cluster([dev, _device("a", 1, "h100-sxm", {"bf16": 680e12})]))
    assert rec.achieved_matmul_flops_per_s == pytest.approx(690e12)  # median of 700 (best) and 680


def test_records_from_cluster_with_nothing_measured_is_empty():
    assert records_from_cluster(_cluster([_device("a", 0, "h100-sxm", {"bf16": 1e12}, status="timeout")])) == []


def _mfu_report(**fields) -> MfuReport:
    base = {"device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3", "profile": "h100-sxm", "dtype": "bf16",
            "steps": 20, "tokens": 20 * 4096, "elapsed_s": 10.0, "tokens_per_s": 8192.0,
            "flops_per_token": 6 * 124e6, "flops_convention": "6N + 12LHQT", "achieved_flops_per_s": 6e12,
            "peak_flops_per_s": 989e12, "mfu": 6e12 / 989e12}
    return MfuReport(**{**base, **fields})


def test_record_from_mfu_keeps_the_mfu_and_its_convention(tmp_path: Path):
    rec = record_from_mfu(_mfu_report(), details={"model": "gpt-124m"})
    assert rec.source == "training" and rec.profile == "h100-sxm" and rec.dtype == "bf16" and rec.devices == 1
    assert rec.mfu == pytest.approx(6e12 / 989e12) and rec.tokens_per_s == 8192.0
    assert rec.details["flops_convention"] == "6N + 12LHQT" and rec.details["model"] == "gpt-124m"
    append(rec, tmp_path)
    assert latest("h100-sxm", tmp_path, source="training").id == rec.id
    assert record_from_mfu(_mfu_report(profile=None), profile="h100-pcie").profile == "h100-pcie"


def test_record_from_mfu_without_profile_or_mfu_names_the_field():
    with pytest.raises(InputError) as info:
        record_from_mfu(_mfu_report(profile=None))
    assert info.value.field == "profile"
    with pytest.raises(InputError) as info:
        record_from_mfu(_mfu_report(mfu=None, peak_flops_per_s=None))
    assert info.value.field == "mfu"


@pytest.mark.parametrize(("fields", "field"), [
    ({"source": "guess"}, "source"),
    ({"devices": "many"}, "devices"),
    ({"achieved_matmul_flops_per_s": -1.0}, "achieved_matmul_flops_per_s"),
    ({"achieved_matmul_flops_per_s": 0.0}, "achieved_matmul_flops_per_s"),
    ({"matmul_fraction_of_peak": 2.0}, "matmul_fraction_of_peak"),
    ({"achieved_matmul_flops_per_s": None, "mfu": 0.0}, "mfu"),
    ({"achieved_matmul_flops_per_s": None}, "record"),
    ({"tokens_per_s": -5.0}, "tokens_per_s"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_fields_raise_input_error_naming_the_field(fields, field):
    base = {"profile": "h100-sxm", "source": "probe", "dtype": "bf16", "devices": 8,
            "achieved_matmul_flops_per_s": 700e12}
    with pytest.raises(InputError) as info:
        new_record(**{**base, **fields})
    assert info.value.field == field


def test_a_missing_required_field_is_named():
    with pytest.raises(InputError) as info:
        new_record(source="probe", dtype="bf16", devices=1, achieved_matmul_flops_per_s=1e12)
    assert info.value.field == "profile"
