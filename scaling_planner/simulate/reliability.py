"""Failures, checkpoints and goodput of a long training job.

A job on ``n_devices`` accelerators is interrupted at a rate proportional to the device count (each
device fails independently, exponentially distributed). It writes a checkpoint every ``tau`` seconds
of progress, which takes ``delta`` seconds; after an interruption it spends ``R`` seconds to detect,
restart and reload, and recomputes the work done since the last checkpoint (on average half an
interval).

Wall-clock model (first order, self-consistent). Interruptions happen during the *wall-clock*, not
the ideal time, so the wall-clock ``T_w`` solves the fixed point

    T_w = T_ideal·(1 + delta/tau) + (T_w / M)·(R + tau/2)

whose closed form is ``T_w = T_ideal / f`` with the goodput fraction

    f = (1 − (R + tau/2)/M) / (1 + delta/tau)                       (:func:`goodput_fraction`)

(M = job MTBF). This is the model behind Young (1974), whose optimum ``tau = sqrt(2·delta·M)``
minimises its first-order waste ``delta/tau + tau/(2M)``. No progress is possible when
``R + tau/2 >= M``: each interruption then costs more than the mean time between interruptions.
:func:`daly_expected_wall_clock_s` gives Daly's (2006) exact exponential-model expectation as a
cross-check; the two agree to second order in (tau + delta)/M.

Defaults are the published figures in ``reference/reliability_and_prices.md`` §1; every one of them
is an input a user should override for their own cluster.

Pure numpy; vectorised over ``ideal_time_s``, ``n_devices`` and ``checkpoint_bytes`` (and the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import InfeasibleError, InputError
from ..base.units import SECONDS_PER_HOUR, TIB

# -- published anchors (reference/reliability_and_prices.md §1) --------------------------------------

#: Llama 3 405B pretraining snapshot (Llama 3 paper §3.3.4, Table 5): 419 unexpected interruptions
#: (466 with the 47 planned ones) in 54 days on 16,384 H100; effective training time > 90 %.
LLAMA3_UNEXPECTED_INTERRUPTIONS = 419
LLAMA3_ALL_INTERRUPTIONS = 466
LLAMA3_GPUS = 16_384
LLAMA3_DAYS = 54.0
#: Tectonic, the store Llama 3 checkpointed to: 2 TB/s sustained (7 TB/s peak).
LLAMA3_STORAGE_WRITE_BYTES_PER_S = 2e12

#: BLOOM-176B (bigscience tr11-176B-ml README): a 2.3 TB checkpoint saved in about 40 s. BLOOM's
#: "329 GB" of bf16 weights for 176.2e9 parameters is 352e9 bytes = 328 GiB, so its "GB"/"TB" are
#: binary units: 2.3 TiB.
BLOOM_CHECKPOINT_BYTES = 2.3 * TIB
BLOOM_CHECKPOINT_SAVE_S = 40.0

#: Unexpected interruptions per device-hour: Llama 3 405B, 419 / (16,384 GPUs × 54 days × 24 h)
#: = 1.97e-5 (4.7e-4 per GPU-day, one per 5.8 GPU-years). The planned ones (47 more) are left out:
#: maintenance can be scheduled at a checkpoint and loses no work. MPT-7B saw about twice this rate
#: on A100 (4 failures, 440 GPUs, 9.5 days: a small sample); OPT-175B on a 2021 public cloud far more.
DEFAULT_INTERRUPTIONS_PER_DEVICE_HOUR: float = LLAMA3_UNEXPECTED_INTERRUPTIONS / (
    LLAMA3_GPUS * LLAMA3_DAYS * 24.0
)

#: Aggregate checkpoint write bandwidth: BLOOM's measured end-to-end save, 2.3 TiB in about 40 s
#: = 6.3e10 B/s on a shared parallel file system (Jean Zay). A conservative default: Llama 3's
#: Tectonic sustained 2e12 B/s (see LLAMA3_STORAGE_WRITE_BYTES_PER_S), in-memory checkpoints
#: (Gemini) far more.
DEFAULT_STORAGE_WRITE_BYTES_PER_S: float = BLOOM_CHECKPOINT_BYTES / BLOOM_CHECKPOINT_SAVE_S

#: Time to detect an interruption, restart and reload, per interruption: 10 min, a stated estimate
#: between two published bounds. Floor: BLOOM's scheduled SLURM resume took about 2 min plus the
#: save (no failure detection, no node replacement). Ceiling: Llama 3 kept effective training time
#: above 90 % with 466 interruptions in 54 days, so the mean cost of one interruption, restart plus
#: lost work, was at most 0.10 × 54 d / 466 ≈ 1,000 s. Manual recovery (OPT-175B) took hours.
DEFAULT_RESTART_S: float = 600.0

#: Bytes written per parameter by a mixed-precision Adam checkpoint: bf16 weights (2) + fp32 master
#: weights (4) + Adam first moment m (4) + second moment v (4) = 14. Gradients are not saved; nor are
#: the data-loader and RNG states (kilobytes). BLOOM: 176.2e9 × 14 = 2.24 TiB vs the 2.3 TiB it reports.
DEFAULT_CHECKPOINT_BYTES_PER_PARAM: float = 2.0 + 4.0 + 4.0 + 4.0

INTERVAL_RULES = ("young", "daly")


@dataclass(frozen=True)
class Goodput:
    """Goodput of a training job and the breakdown of its lost time (seconds, SI).

    ``wall_clock_s = ideal_time_s + checkpoint_overhead_s + lost_work_s + restart_s_total`` holds
    exactly. Fields are floats, or numpy arrays of the broadcast shape of the inputs.
    """

    fraction: Any  # useful time / wall-clock, in (0, 1]
    wall_clock_s: Any  # ideal_time_s / fraction
    mtbf_s: Any  # mean time between interruptions of the whole job
    checkpoint_save_s: Any
    checkpoint_interval_s: Any  # seconds of progress between checkpoints (inf: no checkpoints)
    expected_interruptions: Any
    checkpoint_overhead_s: Any  # total time spent writing checkpoints
    lost_work_s: Any  # recomputation after interruptions
    restart_s_total: Any
    ideal_time_s: Any = 0.0
    restart_s: Any = DEFAULT_RESTART_S
    interval_rule: str = "young"  # "young", "daly" or "given"


# -- validation --------------------------------------------------------------------------------------

def _array(value, field: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(field, f"must be a number, got {value!r}") from None
    if np.any(np.isnan(arr)):
        raise InputError(field, f"must be a number, got NaN ({value!r})")
    return arr


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> float:
    return float(arr[bad].flat[0]) if arr.ndim else float(arr)


def _check_range(value, field: str, *, lo: float = 0.0, lo_open: bool = False, allow_inf: bool = False,
                 integer: bool = False) -> np.ndarray:
    """``value`` as a float array, or InputError naming ``field`` and the allowed range."""
    arr = _array(value, field)
    bad = (arr <= lo) if lo_open else (arr < lo)
    if not allow_inf:
        bad = bad | ~np.isfinite(arr)
    if integer:
        bad = bad | (np.isfinite(arr) & (arr != np.floor(arr)))
    if np.any(bad):
        lo_txt = f"> {lo:g}" if lo_open else f">= {lo:g}"
        kind = "an integer" if integer else ("a number" if allow_inf else "a finite number")
        raise InputError(field, f"must be {kind} {lo_txt}, got {_first_bad(arr, bad)!r}")
    return arr


def _out(x: np.ndarray):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


# -- the formulas ------------------------------------------------------------------------------------

def checkpoint_bytes(params, *, bytes_per_param: float = DEFAULT_CHECKPOINT_BYTES_PER_PARAM):
    """Bytes of one full training checkpoint: ``params × bytes_per_param``.

    Default 14 B/param = bf16 weights (2) + fp32 master weights (4) + Adam m (4) + Adam v (4), the
    mixed-precision Adam state of Rajbhandari et al. 2020 (ZeRO, §3.1: "2Ψ + 2Ψ + 12Ψ" counts fp16
    gradients too, which a checkpoint does not save). Sharding (ZeRO/FSDP) splits the same total over
    writers; it does not change it. Checked against BLOOM-176B's 2.3 TiB checkpoint.
    """
    p = _check_range(params, "params")
    b = _check_range(bytes_per_param, "bytes_per_param")
    return _out(p * b)


def checkpoint_save_time_s(checkpoint_bytes, storage_write_bytes_per_s):
    """Seconds to write one checkpoint: bytes / aggregate write bandwidth (blocking save).

    An asynchronous save hides most of this; model it with a smaller effective ``checkpoint_bytes``
    or a larger bandwidth.
    """
    b = _check_range(checkpoint_bytes, "checkpoint_bytes")
    bw = _check_range(storage_write_bytes_per_s, "storage_write_bytes_per_s", lo_open=True)
    return _out(b / bw)


def job_mtbf_s(n_devices, interruptions_per_device_hour=DEFAULT_INTERRUPTIONS_PER_DEVICE_HOUR):
    """Mean time between interruptions of a job on ``n_devices``: ``3600 / (rate × n_devices)`` s.

    Independent exponential failures per device (the assumption behind a per-GPU-day rate such as
    Llama 3's 4.7e-4, reference §1); infinite at a zero rate.
    """
    n = _check_range(n_devices, "n_devices", lo=1.0, integer=True)
    rate = _check_range(interruptions_per_device_hour, "interruptions_per_device_hour")
    with np.errstate(divide="ignore"):
        return _out(SECONDS_PER_HOUR / (rate * n))


def young_daly_interval_s(checkpoint_save_s, mtbf_s):
    """Young's optimum checkpoint interval ``sqrt(2·delta·M)`` (Young 1974, CACM 17(9)).

    It minimises the first-order waste ``delta/tau + tau/(2M)`` (:func:`first_order_waste_fraction`).
    Infinite when M is infinite (never interrupted: never checkpoint); 0 when the save is free.
    """
    d = _check_range(checkpoint_save_s, "checkpoint_save_s")
    m = _check_range(mtbf_s, "mtbf_s", lo_open=True, allow_inf=True)
    with np.errstate(invalid="ignore"):
        tau = np.sqrt(2.0 * d * m)
    return _out(np.where(d == 0.0, 0.0, tau))


def daly_interval_s(checkpoint_save_s, mtbf_s):
    """Daly's higher-order optimum (Daly 2006, FGCS 22: "A higher order estimate of the optimum
    checkpoint interval for restart dumps"):

        tau = sqrt(2·delta·M)·[1 + (1/3)·sqrt(delta/(2M)) + (1/9)·(delta/(2M))] − delta   (delta < 2M)
        tau = M                                                                          (delta >= 2M)
    """
    d = _check_range(checkpoint_save_s, "checkpoint_save_s")
    m = _check_range(mtbf_s, "mtbf_s", lo_open=True, allow_inf=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = d / (2.0 * m)
        tau = np.sqrt(2.0 * d * m) * (1.0 + np.sqrt(x) / 3.0 + x / 9.0) - d
        tau = np.where(np.isinf(m), np.inf, tau)
    return _out(np.where(d == 0.0, 0.0, np.where(d >= 2.0 * m, m, tau)))


def first_order_waste_fraction(checkpoint_interval_s, checkpoint_save_s, mtbf_s):
    """Young's (1974) first-order waste per unit time: ``delta/tau + tau/(2M)``.

    Checkpoint writes (delta every tau) plus lost work (tau/2 per interruption, one every M); its
    derivative in tau vanishes at ``tau = sqrt(2·delta·M)``.
    """
    tau = np.asarray(checkpoint_interval_s, dtype=float)
    return _out(np.asarray(checkpoint_save_s, dtype=float) / tau + tau / (2.0 * np.asarray(mtbf_s, float)))


def goodput_fraction(checkpoint_interval_s, checkpoint_save_s, mtbf_s, restart_s):
    """Useful time / wall-clock of the self-consistent first-order model (module docstring):

        f = (1 − (R + tau/2)/M) / (1 + delta/tau)

    Interruptions arrive during the wall-clock (rate 1/M), each costing R + tau/2; checkpoints cost
    delta per tau of progress. Zero or negative when no progress is possible. No-checkpoint and
    zero-rate limits are handled in :func:`goodput`.
    """
    tau = np.asarray(checkpoint_interval_s, dtype=float)
    d = np.asarray(checkpoint_save_s, dtype=float)
    m = np.asarray(mtbf_s, dtype=float)
    r = np.asarray(restart_s, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_interruption = np.where(np.isinf(m), 0.0, (r + tau / 2.0) / m)
        ckpt = np.where(d == 0.0, 0.0, d / tau)
    return _out((1.0 - per_interruption) / (1.0 + ckpt))


def daly_expected_wall_clock_s(ideal_time_s, checkpoint_interval_s, checkpoint_save_s, mtbf_s, restart_s):
    """Expected wall-clock under exponential failures, Daly (2006)'s complete model:

        T_w = M·e^(R/M)·(e^((tau + delta)/M) − 1)·T_ideal/tau

    Failures may strike during saves and restarts too. A cross-check of :func:`goodput_fraction`,
    which it matches to second order in (tau + delta)/M.
    """
    t = np.asarray(ideal_time_s, dtype=float)
    tau = np.asarray(checkpoint_interval_s, dtype=float)
    d = np.asarray(checkpoint_save_s, dtype=float)
    m = np.asarray(mtbf_s, dtype=float)
    r = np.asarray(restart_s, dtype=float)
    return _out(m * np.exp(r / m) * np.expm1((tau + d) / m) * t / tau)


def restart_from_scratch_wall_clock_s(ideal_time_s, mtbf_s, restart_s):
    """Expected wall-clock of a job that never checkpoints: ``(M + R)·(e^(T/M) − 1)``.

    Each interruption (exponential, mean M) loses all progress and costs R to restart; the classic
    result for restart-from-scratch (e.g. Daly 2006 §2). Equals T when M is infinite.
    """
    t = np.asarray(ideal_time_s, dtype=float)
    m = np.asarray(mtbf_s, dtype=float)
    r = np.asarray(restart_s, dtype=float)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        w = (m + r) * np.expm1(t / m)
    return _out(np.where(np.isinf(m), t, w))


# -- the model ---------------------------------------------------------------------------------------

def _infeasible_message(m: float, d: float, tau: float, r: float, t: float, no_ckpt: bool) -> str:
    if no_ckpt:
        return (
            f"no progress possible without checkpoints: the job needs {t:.4g} s of progress but is "
            f"interrupted every {m:.4g} s ({m / SECONDS_PER_HOUR:.3g} h) on average, so it expects "
            f"e^({t / m:.3g}) restarts; checkpoint the job"
        )
    return (
        f"no progress possible: job MTBF is {m:.4g} s ({m / SECONDS_PER_HOUR:.3g} h) but each interruption "
        f"costs restart {r:.4g} s + half a checkpoint interval {tau / 2:.4g} s (checkpoint save "
        f"{d:.4g} s) = {r + tau / 2:.4g} s >= MTBF; faster checkpoint storage, fewer devices, a lower "
        f"interruption rate or a faster restart is needed"
    )


def goodput(
    ideal_time_s: float,
    n_devices: int,
    checkpoint_bytes: float,
    *,
    interruptions_per_device_hour: float = DEFAULT_INTERRUPTIONS_PER_DEVICE_HOUR,
    storage_write_bytes_per_s: float = DEFAULT_STORAGE_WRITE_BYTES_PER_S,
    restart_s: float = DEFAULT_RESTART_S,
    checkpoint_interval_s: float | None = None,
    interval_rule: str = "young",
    raise_on_infeasible: bool = True,
) -> Goodput:
    """Goodput and wall-clock of a job needing ``ideal_time_s`` of failure-free progress.

    Closed form of the self-consistent first-order model (module docstring): ``wall = ideal / f``
    with ``f`` from :func:`goodput_fraction`; the checkpoint interval is Young's optimum
    (``interval_rule="young"``), Daly's (``"daly"``), or ``checkpoint_interval_s`` when given
    (``math.inf``: never checkpoint; a job then restarts from scratch after each interruption,
    :func:`restart_from_scratch_wall_clock_s`).

    A zero interruption rate gives an infinite MTBF and interval: fraction 1, no checkpoints (or
    1/(1 + delta/tau) with a given finite interval). Where no progress is possible, raises
    :class:`InfeasibleError` naming the MTBF and the checkpoint time, or with
    ``raise_on_infeasible=False`` returns fraction 0 and an infinite wall-clock for those entries.

    Vectorised: ``ideal_time_s``, ``n_devices``, ``checkpoint_bytes`` (and the rate, bandwidth and
    restart time) broadcast together.
    """
    t = _check_range(ideal_time_s, "ideal_time_s")
    n = _check_range(n_devices, "n_devices", lo=1.0, integer=True)
    b = _check_range(checkpoint_bytes, "checkpoint_bytes")
    rate = _check_range(interruptions_per_device_hour, "interruptions_per_device_hour")
    bw = _check_range(storage_write_bytes_per_s, "storage_write_bytes_per_s", lo_open=True)
    r = _check_range(restart_s, "restart_s")
    if interval_rule not in INTERVAL_RULES:
        allowed = ", ".join(INTERVAL_RULES)
        raise InputError("interval_rule", f"must be one of {allowed}, got {interval_rule!r}")

    # everything broadcasts together, so a sweep over rates, bandwidths or restart times works too
    t, n, b, rate, bw, r = (np.asarray(x, dtype=float) for x in np.broadcast_arrays(t, n, b, rate, bw, r))
    lam = rate * n / SECONDS_PER_HOUR  # interruptions per second of wall-clock
    with np.errstate(divide="ignore"):
        m = 1.0 / lam
    d = b / bw
    if checkpoint_interval_s is not None:
        tau = _check_range(checkpoint_interval_s, "checkpoint_interval_s", lo_open=True, allow_inf=True)
        tau = np.broadcast_to(tau, t.shape).astype(float)
        rule = "given"
    else:
        tau = np.asarray((young_daly_interval_s if interval_rule == "young" else daly_interval_s)(d, m))
        rule = interval_rule

    no_ckpt = np.isinf(tau) & (lam > 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # checkpointed jobs: the closed form of the fixed point
        f_ckpt = np.asarray(goodput_fraction(tau, d, m, r))
        # never-checkpointed jobs with interruptions: restart from scratch
        w_scratch = np.asarray(restart_from_scratch_wall_clock_s(t, m, r))
        f_scratch = np.where(t > 0, t / w_scratch, m / (m + r))
        f = np.where(no_ckpt, f_scratch, f_ckpt)
        f = np.where(np.isfinite(f) & (f > 0), f, 0.0)
        feasible = f > 0

    if raise_on_infeasible and not np.all(feasible):
        i = np.flatnonzero(~feasible.ravel())[0]
        raise InfeasibleError(
            _infeasible_message(float(m.ravel()[i]), float(d.ravel()[i]), float(np.ravel(tau)[i]),
                                float(r.ravel()[i]), float(t.ravel()[i]), bool(no_ckpt.ravel()[i]))
        )

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        wall = np.where(feasible, np.where(t > 0, t / np.where(feasible, f, 1.0), 0.0), np.inf)
        n_int = np.where(no_ckpt, np.expm1(t * lam), wall * lam)
        n_int = np.where(lam > 0, n_int, 0.0)
        ckpt_s = np.where((d > 0) & np.isfinite(tau), t * d / tau, 0.0)
        restart_total = n_int * r
        lost = np.where(no_ckpt, wall - t - restart_total, np.where(n_int > 0, n_int * tau / 2.0, 0.0))
        lost = np.where(feasible, lost, np.inf)

    return Goodput(
        fraction=_out(f),
        wall_clock_s=_out(wall),
        mtbf_s=_out(m),
        checkpoint_save_s=_out(d),
        checkpoint_interval_s=_out(tau),
        expected_interruptions=_out(n_int),
        checkpoint_overhead_s=_out(ckpt_s),
        lost_work_s=_out(lost),
        restart_s_total=_out(restart_total),
        ideal_time_s=_out(t),
        restart_s=_out(r),
        interval_rule=rule,
    )


__all__ = [
    "DEFAULT_CHECKPOINT_BYTES_PER_PARAM",
    "DEFAULT_INTERRUPTIONS_PER_DEVICE_HOUR",
    "DEFAULT_RESTART_S",
    "DEFAULT_STORAGE_WRITE_BYTES_PER_S",
    "Goodput",
    "checkpoint_bytes",
    "checkpoint_save_time_s",
    "daly_expected_wall_clock_s",
    "daly_interval_s",
    "first_order_waste_fraction",
    "goodput",
    "goodput_fraction",
    "job_mtbf_s",
    "restart_from_scratch_wall_clock_s",
    "young_daly_interval_s",
]
