"""Calibration history: what the cluster was measured to achieve, kept so the planner can use it.

An append-only history: one JSON file per record in a directory, each written atomically (temporary
file + ``os.replace``) under a name that is never reused, so an interrupted write leaves no half file
and no record is ever overwritten. A record file is created as any file the user writes (mode 0666
less the umask: 0644 under umask 022), so a team directory is readable by the others. The planner
chooses the records a plan uses from the history (:mod:`.choice`) and says which ones it used.

Each record carries ``schema_version`` (:data:`SCHEMA_VERSION`; a file without it is version 1). The
reader (``history``) never fails on one file: a damaged file, or one written by a newer planner (a
``schema_version`` above this one's), is skipped and reported. A temporary file left by a killed writer
(``.<name>.json.<random>.tmp``) is never read as a record; one older than :data:`STALE_TMP_S` is removed
(a younger one may be a write in progress).

Two sources feed it:

* ``probe``: matmul probes across the cluster (``planner measure --save``): the achieved dense matmul
  FLOP/s per device, which replaces the profile's ``achievable_matmul_fraction`` prior;
* ``training``: the MFU meter over a real training loop (``measure.mfu``), which replaces the
  simulator's predicted MFU.

Directory: ``--calibration-dir``, else ``$SCALING_PLANNER_CALIBRATION_DIR``, else
``~/.scaling-planner/calibration``. Pure Python and pydantic: no NVML, torch or Ray here.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..base.errors import InputError
from ..base.io import TMP_SUFFIX, write_text_atomic
from ..base.units import TERA

ENV_VAR = "SCALING_PLANNER_CALIBRATION_DIR"
DEFAULT_DIR = Path("~/.scaling-planner/calibration")
SUFFIX = ".json"
SCHEMA_VERSION = 1
"""The record format this planner writes and reads; a file without ``schema_version`` is version 1."""
STALE_TMP_S = 600.0
"""A temporary file older than this (seconds) is an interrupted write's orphan, removed by ``history``."""
TMP_GLOB = f".*{SUFFIX}.*{TMP_SUFFIX}"
"""The temporary files of a record being written (``.<name>.json.<random>.tmp``, base.io's atomic write,
which creates the record with mode 0666 less the umask: 0644 under umask 022)."""


class CalibrationRecord(BaseModel):
    """One measurement the planner can plan with."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION,
                                description="the record format (a file without it is version 1)")
    id: str
    created_at: str = Field(description="UTC ISO 8601")
    profile: str = Field(description="hardware profile the measured devices map to")
    source: Literal["probe", "training"]
    dtype: str
    devices: int = Field(description="how many devices the figure summarises")
    achieved_matmul_flops_per_s: float | None = Field(None, description="median over devices (probe)")
    matmul_fraction_of_peak: float | None = Field(None, description="achieved / dense peak (probe)")
    mfu: float | None = Field(None, description="model FLOPs utilisation of a real training loop (training)")
    tokens_per_s: float | None = None
    host: str | None = None
    details: dict = Field(default_factory=dict)

    def describe(self) -> str:
        """One line for plans and logs: which measurement, from when, of what."""
        what = (f"MFU {self.mfu:.3f}" if self.mfu is not None
                else f"matmul {self.achieved_matmul_flops_per_s / TERA:.4g} TFLOP/s"
                     + (f" ({self.matmul_fraction_of_peak:.1%} of peak)" if self.matmul_fraction_of_peak else ""))
        return (f"{self.source} measurement {self.id} of {self.devices} x {self.profile} {self.dtype} "
                f"at {self.created_at}: {what}")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def calibration_dir(directory: str | Path | None = None) -> Path:
    """The history directory: the argument, else the environment variable, else the default."""
    raw = directory if directory is not None else os.environ.get(ENV_VAR, "").strip() or DEFAULT_DIR
    return Path(raw).expanduser()


def new_record(**fields) -> CalibrationRecord:
    """A record with a fresh id and timestamp; bad fields raise InputError naming the field."""
    fields.setdefault("id", uuid.uuid4().hex[:12])
    fields.setdefault("created_at", _now())
    try:
        rec = CalibrationRecord(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(".".join(str(p) for p in err["loc"]) or "record", err["msg"]) from None
    for name in ("achieved_matmul_flops_per_s", "tokens_per_s"):
        v = getattr(rec, name)
        if v is not None and not v > 0:
            raise InputError(name, f"must be > 0, got {v}")
    for name in ("matmul_fraction_of_peak", "mfu"):
        v = getattr(rec, name)
        if v is not None and not 0 < v <= 1.5:
            raise InputError(name, f"must be in (0, 1.5], got {v}")
    if rec.achieved_matmul_flops_per_s is None and rec.mfu is None:
        raise InputError("record", "needs achieved_matmul_flops_per_s (probe) or mfu (training)")
    return rec


def append(record: CalibrationRecord, directory: str | Path | None = None) -> Path:
    """Add ``record`` to the history; returns the file written. Never overwrites an existing record."""
    d = calibration_dir(directory)
    stamp = record.created_at.replace("-", "").replace(":", "").replace(".", "")
    path = d / f"{stamp}-{record.id}{SUFFIX}"
    if path.exists():
        raise InputError("id", f"record {record.id} already exists in {d}")
    return write_text_atomic(path, json.dumps(record.model_dump(mode="json"), indent=2, allow_nan=False) + "\n",
                             field="calibration_dir")


def _clean_stale_tmp(d: Path, problems: list[str], stale_s: float = STALE_TMP_S) -> None:
    """Remove the temporary files of interrupted writes (a writer killed between create and rename)
    older than ``stale_s``; each removal, or failure to remove, is one line in ``problems``."""
    now = time.time()
    for tmp in sorted(d.glob(TMP_GLOB)):
        try:
            age_s = now - tmp.stat().st_mtime
        except OSError:
            continue  # renamed or removed meanwhile: a write that finished
        if age_s < stale_s:
            continue  # perhaps a write in progress
        try:
            tmp.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{tmp.name}: stale temporary file of an interrupted write, not removed "
                            f"({exc.strerror or exc})")
            continue
        problems.append(f"{tmp.name}: stale temporary file of an interrupted write ({age_s / 60:.0f} min old), "
                        "removed")


class _NewerSchemaError(ValueError):
    """A record file of a newer format than this planner reads."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(f"schema version {version}")


