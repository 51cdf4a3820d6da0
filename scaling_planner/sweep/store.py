"""Results of a sweep, written as each rung finishes, so an interrupted sweep resumes where it stopped.

Layout of the output directory::

    runs/<key>.json           one record per finished rung (the rung, its training settings, the TrainResult)
    runs.csv                  N, D, loss first (what ``planner fit`` reads), then the rest of each record
    suggestion.json           the rungs the fit suggested (a resumed sweep trains the same ones)
    heldout_prediction.json   the held-out prediction, written before the held-out rung trains
    sessions.json             start and wall time of every session (a resumed sweep has several)
    sweep.json                the report (:func:`scaling_planner.sweep.report.sweep_document`)

Every file is written with :func:`scaling_planner.base.io.write_text_atomic` (temporary file + ``os.replace``):
an interruption leaves the previous version or the new one, never half a file. A record is written
before ``runs.csv`` is regenerated from all records, so a crash between the two loses nothing (the
next run rewrites the CSV). The key of a record (:meth:`~scaling_planner.sweep.design.Rung.key`)
hashes everything that changes the run's result; on resume a rung whose key has a record is skipped.
A damaged record (not JSON, wrong fields) is reported and ignored: that rung trains again.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..base.errors import InputError
from ..base.io import write_json_atomic, write_text_atomic

RUNS_DIR = "runs"
RUNS_CSV = "runs.csv"
CSV_COLUMNS = ("N", "D", "loss", "role", "key", "compute_flops", "model_flops", "params_total", "n_layer",
               "d_model", "n_head", "lr", "seed", "steps", "epochs", "initial_val_loss", "train_s", "wall_s",
               "tokens_per_s", "mfu", "device", "dtype", "finished_at")
REQUIRED = ("key", "role", "rung", "result", "finished_at")


class ResultStore:
    """The records of one output directory. ``resume=False`` refuses a directory that already holds
    finished rungs (InputError naming ``--resume``), so a sweep never mixes into another by accident."""

    def __init__(self, out_dir: str | Path, *, resume: bool = False):
        self.dir = Path(out_dir).expanduser()
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError("out", f"{self.dir} is a file, not a directory")
        self.runs_dir = self.dir / RUNS_DIR
        self.records: dict[str, dict] = {}
        self.damaged: list[str] = []
        self.active: list[str] | None = None  # keys written to runs.csv (None: every record)
        if self.runs_dir.is_dir():
            for path in sorted(self.runs_dir.glob("*.json")):
                record = _read_record(path)
                if record is None:
                    self.damaged.append(path.name)
                else:
                    self.records[record["key"]] = record
        if self.records and not resume:
            raise InputError("out", f"{self.dir} already holds {len(self.records)} finished rung(s) of a sweep; "
                                    "pass --resume to continue it (finished rungs are skipped) or choose another --out")

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict:
        return self.records[key]

    def append(self, record: dict) -> Path:
        """Write one finished rung's record, then regenerate ``runs.csv``; returns the record's path."""
        missing = [k for k in REQUIRED if k not in record]
        if missing:
            raise InputError("record", f"missing {', '.join(missing)}")
        path = write_json_atomic(self.runs_dir / f"{record['key']}.json", record)
        self.records[record["key"]] = record
        self.write_csv()
        return path

    def ordered(self, keys: list[str] | None = None) -> list[dict]:
        """Records in the order they finished (``keys`` restricts them; unknown keys are skipped)."""
        chosen = self.records.values() if keys is None else [self.records[k] for k in keys if k in self.records]
        return sorted(chosen, key=lambda r: (r["finished_at"], r["key"]))

    def write_csv(self) -> Path:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for record in self.ordered(self.active):
            row = csv_row(record)
            writer.writerow([row[c] for c in CSV_COLUMNS])
        return write_text_atomic(self.dir / RUNS_CSV, buf.getvalue())

    def write_doc(self, name: str, doc: dict) -> Path:
        """Write a document atomically; non-finite numbers (a statistic of overflowing bootstrap draws)
        become null, numpy scalars plain numbers."""
        return write_json_atomic(self.dir / name, json_safe(doc))

    def read_doc(self, name: str) -> dict | None:
        """A document written by :meth:`write_doc`, or None when missing or damaged."""
        try:
            data = json.loads((self.dir / name).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None


def json_safe(obj):
    """``obj`` with numpy scalars as Python numbers and NaN/inf as None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _read_record(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED) or path.stem != data.get("key"):
        return None
    result = data.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("final_val_loss"), (int, float)):
        return None
    return data


def csv_row(record: dict) -> dict:
    """One ``runs.csv`` row of a record: N (non-embedding params), D (tokens seen), loss (final
    validation loss, nats/byte), then provenance and the measured speed."""
    rung, res = record["rung"], record["result"]
    mfu = res.get("mfu") or {}
    N, D = int(res["params_nonembedding"]), int(res["tokens_seen"])
    return {
        "N": N, "D": D, "loss": f"{res['final_val_loss']:.6f}", "role": record["role"], "key": record["key"],
        "compute_flops": f"{6.0 * N * D:.6g}", "model_flops": f"{res['flops_per_token'] * D:.6g}",
        "params_total": res["params_total"], "n_layer": rung["n_layer"], "d_model": rung["d_model"],
        "n_head": rung["n_head"], "lr": f"{res['lr']:.6g}", "seed": res["seed"], "steps": res["steps"],
        "epochs": f"{D / record.get('corpus_train_tokens', res['corpus_tokens']):.4g}",
        "initial_val_loss": f"{res['initial_val_loss']:.6f}", "train_s": f"{res['train_s']:.3f}",
        "wall_s": f"{res['wall_s']:.3f}", "tokens_per_s": f"{mfu.get('tokens_per_s', 0.0):.1f}",
        "mfu": "" if mfu.get("mfu") is None else f"{mfu['mfu']:.4f}", "device": res["device"],
        "dtype": res["dtype"], "finished_at": record["finished_at"],
    }
