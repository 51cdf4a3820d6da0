"""Which measurements of the calibration history a plan uses (issue 6: "the planner uses the latest
measured achievable FLOP/s and MFU for a profile when asked, and the plan says which measurement
it used").

Two kinds of record (:mod:`scaling_planner.calibration`) feed the training simulator:

* a ``training`` record's MFU replaces the simulator's predicted MFU (``measured_mfu``);
* a ``probe`` record's achieved dense matmul FLOP/s replaces the profile's
  ``achievable_matmul_fraction`` prior (``measured_matmul_flops_per_s``). The simulator reads that
  rate as a *bf16* GEMM rate (:class:`scaling_planner.simulate.efficiency.DeviceRates` scales it
  to fp8), so only a bf16 probe is used; a probe of another dtype (an fp32 numpy probe on a CPU,
  a tf32 one) is named in a note with the reason it was left out.

A training record is used only when its dtype is the plan's precision (an fp32 MFU says little
about a bf16 run). An MFU above 1 (the record format allows up to 1.5 to keep odd measurements)
is not plausible for a plan and is left out with a note. An explicit MFU (``--mfu``) wins over a
training record, and an explicit matmul rate (``--measured-tflops``) over a probe record.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..base.errors import InputError

PROBE_DTYPE = "bf16"  # the dtype DeviceRates reads a measured matmul rate as


class CalibrationUse(BaseModel):
    """What the plan took from the calibration history, and what it left out and why."""

    model_config = ConfigDict(defer_build=True)

    requested: str = Field(description="'latest' (the newest records in a directory) or 'records' (given)")
    directory: str | None = Field(None, description="the history directory searched ('latest')")
    profile: str
    training_record: str | None = Field(None, description="id of the training record whose MFU the plan uses")
    probe_record: str | None = Field(None, description="id of the probe record whose matmul FLOP/s the plan uses")
    mfu: float | None = Field(None, description="the measured MFU used (model FLOPs, dense peak)")
    matmul_flops_per_s: float | None = Field(None, description="the measured bf16 matmul rate used (a rate)")
    used: list[str] = Field(default_factory=list, description="one line per record used (record.describe())")
    notes: list[str] = Field(default_factory=list, description="records left out and why; nothing found")

    def simulator_inputs(self, mfu: float | None = None, matmul_flops_per_s: float | None = None) -> dict:
        """``measured_mfu`` and ``measured_matmul_flops_per_s`` for the training simulator: an explicit
        value (``mfu``, ``matmul_flops_per_s``) wins over the calibrated one."""
        return {"measured_mfu": self.mfu if mfu is None else mfu,
                "measured_matmul_flops_per_s": self.matmul_flops_per_s if matmul_flops_per_s is None
                else matmul_flops_per_s}

    def plan_notes(self) -> list[str]:
        """One line per record used, then what was left out and why, each prefixed ``calibration:``."""
        return [f"calibration: used {line}" for line in self.used] + [f"calibration: {n}" for n in self.notes]


def _records(calibration, calibration_dir, profile_name: str):
    """(requested, directory, records for the profile, problems) for any accepted ``calibration``."""
    from ..calibration import store as cal

    if isinstance(calibration, str):
        if calibration.strip().lower() != "latest":
            raise InputError("calibration", f"must be 'latest', a CalibrationRecord or a list of them, "
                                            f"got {calibration!r}")
        directory = cal.calibration_dir(calibration_dir)
        records, problems = cal.history(directory, profile=profile_name)
        return "latest", str(directory), records, problems
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
    return "records", None, sorted(given, key=lambda r: (r.created_at, r.id)), []


def resolve(calibration, calibration_dir, profile_name: str, precision: str = "bf16", *,
            explicit_mfu: float | None = None, explicit_matmul_flops_per_s: float | None = None) -> CalibrationUse:
    """The records a plan on ``profile_name`` at ``precision`` uses (the newest of each kind that
    qualifies; module docstring). ``calibration``: 'latest' (read ``calibration_dir``, else
    ``$SCALING_PLANNER_CALIBRATION_DIR``, else ``~/.scaling-planner/calibration``), one
    :class:`~scaling_planner.calibration.store.CalibrationRecord` or a list of them.

    Never fails for a missing or empty history: the plan goes on with the profile's defaults and
    the result says "no calibration found for <profile> in <dir>".
    """
    requested, directory, records, problems = _records(calibration, calibration_dir, profile_name)
    use = CalibrationUse(requested=requested, directory=directory, profile=profile_name)
    where = f"in {directory}" if directory is not None else "among the records given"
    use.notes += [f"unreadable calibration file {p}" for p in problems]
    if not records:
        use.notes.append(f"no calibration found for {profile_name} {where}: profile defaults used")
        return use

    training = [r for r in records if r.source == "training" and r.mfu is not None]
    rec = _newest_fit(use, training, lambda r: r.dtype == precision and r.mfu <= 1.0,
                      lambda r: _why_not_training(r, precision),
                      None if explicit_mfu is None else f"an explicit MFU {explicit_mfu:g} was given")
    if rec is not None:
        use.training_record, use.mfu = rec.id, float(rec.mfu)

    probes = [r for r in records if r.source == "probe" and r.achieved_matmul_flops_per_s is not None]
    rec = _newest_fit(use, probes, lambda r: r.dtype == PROBE_DTYPE, _why_not_probe,
                      None if explicit_matmul_flops_per_s is None else "an explicit matmul rate was given")
    if rec is not None:
        use.probe_record, use.matmul_flops_per_s = rec.id, float(rec.achieved_matmul_flops_per_s)
    if not use.used and not any("not used" in n for n in use.notes):
        use.notes.append(f"no usable calibration found for {profile_name} {where}: profile defaults used")
    return use


def _newest_fit(use: CalibrationUse, records: list, fits, why_not, explicit: str | None):
    """The newest of ``records`` (one source, oldest first) that ``fits``, added to ``use.used``, with
    a note (``why_not``) for each newer one left out; None, with a note on the newest record, when
    none fits or an explicit value wins (``explicit``: the reason)."""
    if explicit is not None:
        if records:
            use.notes.append(f"{records[-1].source} record {records[-1].id} not used: {explicit}")
        return None
    fit = [r for r in records if fits(r)]
    if not fit:
        if records:
            use.notes.append(why_not(records[-1]))
        return None
    rec = fit[-1]
    use.used.append(rec.describe())
    use.notes += [why_not(newer) for newer in records[records.index(rec) + 1:]]
    return rec


def _why_not_training(rec, precision: str) -> str:
    if rec.dtype != precision:
        return (f"training record {rec.id} not used: it measured {rec.dtype}, the plan trains in {precision} "
                "(an MFU does not carry across precisions)")
    return f"training record {rec.id} not used: MFU {rec.mfu:.3f} > 1 is not plausible"


def _why_not_probe(rec) -> str:
    return (f"probe record {rec.id} not used: it measured {rec.dtype} matmuls; the simulator reads a measured "
            f"rate as {PROBE_DTYPE} (measure {PROBE_DTYPE} to calibrate it)")


def mfu_provenance(use: CalibrationUse | None, explicit_mfu: float | None) -> dict:
    """The training block's MFU provenance, typed and as a sentence: ``mfu_source`` 'explicit' (--mfu),
    'calibration' (a training record's MFU), 'calibration matmul' (a probe record's matmul rate) or
    'profile'; ``mfu_record`` the record's id; ``mfu_provenance`` the sentence ('measured', 'measured:
    <record>', 'simulated with the measured matmul rate of <record>', 'profile default')."""
    if explicit_mfu is not None:
        return {"mfu_source": "explicit", "mfu_record": None, "mfu_provenance": "measured"}
    if use is not None and use.training_record is not None:
        return {"mfu_source": "calibration", "mfu_record": use.training_record,
                "mfu_provenance": f"measured: {use.used[0]}"}
    if use is not None and use.probe_record is not None:
        return {"mfu_source": "calibration matmul", "mfu_record": use.probe_record,
                "mfu_provenance": f"simulated with the measured matmul rate of {use.used[-1]}"}
    return {"mfu_source": "profile", "mfu_record": None, "mfu_provenance": "profile default"}
