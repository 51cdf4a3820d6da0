"""Which measurements of the calibration history a plan uses (issue 6: "the planner uses the
measured achievable FLOP/s and MFU for a profile when asked, and the plan says which measurements it
used").

Two kinds of record (:mod:`scaling_planner.calibration`) feed the training simulator:

* a ``training`` record's MFU replaces the simulator's predicted MFU (``measured_mfu``);
* a ``probe`` record's achieved dense matmul FLOP/s replaces the profile's
  ``achievable_matmul_fraction`` prior (``measured_matmul_flops_per_s``). The simulator reads that
  rate as a GEMM rate of the dtype that calibrates the plan's precision
  (:func:`scaling_planner.simulate.efficiency.measured_dtype`: bf16 for a bf16 or fp8 plan, which
  :class:`~scaling_planner.simulate.efficiency.DeviceRates` scales to fp8; fp32 for a CPU's fp32
  plan), so only a probe of that dtype is used; a probe of another dtype (a bf16 probe on a CPU, a
  tf32 one) is named in a note with the reason it was left out.

A training record is used only when its dtype is the plan's precision (an fp32 MFU says little
about a bf16 run). An MFU above 1 (the record format allows up to 1.5 to keep odd measurements)
is not plausible for a plan and is left out with a note. An explicit MFU (``--mfu``) wins over the
training records, and an explicit matmul rate (``--measured-tflops``) over the probe records.

Of the records of one kind that qualify, the plan uses the **median** of the newest
:data:`RECENT_RECORDS` measured within :data:`RECENT_WINDOW_DAYS` days of the newest one (all of them
when there are fewer), not the newest alone: one run on a contended node (an MFU of 0.4 %) would
otherwise steer every later plan. The window is anchored on the newest qualifying record, not on
the clock, so the same history always gives the same plan and a history that stopped growing still
calibrates. ``CalibrationUse.used`` lists every record taken, and a note says "median of K records".

``calibration='latest'`` (``--calibrated``) is a request for a calibrated plan: a missing directory or
a history with no qualifying record for the profile is an :class:`InputError` that says which
directory was read, how many records it held and why none qualified. Records given as a list (the
pre-flight flow loads them itself) never fail: with none usable the plan keeps the profile's
defaults and says so.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from ..base.errors import InputError
from ..base.units import TERA

RECENT_RECORDS = 5
"""At most this many of the newest qualifying records of one kind go into the median."""
RECENT_WINDOW_DAYS = 30.0
"""Only records measured within this many days of the newest qualifying one go into the median."""


class CalibrationUse(BaseModel):
    """What the plan took from the calibration history, and what it left out and why."""

    model_config = ConfigDict(defer_build=True)

    requested: str = Field(description="'latest' (the recent records in a directory) or 'records' (given)")
    directory: str | None = Field(None, description="the history directory searched ('latest')")
    profile: str
    training_record: str | None = Field(
        None, description="id of the newest training record whose MFU is in the plan's median (all: training_records)")
    probe_record: str | None = Field(
        None, description="id of the newest probe record whose matmul FLOP/s is in the plan's median (all: "
        "probe_records)")
    training_records: list[str] = Field(default_factory=list,
                                        description="ids of the training records whose median MFU the plan uses")
    probe_records: list[str] = Field(default_factory=list,
                                     description="ids of the probe records whose median matmul rate the plan uses")
    mfu: float | None = Field(None, description="the measured MFU used: the median of training_records "
                                                "(model FLOPs, dense peak)")
    matmul_flops_per_s: float | None = Field(None, description="the measured matmul rate used (bf16; fp32 on a "
                                                               "CPU): the median of probe_records (a rate)")
    used: list[str] = Field(default_factory=list, description="one line per record used (record.describe())")
    notes: list[str] = Field(default_factory=list, description="how the records were combined; records left out "
                                                               "and why; nothing found")

    def simulator_inputs(self, mfu: float | None = None, matmul_flops_per_s: float | None = None) -> dict:
        """``measured_mfu`` and ``measured_matmul_flops_per_s`` for the training simulator: an explicit
        value (``mfu``, ``matmul_flops_per_s``) wins over the calibrated one."""
        return {"measured_mfu": self.mfu if mfu is None else mfu,
                "measured_matmul_flops_per_s": self.matmul_flops_per_s if matmul_flops_per_s is None
                else matmul_flops_per_s}

    def measured_source(self) -> str | None:
        """The training records behind the measured MFU, for the simulator's ``efficiency_source``:
        'calibration record <id>' or 'median of K calibration records <ids>'; None without one."""
        ids = self.training_records or ([self.training_record] if self.training_record else [])
        if not ids:
            return None
        if len(ids) == 1:
            return f"calibration record {ids[0]}"
        return f"median of {len(ids)} calibration records {', '.join(ids)}"

    def plan_notes(self) -> list[str]:
        """One line per record used, then what was left out and why, each prefixed ``calibration:``."""
        return [f"calibration: used {line}" for line in self.used] + [f"calibration: {n}" for n in self.notes]


def _history(calibration, calibration_dir, profile_name: str):
    """(requested, directory, records for the profile, problems, records of every profile read) for
    any accepted ``calibration``."""
    from ..calibration import store as cal

    if isinstance(calibration, str):
        if calibration.strip().lower() != "latest":
            raise InputError("calibration", f"must be 'latest', a CalibrationRecord or a list of them, "
                                            f"got {calibration!r}")
        directory = cal.calibration_dir(calibration_dir)
        if not directory.is_dir():
            raise InputError("calibration_dir", f"no calibration history at {directory} (the directory does not "
                                                "exist): nothing to calibrate the plan with; record measurements "
                                                "(planner measure --save, a training flow) or plan without "
                                                "--calibrated")
        every, problems = cal.history(directory)
        return "latest", str(directory), [r for r in every if r.profile == profile_name], problems, len(every)
    if calibration_dir is not None:
        raise InputError("calibration_dir", "is only read with calibration='latest'")
    given = [calibration] if isinstance(calibration, cal.CalibrationRecord) else calibration
    try:
        given = list(given)
    except TypeError:
        raise InputError("calibration", f"must be 'latest', a CalibrationRecord or a list of them, "
                                        f"got {type(calibration).__name__}") from None
    for rec in given:
        if not isinstance(rec, cal.CalibrationRecord):
            raise InputError("calibration", f"must hold CalibrationRecord objects, got {type(rec).__name__}")
        if rec.profile != profile_name:
            raise InputError("calibration", f"record {rec.id} measured profile {rec.profile!r}, but the plan "
                                            f"is for {profile_name!r}")
    return "records", None, sorted(given, key=lambda r: (r.created_at, r.id)), [], len(given)


def resolve(calibration, calibration_dir, profile_name: str, precision: str = "bf16", *,
            explicit_mfu: float | None = None, explicit_matmul_flops_per_s: float | None = None) -> CalibrationUse:
    """The records a plan on ``profile_name`` at ``precision`` uses: of each kind, the median of the
    recent ones that qualify (module docstring). ``calibration``: 'latest' (read ``calibration_dir``,
    else ``$SCALING_PLANNER_CALIBRATION_DIR``, else ``~/.scaling-planner/calibration``), one
    :class:`~scaling_planner.calibration.store.CalibrationRecord` or a list of them.

    'latest' raises InputError (``calibration_dir``: the directory does not exist; ``calibration``: no
    record of the profile qualifies, with how many were read and why each kind was left out). Given
    records never fail: with none usable the plan goes on with the profile's defaults and the result
    says "no calibration found for <profile> among the records given".
    """
    requested, directory, records, problems, read = _history(calibration, calibration_dir, profile_name)
    from ..simulate.efficiency import measured_dtype

    probe_dtype = measured_dtype(precision)  # the dtype the simulator reads a measured matmul rate as
    use = CalibrationUse(requested=requested, directory=directory, profile=profile_name)
    where = f"in {directory}" if directory is not None else "among the records given"
    use.notes += [f"calibration file {p}" for p in problems]

    training = [r for r in records if r.source == "training" and r.mfu is not None]
    probes = [r for r in records if r.source == "probe" and r.achieved_matmul_flops_per_s is not None]

    def training_fits(r):
        return r.dtype == precision and r.mfu <= 1.0

    def probe_fits(r):
        return r.dtype == probe_dtype

    if requested == "latest" and not any(map(training_fits, training)) and not any(map(probe_fits, probes)):
        raise InputError("calibration", _nothing_qualifies(profile_name, precision, directory, read, records,
                                                           training, probes, problems, probe_dtype))
    if not records:
        use.notes.append(f"no calibration found for {profile_name} {where}: profile defaults used")
        return use

    chosen = _recent_fit(use, training, training_fits, lambda r: _why_not_training(r, precision),
                         None if explicit_mfu is None else f"an explicit MFU {explicit_mfu:g} was given")
    if chosen:
        use.training_records = [r.id for r in chosen]
        use.training_record = chosen[0].id
        use.mfu = median_of([float(r.mfu) for r in chosen])
        use.notes.append(_median_note(f"training MFU {use.mfu:.3f}", chosen, f"{precision} training records "
                                                                             "with MFU <= 1"))

    chosen = _recent_fit(use, probes, probe_fits, lambda r: _why_not_probe(r, probe_dtype),
                         None if explicit_matmul_flops_per_s is None else "an explicit matmul rate was given")
    if chosen:
        use.probe_records = [r.id for r in chosen]
        use.probe_record = chosen[0].id
        use.matmul_flops_per_s = median_of([float(r.achieved_matmul_flops_per_s) for r in chosen])
        use.notes.append(_median_note(f"{probe_dtype} matmul {use.matmul_flops_per_s / TERA:.4g} TFLOP/s", chosen,
                                      f"{probe_dtype} probe records"))
    if not use.used and not any("not used" in n for n in use.notes):
        use.notes.append(f"no usable calibration found for {profile_name} {where}: profile defaults used")
    return use


def median_of(values: list[float]) -> float:
    """The sample median: while fewer than half the values are arbitrarily wrong (a contended run), it
    stays within the range of the good ones (breakdown point 1/2; Hampel 1971, "A general qualitative
    definition of robustness", Ann. Math. Statist. 42(6)). With an even count, the mean of the middle two."""
    return float(statistics.median(values))


def _created(rec) -> datetime | None:
    """The record's time (UTC when it names no zone), or None when it cannot be read."""
    try:
        t = datetime.fromisoformat(rec.created_at)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def recent(records: list) -> list:
    """The newest :data:`RECENT_RECORDS` of ``records`` (qualifying records of one kind, oldest first)
    measured within :data:`RECENT_WINDOW_DAYS` days of the newest, newest first. A record whose time
    cannot be read is kept (its age is unknown, not old)."""
    newest_first = list(reversed(records))
    anchor = _created(newest_first[0]) if newest_first else None
    window = timedelta(days=RECENT_WINDOW_DAYS)
    out = []
    for rec in newest_first:
        t = _created(rec)
        if anchor is not None and t is not None and (anchor - t) > window:
            continue
        out.append(rec)
        if len(out) == RECENT_RECORDS:
            break
    return out


def _recent_fit(use: CalibrationUse, records: list, fits, why_not, explicit: str | None) -> list:
    """The recent ``records`` (one source, oldest first) that ``fits`` (:func:`recent`), newest first,
    each added to ``use.used``, with a note (``why_not``) for each record of the same span left out and
    one for the older qualifying ones; [] with a note on the newest record when none fits or an explicit
    value wins (``explicit``: the reason)."""
    if explicit is not None:
        if records:
            use.notes.append(f"{records[-1].source} record {records[-1].id} not used: {explicit}")
        return []
    fit = [r for r in records if fits(r)]
    if not fit:
        if records:
            use.notes.append(why_not(records[-1]))
        return []
    chosen = recent(fit)
    use.used += [r.describe() for r in chosen]
    use.notes += [why_not(r) for r in records[records.index(chosen[-1]):] if not fits(r)]
    older = len(fit) - len(chosen)
    if older:
        use.notes.append(f"{older} older qualifying {chosen[0].source} record(s) not used: the median takes the "
                         f"{RECENT_RECORDS} newest within {RECENT_WINDOW_DAYS:g} days of the newest")
    return chosen


def _median_note(what: str, chosen: list, kind: str) -> str:
    """'<what>: median of K records (<ids>), the newest <kind> ...' (module docstring)."""
    ids = ", ".join(r.id for r in chosen)
    return (f"{what}: median of {len(chosen)} record{'s' if len(chosen) != 1 else ''} ({ids}), the newest {kind} "
            f"(up to {RECENT_RECORDS}, within {RECENT_WINDOW_DAYS:g} days of the newest)")


def _nothing_qualifies(profile_name, precision, directory, read, records, training, probes, problems,
                       probe_dtype) -> str:
    """One line: which directory was read, how many records, and why none qualified for the plan."""
    why = Counter()
    for r in training:
        why["training record(s) of another precision than " + precision if r.dtype != precision
            else "training record(s) with MFU > 1"] += 1
    if probes:
        why[f"probe record(s) of another dtype than {probe_dtype}"] += len(probes)
    if problems:
        why["unreadable or skipped file(s)"] += len(problems)
    reasons = "; ".join(f"{n} {what}" for what, n in why.items())
    if not records:
        reasons = f"none is for {profile_name}" + (f"; {reasons}" if reasons else "")
    return (f"--calibrated/'latest' found no usable record for {profile_name} in {directory}: {read} record(s) "
            f"read, {len(records)} for {profile_name}, none qualified ({reasons}; a plan uses {precision} training "
            f"records with MFU <= 1 and {probe_dtype} probe records)")


def _why_not_training(rec, precision: str) -> str:
    if rec.dtype != precision:
        return (f"training record {rec.id} not used: it measured {rec.dtype}, the plan trains in {precision} "
                "(an MFU does not carry across precisions)")
    return f"training record {rec.id} not used: MFU {rec.mfu:.3f} > 1 is not plausible"


def _why_not_probe(rec, probe_dtype: str) -> str:
    return (f"probe record {rec.id} not used: it measured {rec.dtype} matmuls; the simulator reads a measured "
            f"rate as {probe_dtype} (measure {probe_dtype} to calibrate it)")


def mfu_provenance(use: CalibrationUse | None, explicit_mfu: float | None) -> dict:
    """The training block's MFU provenance, typed and as a sentence: ``mfu_source`` 'explicit' (--mfu),
    'calibration' (the training records' median MFU), 'calibration matmul' (the probe records' median
    matmul rate) or 'profile'; ``mfu_record`` the newest record's id; ``mfu_provenance`` the sentence
    ('measured', 'measured: <record>' or 'measured: median MFU .. of K training measurements (<ids>)',
    'simulated with the measured matmul rate of <record>' (or the median of K), 'profile default')."""
    if explicit_mfu is not None:
        return {"mfu_source": "explicit", "mfu_record": None, "mfu_provenance": "measured"}
    if use is not None and use.training_record is not None:
        k = len(use.training_records)
        said = use.used[0] if k <= 1 else (f"median MFU {use.mfu:.3f} of {k} training measurements "
                                           f"({', '.join(use.training_records)})")
        return {"mfu_source": "calibration", "mfu_record": use.training_record, "mfu_provenance": f"measured: {said}"}
    if use is not None and use.probe_record is not None:
        k = len(use.probe_records)
        said = (f"the measured matmul rate of {use.used[-1]}" if k <= 1 else
                f"the median measured matmul rate ({use.matmul_flops_per_s / TERA:.4g} TFLOP/s) of {k} probe "
                f"measurements ({', '.join(use.probe_records)})")
        return {"mfu_source": "calibration matmul", "mfu_record": use.probe_record,
                "mfu_provenance": f"simulated with {said}"}
    return {"mfu_source": "profile", "mfu_record": None, "mfu_provenance": "profile default"}
