"""The hardware a plan is simulated on: the GPU profile (read by name, fast path below), the
calibration records of that profile it uses (:mod:`.calibration`) and the training simulator
calibrated with them (:class:`.training.Simulator`). ``gpu=None`` plans at the level of the law
only: no profile, no simulator.

The profiles load inside the functions (cold start of ``planner recommend``).
"""

from __future__ import annotations

from typing import NamedTuple

from ..calibration.choice import CalibrationUse, resolve
from ..hardware.profiles import load_profile
from .training import Simulator


class Hardware(NamedTuple):
    """The profile, the simulator on it (both None at law level), the calibration use and its notes."""

    profile: object
    sim: Simulator | None
    calibration: CalibrationUse | None
    notes: list[str]


def resolve_hardware(request) -> Hardware:
    """The :class:`Hardware` of a validated :class:`~.request.PlanRequest`. Raises InputError for an
    unknown profile, a GPU count that is neither within a node nor whole nodes, bad calibration
    records, or ``calibration='latest'`` with no usable record; the MFU the simulator uses is the explicit
    ``mfu``, else the calibrated one (the median of the recent qualifying records)."""
    if request.gpu is None:
        return Hardware(None, None, None, [])
    from ..simulate.training.estimate import device_domain

    profile = load_profile(request.gpu)
    if request.gpus is not None:
        device_domain(profile, request.gpus)  # InputError for a count the hardware is not allocated in
    if request.calibration is None:
        return Hardware(profile, Simulator(profile, request.price_usd_per_device_hour, request.mfu,
                                           efficiency=request.efficiency), None, [])
    # 'latest' with no usable record raises InputError (calibration / calibration_dir); given records
    # that are all unusable plan with the profile's defaults and say so (calibration.choice)
    precision = profile.training_precision  # bf16, fp32 on a CPU
    use = resolve(request.calibration, request.calibration_dir, profile.name, precision, explicit_mfu=request.mfu)
    measured = use.simulator_inputs(mfu=request.mfu)
    source = use.measured_source() if request.mfu is None else None
    return Hardware(profile, Simulator(profile, request.price_usd_per_device_hour, measured["measured_mfu"], precision,
                                       measured["measured_matmul_flops_per_s"], efficiency=request.efficiency,
                                       measured_source=source), use, use.plan_notes())
