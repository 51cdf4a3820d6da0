"""Sweep results store: records appended as rungs finish, runs.csv that planner fit reads, atomic writes,
resume by key, damaged records ignored, strict JSON."""

import json
import os

import numpy as np
import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.laws.runs import load_runs
from scaling_planner.sweep.store import CSV_COLUMNS, ResultStore, json_safe


def _record(key, N, D, loss, finished_at, role="isoflop"):
    return {
        "key": key, "role": role, "finished_at": finished_at, "corpus_train_tokens": 1_000_000,
        "rung": {"role": role, "budget_flops": 6.0 * N * D, "n_layer": 2, "n_head": 4, "d_model": 64, "params": N,
                 "tokens": D, "lr": 3e-3},
        "settings": {"seed": 0},
        "result": {"params_nonembedding": N, "tokens_seen": D, "final_val_loss": loss, "initial_val_loss": 5.5,
                   "flops_per_token": 6.5 * N, "params_total": N + 20_000, "lr": 3e-3, "seed": 0, "steps": D // 2048,
                   "corpus_tokens": 1_100_000, "train_s": 10.0, "wall_s": 11.0, "device": "cpu", "dtype": "fp32",
                   "mfu": {"tokens_per_s": 50_000.0, "mfu": 0.2}},
    }


RECORDS = [_record("b", 98_944, 1_009_664, 2.31, "2026-01-01T00:00:02"),
           _record("a", 27_936, 3_579_904, 2.05, "2026-01-01T00:00:01"),
           _record("c", 333_120, 3_336_192, 1.95, "2026-01-01T00:00:03", role="heldout")]


def test_append_writes_the_record_and_a_csv_planner_fit_reads(tmp_path):
    store = ResultStore(tmp_path / "out")
    for rec in RECORDS:
        path = store.append(rec)
        assert json.loads(path.read_text()) == rec
    runs = load_runs(tmp_path / "out" / "runs.csv")
    # in the order they finished, N, D, loss as recorded
    assert runs.N.tolist() == [27_936, 98_944, 333_120]
    assert runs.D.tolist() == [3_579_904, 1_009_664, 3_336_192]
    assert runs.loss.tolist() == pytest.approx([2.05, 2.31, 1.95])
    header = (tmp_path / "out" / "runs.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == CSV_COLUMNS
    rows = (tmp_path / "out" / "runs.csv").read_text().splitlines()[1:]
    first = dict(zip(header, rows[0].split(","), strict=True))
    assert float(first["compute_flops"]) == pytest.approx(6 * 27_936 * 3_579_904, rel=1e-5)
    assert float(first["epochs"]) == pytest.approx(3_579_904 / 1_000_000, rel=1e-3)
    assert first["role"] == "isoflop" and first["mfu"] == "0.2000"


def test_csv_holds_only_the_active_keys(tmp_path):
    store = ResultStore(tmp_path)
    store.active = ["a", "c"]
    for rec in RECORDS:
        store.append(rec)
    assert load_runs(tmp_path / "runs.csv").N.tolist() == [27_936, 333_120]
    assert sorted(p.stem for p in (tmp_path / "runs").glob("*.json")) == ["a", "b", "c"]  # every record is kept


def test_reopening_needs_resume_and_then_skips_finished_keys(tmp_path):
    store = ResultStore(tmp_path)
    store.append(RECORDS[0])
    with pytest.raises(InputError) as exc:
        ResultStore(tmp_path)
    assert exc.value.field == "out" and "--resume" in str(exc.value) and "1 finished rung" in str(exc.value)
    again = ResultStore(tmp_path, resume=True)
    assert "b" in again and "a" not in again
    assert again.get("b") == RECORDS[0]
    assert ResultStore(tmp_path / "fresh").records == {}  # an empty or missing directory needs no --resume


def test_damaged_records_are_reported_and_ignored(tmp_path):
    store = ResultStore(tmp_path)
    store.append(RECORDS[0])
    (tmp_path / "runs" / "half.json").write_text('{"key": "half", "role": "iso')  # a torn write by hand
    (tmp_path / "runs" / "x.json").write_text(json.dumps({**RECORDS[1], "key": "not-x"}))  # name != key
    bad_result = {**RECORDS[2], "result": {"final_val_loss": "nan?"}}
    (tmp_path / "runs" / "c.json").write_text(json.dumps(bad_result))
    again = ResultStore(tmp_path, resume=True)
    assert set(again.records) == {"b"}
    assert sorted(again.damaged) == ["c.json", "half.json", "x.json"]


def test_a_failed_write_leaves_the_previous_files_whole(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.append(RECORDS[0])
    before = (tmp_path / "runs.csv").read_text()

    def fail(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(InputError, match="No space left"):
        store.append(RECORDS[1])
    monkeypatch.undo()
    assert (tmp_path / "runs.csv").read_text() == before
    assert not (tmp_path / "runs" / "a.json").exists()
    assert [p.name for p in tmp_path.rglob(".*.tmp")] == []  # no temporary file left behind
    assert set(ResultStore(tmp_path, resume=True).records) == {"b"}


def test_a_record_without_its_csv_line_is_recovered(tmp_path):
    """A crash between the record and the CSV: the next append rewrites the CSV from every record."""
    store = ResultStore(tmp_path)
    store.append(RECORDS[0])
    (tmp_path / "runs" / "a.json").write_text(json.dumps(RECORDS[1]))  # the record landed, the CSV did not
    again = ResultStore(tmp_path, resume=True)
    again.append(RECORDS[2])
    assert load_runs(tmp_path / "runs.csv").N.tolist() == [27_936, 98_944, 333_120]


def test_records_need_their_fields(tmp_path):
    with pytest.raises(InputError, match="missing finished_at"):
        ResultStore(tmp_path).append({k: v for k, v in RECORDS[0].items() if k != "finished_at"})


def test_documents_are_strict_json(tmp_path):
    store = ResultStore(tmp_path)
    doc = {"a": float("inf"), "b": [np.float64(1.5), float("nan"), {"c": np.int64(3)}], "d": "x"}
    store.write_doc("doc.json", doc)
    assert json.loads((tmp_path / "doc.json").read_text()) == {"a": None, "b": [1.5, None, {"c": 3}], "d": "x"}
    assert json_safe((1, 2.0)) == [1, 2.0]
    assert store.read_doc("doc.json")["d"] == "x"
    assert store.read_doc("missing.json") is None
    (tmp_path / "bad.json").write_text("{")
    assert store.read_doc("bad.json") is None


def test_out_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        ResultStore(f)
