"""The one adapter over NVML: every ``pynvml`` call of scaling-planner is made in this module.

``pynvml`` is NVIDIA's own binding (the ``nvidia-ml-py`` package; the separate ``pynvml`` package is
deprecated and warns on import, reference/stack_notes.md §1). It is imported inside the functions,
so importing this module costs nothing on a machine without it.

- :func:`read_report`: one read of every GPU of this host into an :class:`NvmlReport`. A host with
  no NVML library, no driver or no GPU gives ``available=False`` and the reason, never an exception.
- :class:`NvmlSampler`: a background thread that samples power, utilisation and (Hopper and later)
  tensor-core activity of one GPU while a training loop runs; it never raises into that loop.

Error policy (per device): every NVML call is isolated. A call that fails records
``"<call>: <NVML error string>"`` in :attr:`GpuDevice.errors` and leaves its field ``None``; the other
fields and the other devices still report. ``NVML_ERROR_NOT_SUPPORTED`` is not a failure: the field
is ``None`` and nothing is recorded (ECC on GeForce parts, NVLink on PCIe parts). After
``NVML_ERROR_GPU_IS_LOST`` the remaining calls of that device are skipped.

Units: NVML reports power in mW (converted to W here), memory in bytes, clocks in MHz,
utilisation in percent over the driver's last sample period, temperature in °C. GPM metrics
(``nvmlGpmMetricsGet``) are rates between two samples of the GPM counters (NVML API reference,
"GPM" section); ``NVML_GPM_METRIC_ANY_TENSOR_UTIL`` (5) is the percentage of time any tensor pipe
was busy and ``NVML_GPM_METRIC_SM_OCCUPANCY`` (3) the active warps over the theoretical maximum
(reference/stack_notes.md §4).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

from ..base.errors import InputError, PlannerError
from .models import GpuDevice, NvmlReport

DEFAULT_GPM_WINDOW_S = 0.1
"""GPM window used by :func:`read_report` when GPM is supported and no window is asked for."""

GPM_ANY_TENSOR_UTIL = 5
"""``NVML_GPM_METRIC_ANY_TENSOR_UTIL`` (percent of time any tensor pipe was active)."""

GPM_SM_OCCUPANCY = 3
"""``NVML_GPM_METRIC_SM_OCCUPANCY`` (percent of the theoretical maximum of resident warps)."""

MAX_SAMPLER_ERRORS = 20
"""The sampler keeps at most this many error strings (a call failing every tick would grow forever)."""


class _Calls:
    """Runs the NVML calls of one device, turning each failure into an entry of ``errors``.

    Functions are looked up on the ``pynvml`` module at call time (so monkeypatched fakes are used).
    """

    def __init__(self, nv: Any, max_errors: int | None = None):
        self.nv = nv
        self.errors: list[str] = []
        self.lost = False
        self._max_errors = max_errors

    def record(self, call: str, exc: BaseException) -> None:
        if isinstance(exc, self.nv.NVMLError):
            if exc.value == self.nv.NVML_ERROR_GPU_IS_LOST:
                self.lost = True
            message = f"{call}: {exc}"
        else:
            message = f"{call}: {type(exc).__name__}: {exc}"
        if self._max_errors is None or len(self.errors) < self._max_errors:
            self.errors.append(message)

    def run(self, call: str, *args: Any, force: bool = False) -> tuple[bool, Any]:
        """``(True, result)``, or ``(False, None)`` after recording the failure.

        Skipped (``(False, None)``, nothing recorded) once the device is lost, unless ``force``.
        """
        if self.lost and not force:
            return False, None
        try:
            return True, getattr(self.nv, call)(*args)
        except self.nv.NVMLError as exc:
            if exc.value != self.nv.NVML_ERROR_NOT_SUPPORTED:
                self.record(call, exc)
        except Exception as exc:  # the boundary: a binding bug must not take the caller down
            self.record(call, exc)
        return False, None

    def __call__(self, call: str, *args: Any) -> Any:
        return self.run(call, *args)[1]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _as_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _mw_to_w(milliwatts: Any) -> float | None:
    """NVML power (``nvmlDeviceGetPowerUsage``, ``nvmlDeviceGetEnforcedPowerLimit``) is in milliwatts."""
    return None if milliwatts is None else float(milliwatts) / 1000.0


def _profile_name(name: str, calls: _Calls) -> str | None:
    from ..hardware.profiles import profile_for_nvml_name

    try:
        profile = profile_for_nvml_name(name)
    except PlannerError as exc:  # a broken user profile directory
        calls.errors.append(f"profile_for_nvml_name: {exc}")
        return None
    return None if profile is None else profile.name


def _nvlink_active_links(calls: _Calls, handle: Any) -> int | None:
    """Links whose ``nvmlDeviceGetNvLinkState`` is enabled, up to the first unsupported or invalid
    link index (a device has fewer links than ``NVML_NVLINK_MAX_LINKS``); None when link 0 already is."""
    nv = calls.nv
    active = 0
    for link in range(nv.NVML_NVLINK_MAX_LINKS):
        if calls.lost:
            return None
        try:
            state = nv.nvmlDeviceGetNvLinkState(handle, link)
        except nv.NVMLError as exc:
            if exc.value in (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_INVALID_ARGUMENT):
                return None if link == 0 else active
            calls.record("nvmlDeviceGetNvLinkState", exc)
            return None
        except Exception as exc:
            calls.record("nvmlDeviceGetNvLinkState", exc)
            return None
        if state == nv.NVML_FEATURE_ENABLED:
            active += 1
    return active


def _read_fields(calls: _Calls, index: int) -> tuple[dict[str, Any], Any]:
    """Everything but GPM for device ``index``: the GpuDevice fields and the handle (None if unobtainable)."""
    nv = calls.nv
    fields: dict[str, Any] = {"index": index}
    handle = calls("nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return fields, None
    name = _text(calls("nvmlDeviceGetName", handle))
    if name is not None:
        fields["name"] = name
        fields["profile"] = _profile_name(name, calls)
    fields["uuid"] = _text(calls("nvmlDeviceGetUUID", handle))
    memory = calls("nvmlDeviceGetMemoryInfo", handle)
    if memory is not None:
        fields["memory_total_bytes"] = int(memory.total)
        fields["memory_used_bytes"] = int(memory.used)
    fields["sm_clock_mhz"] = _as_int(calls("nvmlDeviceGetClockInfo", handle, nv.NVML_CLOCK_SM))
    fields["sm_clock_max_mhz"] = _as_int(calls("nvmlDeviceGetMaxClockInfo", handle, nv.NVML_CLOCK_SM))
    fields["power_w"] = _mw_to_w(calls("nvmlDeviceGetPowerUsage", handle))
    fields["power_limit_w"] = _mw_to_w(calls("nvmlDeviceGetEnforcedPowerLimit", handle))
    utilization = calls("nvmlDeviceGetUtilizationRates", handle)
    if utilization is not None:
        fields["utilization_gpu_pct"] = float(utilization.gpu)
        fields["utilization_memory_pct"] = float(utilization.memory)
    temperature = calls("nvmlDeviceGetTemperature", handle, nv.NVML_TEMPERATURE_GPU)
    fields["temperature_c"] = None if temperature is None else float(temperature)
    fields["ecc_uncorrected_volatile"] = _as_int(calls(
        "nvmlDeviceGetTotalEccErrors", handle, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC))
    capability = calls("nvmlDeviceGetCudaComputeCapability", handle)
    if capability is not None:
        fields["compute_capability"] = (int(capability[0]), int(capability[1]))
    fields["nvlink_active_links"] = _nvlink_active_links(calls, handle)
    fields["pcie_generation"] = _as_int(calls("nvmlDeviceGetCurrPcieLinkGeneration", handle))
    fields["pcie_width"] = _as_int(calls("nvmlDeviceGetCurrPcieLinkWidth", handle))
    support = calls("nvmlGpmQueryDeviceSupport", handle)
    if support is not None:
        fields["gpm_supported"] = bool(support.isSupportedDevice)
    return fields, handle


# ---- GPM (Hopper and later) ---------------------------------------------------------------------

def _gpm_free(calls: _Calls, *samples: Any) -> None:
    for sample in samples:
        if sample is not None:
            calls.run("nvmlGpmSampleFree", sample, force=True)


def _gpm_sample(calls: _Calls, handle: Any) -> Any:
    """A freshly allocated GPM sample of ``handle``, or None (after freeing it) when a call failed."""
    ok, sample = calls.run("nvmlGpmSampleAlloc")
    if not ok:
        return None
    ok, _ = calls.run("nvmlGpmSampleGet", handle, sample)
    if not ok:
        _gpm_free(calls, sample)
        return None
    return sample


def _gpm_metrics(calls: _Calls, first: Any, second: Any, metric_ids: tuple[int, ...]) -> dict[int, float | None]:
    """``nvmlGpmMetricsGet`` between two samples: metric id -> value (None where that metric failed)."""
    nv = calls.nv
    request = nv.c_nvmlGpmMetricsGet_t()
    request.version = nv.NVML_GPM_METRICS_GET_VERSION
    request.numMetrics = len(metric_ids)
    request.sample1 = first
    request.sample2 = second
    for i, metric_id in enumerate(metric_ids):
        request.metrics[i].metricId = metric_id
    ok, _ = calls.run("nvmlGpmMetricsGet", request)
    values: dict[int, float | None] = dict.fromkeys(metric_ids)
    if not ok:
        return values
    for i, metric_id in enumerate(metric_ids):
        metric = request.metrics[i]
        if metric.nvmlReturn == nv.NVML_ERROR_NOT_SUPPORTED:
            continue
        if metric.nvmlReturn != nv.NVML_SUCCESS:
            calls.record(f"nvmlGpmMetricsGet[metric {metric_id}]", nv.NVMLError(metric.nvmlReturn))
        elif math.isfinite(metric.value):
            values[metric_id] = float(metric.value)
    return values


# ---- one read of the host ------------------------------------------------------------------------

def _check_window(sample_window_s: float) -> float:
    try:
        window = float(sample_window_s)
    except (TypeError, ValueError):
        raise InputError("sample_window_s", f"must be a number of seconds >= 0, got {sample_window_s!r}") from None
    if not math.isfinite(window) or window < 0:
        raise InputError("sample_window_s", f"must be a finite number of seconds >= 0, got {sample_window_s!r}")
    return window


def read_report(sample_window_s: float = 0.0) -> NvmlReport:
    """Read every GPU of this host through NVML.

    ``sample_window_s`` is the GPM window (tensor activity, SM occupancy) on devices that support
    GPM: one sample, a sleep shared by all devices, a second sample. With 0, GPM devices use
    :data:`DEFAULT_GPM_WINDOW_S`; hosts without GPM do not sleep at all.

    Never raises for the host's state: no ``pynvml``, no NVML library, no driver, no GPU all give
    ``available=False`` with the reason. Bad ``sample_window_s`` raises :class:`InputError`.
    """
    window_s = _check_window(sample_window_s)
    try:
        import pynvml as nv
    except ImportError as exc:
        return NvmlReport(available=False, reason=f"pynvml is not importable ({exc}); install nvidia-ml-py")
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        return NvmlReport(available=False, reason=f"nvmlInit: {exc}")
    except Exception as exc:
        return NvmlReport(available=False, reason=f"nvmlInit: {type(exc).__name__}: {exc}")
    try:
        return _read_host(nv, window_s)
    finally:
        with contextlib.suppress(Exception):  # nothing useful to do: the report is already built
            nv.nvmlShutdown()


def _read_host(nv: Any, window_s: float) -> NvmlReport:
    host = _Calls(nv)
    driver_version = _text(host("nvmlSystemGetDriverVersion"))
    cuda_driver_version = _as_int(host("nvmlSystemGetCudaDriverVersion"))
    versions = {"driver_version": driver_version, "cuda_driver_version": cuda_driver_version}
    ok, count = host.run("nvmlDeviceGetCount")
    if not ok:
        return NvmlReport(available=False, reason="; ".join(host.errors) or "nvmlDeviceGetCount failed", **versions)
    if int(count) == 0:
        return NvmlReport(available=False, reason="NVML is loaded but reports no GPU", **versions)

    reads = []
    for index in range(int(count)):
        calls = _Calls(nv)
        fields, handle = _read_fields(calls, index)
        reads.append((calls, fields, handle))

    gpm_ids = (GPM_ANY_TENSOR_UTIL, GPM_SM_OCCUPANCY)
    first = {i: _gpm_sample(calls, handle) for i, (calls, fields, handle) in enumerate(reads)
             if fields.get("gpm_supported") and not calls.lost}
    if any(sample is not None for sample in first.values()):
        time.sleep(window_s or DEFAULT_GPM_WINDOW_S)
    for i, sample in first.items():
        calls, fields, handle = reads[i]
        if sample is None:
            continue
        second = _gpm_sample(calls, handle)
        if second is not None:
            values = _gpm_metrics(calls, sample, second, gpm_ids)
            fields["tensor_active_pct"] = values[GPM_ANY_TENSOR_UTIL]
            fields["sm_occupancy_pct"] = values[GPM_SM_OCCUPANCY]
        _gpm_free(calls, sample, second)

    devices = [GpuDevice(**fields, errors=calls.errors) for calls, fields, _ in reads]
    return NvmlReport(available=True, devices=devices, **versions)


# ---- background sampler --------------------------------------------------------------------------

class NvmlSampler:
    """Samples power (W), GPU utilisation (%) and, where GPM is supported, tensor activity (%) of GPU
    ``index`` every ``interval_s`` on a daemon thread, for the MFU meter.

    ``start()`` then ``stop()`` (or ``with NvmlSampler() as s: ...; s.result``). ``stop()`` returns
    ``{"power_w_mean", "utilization_gpu_pct_mean", "tensor_active_pct_mean", "samples", "reason",
    "errors"}``: means over the samples (tensor activity weighted by each GPM window's length; None
    when nothing was read), the number of ticks that read power or utilisation, why sampling did not
    happen or ended early (None when it ran to the end), and the NVML calls that failed.

    One sample is taken at start, one per interval, and one at stop, so even a run shorter than the
    interval has two. Nothing in here raises into the caller once constructed: no NVML, a lost GPU or
    a bug in the binding all end as ``samples`` (possibly 0) plus a ``reason``.
    """

    def __init__(self, index: int = 0, interval_s: float = 0.5):
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InputError("index", f"must be a GPU index >= 0, got {index!r}")
        try:
            interval = float(interval_s)
        except (TypeError, ValueError):
            interval = float("nan")
        if not math.isfinite(interval) or interval <= 0:
            raise InputError("interval_s", f"must be a finite number of seconds > 0, got {interval_s!r}")
        self.index = index
        self.interval_s = interval
        self.result: dict[str, Any] | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._power_w: list[float] = []
        self._utilization_pct: list[float] = []
        self._tensor: list[tuple[float, float]] = []  # (percent, window seconds)
        self._samples = 0
        self._reason: str | None = None
        self._errors: list[str] = []

    # context manager -----------------------------------------------------------------------------
    def __enter__(self) -> NvmlSampler:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # control ---------------------------------------------------------------------------------------
    def start(self) -> NvmlSampler:
        """Start sampling (a second call does nothing)."""
        if self._thread is None:
            try:
                self._thread = threading.Thread(target=self._run_safely, name=f"nvml-sampler-{self.index}",
                                                daemon=True)
                self._thread.start()
            except Exception as exc:  # e.g. no more threads: still never raise into training
                self._thread = None
                self._reason = f"could not start the sampler thread: {type(exc).__name__}: {exc}"
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling and return the summary (the same dict on every later call)."""
        if self.result is not None:
            return self.result
        if self._thread is None:
            self._reason = self._reason or "the sampler was not started"
        else:
            self._stop_event.set()
            timeout_s = max(5.0, 2 * self.interval_s)
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._reason = self._reason or f"the sampler thread did not stop within {timeout_s:g} s"
        self.result = self._summary()
        return self.result

    # sampling ------------------------------------------------------------------------------------
    def _summary(self) -> dict[str, Any]:
        power = list(self._power_w)
        utilization = list(self._utilization_pct)
        tensor = list(self._tensor)
        weight_s = sum(dt for _, dt in tensor)
        if tensor and weight_s > 0:
            tensor_mean = sum(v * dt for v, dt in tensor) / weight_s
        elif tensor:
            tensor_mean = sum(v for v, _ in tensor) / len(tensor)
        else:
            tensor_mean = None
        return {
            "power_w_mean": sum(power) / len(power) if power else None,
            "utilization_gpu_pct_mean": sum(utilization) / len(utilization) if utilization else None,
            "tensor_active_pct_mean": tensor_mean,
            "samples": self._samples,
            "reason": self._reason,
            "errors": list(self._errors),
        }

    def _run_safely(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # last line of defence: a thread exception must not surface
            self._reason = self._reason or f"sampler stopped: {type(exc).__name__}: {exc}"

    def _run(self) -> None:
        try:
            import pynvml as nv
        except ImportError as exc:
            self._reason = f"pynvml is not importable ({exc}); install nvidia-ml-py"
            return
        try:
            nv.nvmlInit()
        except Exception as exc:
            self._reason = f"nvmlInit: {exc}"
            return
        calls = _Calls(nv, max_errors=MAX_SAMPLER_ERRORS)
        self._errors = calls.errors
        try:
            self._loop(calls)
        finally:
            with contextlib.suppress(Exception):
                nv.nvmlShutdown()

    def _loop(self, calls: _Calls) -> None:
        handle = calls("nvmlDeviceGetHandleByIndex", self.index)
        if handle is None:
            self._reason = f"no handle for GPU {self.index}"
            return
        support = calls("nvmlGpmQueryDeviceSupport", handle)
        previous = _gpm_sample(calls, handle) if support is not None and support.isSupportedDevice else None
        previous_t = time.monotonic()
        try:
            self._read(calls, handle)
            while not calls.lost:
                stopped = self._stop_event.wait(self.interval_s)
                self._read(calls, handle)
                if previous is not None and not calls.lost:
                    current = _gpm_sample(calls, handle)
                    now = time.monotonic()
                    if current is not None:
                        value = _gpm_metrics(calls, previous, current, (GPM_ANY_TENSOR_UTIL,))[GPM_ANY_TENSOR_UTIL]
                        if value is not None:
                            self._tensor.append((value, now - previous_t))
                        _gpm_free(calls, previous)
                        previous, previous_t = current, now
                if stopped:
                    break
            if calls.lost:
                self._reason = f"GPU {self.index} was lost; sampling ended early"
        finally:
            _gpm_free(calls, previous)

    def _read(self, calls: _Calls, handle: Any) -> None:
        power_w = _mw_to_w(calls("nvmlDeviceGetPowerUsage", handle))
        utilization = calls("nvmlDeviceGetUtilizationRates", handle)
        if power_w is not None:
            self._power_w.append(power_w)
        if utilization is not None:
            self._utilization_pct.append(float(utilization.gpu))
        if power_w is not None or utilization is not None:
            self._samples += 1