def read_record(path: Path) -> CalibrationRecord:
    """One record file. Raises OSError, ValueError (not JSON, or a newer ``schema_version``: the
    message says which), TypeError or ValidationError."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise TypeError("not a JSON object")
    version = data.get("schema_version", 1)
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise _NewerSchemaError(version)
    return CalibrationRecord(**data)


def history(directory: str | Path | None = None, *, profile: str | None = None,
            source: str | None = None) -> tuple[list[CalibrationRecord], list[str]]:
    """All readable records, oldest first, and one line per file that could not be read.

    A damaged file, or one of a newer ``schema_version``, is reported, not deleted and not fatal:
    the history is never lost. Temporary files are never read; stale ones are removed
    (module docstring).
    """
    d = calibration_dir(directory)
    if not d.is_dir():
        return [], []
    records, problems = [], []
    _clean_stale_tmp(d, problems)
    for path in sorted(d.glob(f"*{SUFFIX}")):
        try:
            rec = read_record(path)
        except _NewerSchemaError as exc:
            problems.append(f"{path.name}: skipped, schema version {exc.version} is newer than this planner reads "
                            f"({SCHEMA_VERSION}; upgrade scaling-planner to use it)")
            continue
        except (OSError, ValueError, TypeError, ValidationError) as exc:
            problems.append(f"{path.name}: unreadable ({type(exc).__name__})")
            continue
        if profile is not None and rec.profile != profile:
            continue
        if source is not None and rec.source != source:
            continue
        records.append(rec)
    records.sort(key=lambda r: (r.created_at, r.id))
    return records, problems


def latest(profile: str, directory: str | Path | None = None, *, source: str | None = None,
           dtype: str | None = None) -> CalibrationRecord | None:
    """The newest record for ``profile`` (optionally of one source and dtype), or None."""
    records, _ = history(directory, profile=profile, source=source)
    records = [r for r in records if dtype is None or r.dtype == dtype]
    return records[-1] if records else None


DTYPE_PREFERENCE = ("bf16", "fp16", "tf32", "fp32")


def records_from_cluster(measurement, *, dtype_preference=None) -> list[CalibrationRecord]:
    """Probe records from a :class:`~scaling_planner.measure.models.ClusterMeasurement`: one per
    (profile, dtype) with the median over that profile's devices that reported, for the most
    preferred dtype that was measured. By default the dtype that calibrates the profile's training
    precision comes first (fp32 on a CPU, bf16 elsewhere), then :data:`DTYPE_PREFERENCE`."""
    by_profile: dict[str, list] = {}
    for dev in measurement.devices():
        if dev.status == "ok" and dev.profile:
            by_profile.setdefault(dev.profile, []).append(dev)
    out = []
    for profile, devs in sorted(by_profile.items()):
        for dtype in dtype_preference or _preference(profile):
            probes = [p for p in (d.best_matmul(dtype) for d in devs) if p is not None]
            if not probes:
                continue
            rates = [p.median for p in probes]
            fractions = [p.fraction_of_peak for p in probes if p.fraction_of_peak]
            out.append(new_record(
                profile=profile, source="probe", dtype=dtype, devices=len(probes),
                achieved_matmul_flops_per_s=statistics.median(rates),
                matmul_fraction_of_peak=statistics.median(fractions) if fractions else None,
                host=devs[0].hostname,
                details={"measured_at": measurement.measured_at, "ray_address": measurement.ray_address,
                         "per_device_flops_per_s": rates, "backend": probes[0].backend,
                         "size": probes[0].size, "partial": measurement.partial}))
            break
    return out


def _preference(profile_name: str) -> tuple[str, ...]:
    """The probe dtypes to record for a profile, best first: the one calibrating its training precision."""
    from ..hardware.profiles import load_profile
    from ..simulate.efficiency import measured_dtype

    try:
        first = measured_dtype(load_profile(profile_name).training_precision)
    except InputError:  # a profile that no longer loads: the general order
        return DTYPE_PREFERENCE
    return (first, *(d for d in DTYPE_PREFERENCE if d != first))


def record_from_mfu(report, *, profile: str | None = None, details: dict | None = None) -> CalibrationRecord:
    """A training record from an :class:`~scaling_planner.measure.models.MfuReport`."""
    prof = profile or report.profile
    if not prof:
        raise InputError("profile", "the MFU report names no hardware profile; give one")
    if report.mfu is None:
        raise InputError("mfu", "the MFU report has no MFU (no peak for its device); give a profile with a peak")
    return new_record(
        profile=prof, source="training", dtype=report.dtype, devices=1, mfu=report.mfu,
        tokens_per_s=report.tokens_per_s,
        details={"flops_per_token": report.flops_per_token, "flops_convention": report.flops_convention,
                 "steps": report.steps, "device": report.device, **(details or {})})
