"""NVML adapter: real path on this host, and fakes at the NVML boundary only.

The fakes replace functions of the real ``pynvml`` module (monkeypatch) and raise real NVML error
objects (``pynvml.NVMLError(code)`` builds the matching subclass); everything above runs for real,
including the GPM request struct of the binding and the hardware-profile lookup.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml
import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.hardware.profiles import profile_for_nvml_name
from scaling_planner.measure.nvml import GPM_ANY_TENSOR_UTIL, GPM_SM_OCCUPANCY, NvmlSampler, read_report


def _nvml_library_present() -> bool:
    """Independent of the adapter: can the dynamic loader open the library pynvml would load?"""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@dataclass
class FakeGpu:
    name: str
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    sm_clock_mhz: int
    sm_clock_max_mhz: int
    power_mw: int
    power_limit_mw: int
    utilization_gpu: int
    utilization_memory: int
    temperature_c: int
    ecc_uncorrected: int
    compute_capability: tuple[int, int]
    nvlink_links: int  # links that exist; index >= this raises INVALID_ARGUMENT
    nvlink_enabled: int
    pcie_gen: int
    pcie_width: int
    gpm: dict[int, float] | None  # metric id -> value; None = GPM unsupported
    power_sequence_mw: list[int] = field(default_factory=list)  # sampler: cycled power readings


def h100() -> FakeGpu:
    return FakeGpu("NVIDIA H100 80GB HBM3", "GPU-11111111-2222-3333-4444-555555555555",
                   85_520_809_984, 3 * 2**30 + 12_345, 1_755, 1_980, 312_457, 700_000, 97, 41, 63, 0,
                   (9, 0), 18, 18, 5, 16, {GPM_ANY_TENSOR_UTIL: 61.25, GPM_SM_OCCUPANCY: 37.5})


def a100() -> FakeGpu:
    return FakeGpu("NVIDIA A100-SXM4-80GB", "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                   85_899_345_920, 2**30, 1_410, 1_410, 251_003, 400_000, 55, 20, 48, 3,
                   (8, 0), 12, 11, 4, 16, None)


class FakeNvml:
    """A host with the given GPUs, as seen through the pynvml module's functions."""

    def __init__(self, gpus: list[FakeGpu]):
        self.gpus = gpus
        self.fail: dict[tuple[str, int], int] = {}  # (call, device index) -> NVML error code
        self.fail_after: dict[tuple[str, int], tuple[int, BaseException]] = {}  # fail from the k-th call on
        self.calls: list[tuple[str, int | None]] = []
        self.init_calls = 0
        self.shutdown_calls = 0
        self.samples: dict[int, object] = {}  # address -> struct (kept alive)
        self.sample_device: dict[int, tuple[int, int]] = {}  # address -> (device index, sequence)
        self.freed: list[int] = []
        self.sequence = 0
        self.power_returned_mw: dict[int, list[int]] = {}
        self.utilization_returned: dict[int, list[int]] = {}
        self.counts: dict[tuple[str, int], int] = {}
        self.enough_samples = threading.Event()
        self.enough_after = 6

    def install(self, monkeypatch):
        for name in ("nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion",
                     "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName", "nvmlDeviceGetUUID",
                     "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetClockInfo", "nvmlDeviceGetMaxClockInfo",
                     "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetUtilizationRates",
                     "nvmlDeviceGetTemperature", "nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetCudaComputeCapability",
                     "nvmlDeviceGetNvLinkState", "nvmlDeviceGetCurrPcieLinkGeneration",
                     "nvmlDeviceGetCurrPcieLinkWidth", "nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc",
                     "nvmlGpmSampleGet", "nvmlGpmMetricsGet", "nvmlGpmSampleFree"):
            monkeypatch.setattr(pynvml, name, getattr(self, name))
        return self

    # helpers ---------------------------------------------------------------------------------------
    def _enter(self, call: str, handle) -> FakeGpu:
        index = handle[1]
        self.calls.append((call, index))
        key = (call, index)
        self.counts[key] = self.counts.get(key, 0) + 1
        if key in self.fail:
            raise pynvml.NVMLError(self.fail[key])
        if key in self.fail_after and self.counts[key] >= self.fail_after[key][0]:
            raise self.fail_after[key][1]
        return self.gpus[index]

    def calls_on(self, index: int) -> list[str]:
        return [c for c, i in self.calls if i == index]

    # system ----------------------------------------------------------------------------------------
    def nvmlInit(self):
        self.init_calls += 1

    def nvmlShutdown(self):
        if self.init_calls <= self.shutdown_calls:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        self.shutdown_calls += 1

    def nvmlSystemGetDriverVersion(self):
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12040

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._enter("nvmlDeviceGetHandleByIndex", ("h", index))
        return ("h", index)

    # device ----------------------------------------------------------------------------------------
    def nvmlDeviceGetName(self, h):
        return self._enter("nvmlDeviceGetName", h).name

    def nvmlDeviceGetUUID(self, h):
        return self._enter("nvmlDeviceGetUUID", h).uuid

    def nvmlDeviceGetMemoryInfo(self, h):
        g = self._enter("nvmlDeviceGetMemoryInfo", h)
        return SimpleNamespace(total=g.memory_total_bytes, used=g.memory_used_bytes,
                               free=g.memory_total_bytes - g.memory_used_bytes)

    def nvmlDeviceGetClockInfo(self, h, clock):
        assert clock == pynvml.NVML_CLOCK_SM
        return self._enter("nvmlDeviceGetClockInfo", h).sm_clock_mhz

    def nvmlDeviceGetMaxClockInfo(self, h, clock):
        assert clock == pynvml.NVML_CLOCK_SM
        return self._enter("nvmlDeviceGetMaxClockInfo", h).sm_clock_max_mhz

    def nvmlDeviceGetPowerUsage(self, h):
        g = self._enter("nvmlDeviceGetPowerUsage", h)
        returned = self.power_returned_mw.setdefault(h[1], [])
        value = g.power_sequence_mw[len(returned) % len(g.power_sequence_mw)] if g.power_sequence_mw else g.power_mw
        returned.append(value)
        if len(returned) >= self.enough_after:
            self.enough_samples.set()
        return value

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._enter("nvmlDeviceGetEnforcedPowerLimit", h).power_limit_mw

    def nvmlDeviceGetUtilizationRates(self, h):
        g = self._enter("nvmlDeviceGetUtilizationRates", h)
        returned = self.utilization_returned.setdefault(h[1], [])
        value = g.utilization_gpu - (len(returned) % 3)  # varies, so a mean is a real check
        returned.append(value)
        return SimpleNamespace(gpu=value, memory=g.utilization_memory)

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._enter("nvmlDeviceGetTemperature", h).temperature_c

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        assert (error_type, counter_type) == (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)
        return self._enter("nvmlDeviceGetTotalEccErrors", h).ecc_uncorrected

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self._enter("nvmlDeviceGetCudaComputeCapability", h).compute_capability

    def nvmlDeviceGetNvLinkState(self, h, link):
        g = self._enter("nvmlDeviceGetNvLinkState", h)
        if link >= g.nvlink_links:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return pynvml.NVML_FEATURE_ENABLED if link < g.nvlink_enabled else pynvml.NVML_FEATURE_DISABLED

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h):
        return self._enter("nvmlDeviceGetCurrPcieLinkGeneration", h).pcie_gen

    def nvmlDeviceGetCurrPcieLinkWidth(self, h):
        return self._enter("nvmlDeviceGetCurrPcieLinkWidth", h).pcie_width

    # GPM -------------------------------------------------------------------------------------------
    def nvmlGpmQueryDeviceSupport(self, h):
        g = self._enter("nvmlGpmQueryDeviceSupport", h)
        return SimpleNamespace(version=1, isSupportedDevice=int(g.gpm is not None))

    def nvmlGpmSampleAlloc(self):
        struct = pynvml.struct_c_nvmlGpmSample_t()
        self.samples[ctypes.addressof(struct)] = struct
        return ctypes.pointer(struct)

    def nvmlGpmSampleGet(self, h, sample):
        g = self._enter("nvmlGpmSampleGet", h)
        assert g.gpm is not None, "GPM sampled on a device that does not support it"
        self.sequence += 1
        self.sample_device[ctypes.addressof(sample.contents)] = (h[1], self.sequence)
        return sample

    def nvmlGpmMetricsGet(self, request):
        first = self.sample_device[ctypes.addressof(request.sample1.contents)]
        second = self.sample_device[ctypes.addressof(request.sample2.contents)]
        assert first[0] == second[0] and first[1] < second[1], "GPM samples of different devices or out of order"
        assert request.version == pynvml.NVML_GPM_METRICS_GET_VERSION
        g = self._enter("nvmlGpmMetricsGet", ("h", first[0]))
        for i in range(request.numMetrics):
            metric = request.metrics[i]
            if metric.metricId in g.gpm:
                metric.value = g.gpm[metric.metricId]
                metric.nvmlReturn = pynvml.NVML_SUCCESS
            else:
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return request

    def nvmlGpmSampleFree(self, sample):
        address = ctypes.addressof(sample.contents)
        assert address in self.samples and address not in self.freed, "freed a sample twice or never allocated"
        self.freed.append(address)


@pytest.fixture
def fake(monkeypatch):
    return FakeNvml([h100(), a100()]).install(monkeypatch)


# ---- the real path on this host ---------------------------------------------------------------------

def test_real_host_report_matches_whether_the_library_loads():
    report = read_report()
    if _nvml_library_present():
        assert report.available or report.reason  # a GPU host: a report, or the driver's reason
    else:
        assert report.available is False
        assert "nvmlInit" in report.reason and "Not Found" in report.reason
        assert report.devices == []


def test_real_sampler_without_nvml_samples_nothing_and_says_why():
    if _nvml_library_present():
        pytest.skip("this host has NVML")
    with NvmlSampler(interval_s=0.01) as sampler:
        pass
    assert sampler.result["samples"] == 0
    assert sampler.result["power_w_mean"] is None
    assert "NVML Shared Library Not Found" in sampler.result["reason"]


def test_pynvml_is_nvidia_ml_py_and_imports_without_warnings():
    proc = subprocess.run([sys.executable, "-W", "error", "-c", "import pynvml; print(pynvml.__file__)"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("pynvml.py")  # NVIDIA's single-module binding, not a redirector


# ---- a faked two-GPU host ---------------------------------------------------------------------------

def test_two_gpus_map_to_profiles_with_units_converted(fake):
    report = read_report(sample_window_s=0.01)
    assert report.available and report.reason is None
    assert report.driver_version == "550.54.15" and report.cuda_driver_version == 12040
    assert [d.index for d in report.devices] == [0, 1]
    for device, gpu in zip(report.devices, fake.gpus, strict=True):
        assert device.errors == []
        assert device.name == gpu.name and device.uuid == gpu.uuid
        assert device.memory_total_bytes == gpu.memory_total_bytes  # bytes stay bytes
        assert device.memory_used_bytes == gpu.memory_used_bytes
        assert device.power_w == pytest.approx(gpu.power_mw / 1000)  # mW -> W
        assert device.power_limit_w == pytest.approx(gpu.power_limit_mw / 1000)
        assert device.sm_clock_mhz == gpu.sm_clock_mhz and device.sm_clock_max_mhz == gpu.sm_clock_max_mhz
        assert device.utilization_gpu_pct == gpu.utilization_gpu
        assert device.utilization_memory_pct == gpu.utilization_memory
        assert device.temperature_c == gpu.temperature_c
        assert device.ecc_uncorrected_volatile == gpu.ecc_uncorrected
        assert device.compute_capability == gpu.compute_capability
        assert device.nvlink_active_links == gpu.nvlink_enabled
        assert (device.pcie_generation, device.pcie_width) == (gpu.pcie_gen, gpu.pcie_width)
        assert device.profile == profile_for_nvml_name(gpu.name).name
    h, a = report.devices
    assert (h.profile, a.profile) == ("h100-sxm", "a100-sxm-80gb")
    assert h.power_w == pytest.approx(312.457) and h.power_limit_w == pytest.approx(700.0)
    assert fake.init_calls == 1 and fake.shutdown_calls == 1


def test_gpm_read_on_hopper_only_and_samples_freed(fake):
    report = read_report(sample_window_s=0.01)
    h, a = report.devices
    assert h.gpm_supported is True
    assert h.tensor_active_pct == fake.gpus[0].gpm[GPM_ANY_TENSOR_UTIL]
    assert h.sm_occupancy_pct == fake.gpus[0].gpm[GPM_SM_OCCUPANCY]
    assert a.gpm_supported is False and a.tensor_active_pct is None and a.sm_occupancy_pct is None
    assert "nvmlGpmSampleGet" not in fake.calls_on(1)
    assert fake.calls_on(0).count("nvmlGpmSampleGet") == 2  # two samples bracket the window
    assert sorted(fake.freed) == sorted(fake.samples)  # every allocated sample freed exactly once


def test_zero_window_still_samples_gpm_with_the_default(fake):
    h, _ = read_report().devices
    assert h.tensor_active_pct == fake.gpus[0].gpm[GPM_ANY_TENSOR_UTIL]


def test_one_gpm_metric_unsupported_leaves_only_that_field_empty(fake):
    del fake.gpus[0].gpm[GPM_SM_OCCUPANCY]
    h, _ = read_report(sample_window_s=0.01).devices
    assert h.tensor_active_pct == fake.gpus[0].gpm[GPM_ANY_TENSOR_UTIL]
    assert h.sm_occupancy_pct is None and h.errors == []


def test_device_lost_mid_read_stops_that_device_only(fake):
    fake.fail[("nvmlDeviceGetPowerUsage", 0)] = pynvml.NVML_ERROR_GPU_IS_LOST
    report = read_report(sample_window_s=0.01)
    lost, other = report.devices
    assert lost.errors == ["nvmlDeviceGetPowerUsage: GPU is lost"]
    # read before the loss, nothing after it
    assert lost.name == fake.gpus[0].name and lost.memory_total_bytes == fake.gpus[0].memory_total_bytes
    assert lost.power_w is None and lost.utilization_gpu_pct is None and lost.compute_capability is None
    assert lost.gpm_supported is None and lost.tensor_active_pct is None
    calls = fake.calls_on(0)
    assert calls[-1] == "nvmlDeviceGetPowerUsage"  # no call on a lost device after the loss
    # the other device is untouched
    assert other.errors == [] and other.profile == "a100-sxm-80gb"
    assert other.power_w == pytest.approx(fake.gpus[1].power_mw / 1000)
    assert fake.shutdown_calls == 1


def test_handle_unobtainable_gives_a_device_with_the_error(fake):
    fake.fail[("nvmlDeviceGetHandleByIndex", 0)] = pynvml.NVML_ERROR_UNKNOWN
    first, second = read_report(sample_window_s=0.01).devices
    assert first.index == 0 and first.name is None and first.profile is None
    assert first.errors == ["nvmlDeviceGetHandleByIndex: Unknown Error"]
    assert second.name == fake.gpus[1].name and second.errors == []


def test_each_field_isolated(fake):
    fake.fail[("nvmlDeviceGetTotalEccErrors", 1)] = pynvml.NVML_ERROR_NOT_SUPPORTED  # e.g. ECC off
    fake.fail[("nvmlDeviceGetTemperature", 1)] = pynvml.NVML_ERROR_NO_PERMISSION
    _, a = read_report(sample_window_s=0.01).devices
    assert a.ecc_uncorrected_volatile is None and a.temperature_c is None
    assert a.errors == ["nvmlDeviceGetTemperature: Insufficient Permissions"]  # unsupported is not an error
    assert a.power_w == pytest.approx(fake.gpus[1].power_mw / 1000)
    assert a.pcie_generation == fake.gpus[1].pcie_gen and a.nvlink_active_links == fake.gpus[1].nvlink_enabled


def test_nvlink_unsupported_on_link_zero_is_none(fake):
    fake.fail[("nvmlDeviceGetNvLinkState", 1)] = pynvml.NVML_ERROR_NOT_SUPPORTED
    _, a = read_report(sample_window_s=0.01).devices
    assert a.nvlink_active_links is None and a.errors == []


def test_library_missing_is_a_result_and_no_shutdown(fake, monkeypatch):
    def missing():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    report = read_report()
    assert report.available is False
    assert report.reason == "nvmlInit: NVML Shared Library Not Found"
    assert fake.shutdown_calls == 0 and fake.calls == []


def test_pynvml_not_importable_is_a_result(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    report = read_report()
    assert report.available is False and "nvidia-ml-py" in report.reason


def test_no_gpu_and_count_failure_are_results(fake):
    fake.gpus.clear()
    report = read_report()
    assert report.available is False and "no GPU" in report.reason
    assert report.driver_version == "550.54.15"
    assert fake.shutdown_calls == 1


def test_count_failure_is_a_result(fake, monkeypatch):
    def count():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", count)
    report = read_report()
    assert report.available is False and report.reason == "nvmlDeviceGetCount: Driver Not Loaded"
    assert fake.shutdown_calls == 1


@pytest.mark.parametrize("window", [-1, float("nan"), float("inf"), "soon"])
def test_bad_window_names_the_field(window):
    with pytest.raises(InputError) as info:
        read_report(sample_window_s=window)
    assert info.value.field == "sample_window_s"


# ---- the sampler on the faked host ----------------------------------------------------------------

def _run_until_enough(fake: FakeNvml, sampler: NvmlSampler) -> dict:
    sampler.start()
    assert fake.enough_samples.wait(30), "the sampler thread never read power"
    return sampler.stop()


def test_sampler_means_are_the_means_of_what_nvml_returned(fake):
    fake.gpus[0].power_sequence_mw = [300_000, 450_500, 610_250]
    result = _run_until_enough(fake, NvmlSampler(index=0, interval_s=0.001))
    power = fake.power_returned_mw[0]
    utilization = fake.utilization_returned[0]
    assert result["reason"] is None and result["errors"] == []
    assert result["samples"] == len(power) == len(utilization) >= fake.enough_after
    assert result["power_w_mean"] == pytest.approx(sum(power) / len(power) / 1000)
    assert result["utilization_gpu_pct_mean"] == pytest.approx(sum(utilization) / len(utilization))
    assert result["tensor_active_pct_mean"] == pytest.approx(fake.gpus[0].gpm[GPM_ANY_TENSOR_UTIL])
    assert sorted(fake.freed) == sorted(fake.samples)
    assert fake.init_calls == 1 and fake.shutdown_calls == 1


def test_sampler_context_manager_on_a_gpu_without_gpm(fake):
    with NvmlSampler(index=1, interval_s=0.001) as sampler:
        assert fake.enough_samples.wait(30)
    result = sampler.result
    assert result is sampler.stop()  # later stop() returns the same summary
    assert result["samples"] >= 2 and result["tensor_active_pct_mean"] is None
    assert result["power_w_mean"] == pytest.approx(fake.gpus[1].power_mw / 1000)
    assert "nvmlGpmSampleGet" not in fake.calls_on(1)


def test_sampler_short_run_has_a_start_and_a_stop_sample(fake):
    sampler = NvmlSampler(index=0, interval_s=60.0).start()
    result = sampler.stop()  # stop wakes the thread at once; no 60 s wait
    assert result["samples"] == 2
    assert result["tensor_active_pct_mean"] == pytest.approx(fake.gpus[0].gpm[GPM_ANY_TENSOR_UTIL])


def test_sampler_survives_a_lost_gpu(fake):
    fake.fail_after[("nvmlDeviceGetPowerUsage", 0)] = (4, pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST))
    sampler = NvmlSampler(index=0, interval_s=0.001).start()
    sampler._thread.join(30)  # ends on its own after the loss
    assert not sampler._thread.is_alive()
    result = sampler.stop()
    assert result["samples"] == 3 and "lost" in result["reason"]
    assert result["errors"] == ["nvmlDeviceGetPowerUsage: GPU is lost"]
    assert sorted(fake.freed) == sorted(fake.samples) and fake.shutdown_calls == 1


def test_sampler_survives_a_binding_bug(fake):
    fake.fail_after[("nvmlDeviceGetUtilizationRates", 0)] = (1, RuntimeError("boom"))
    result = _run_until_enough(fake, NvmlSampler(index=0, interval_s=0.001))
    assert result["utilization_gpu_pct_mean"] is None and result["power_w_mean"] is not None
    assert result["errors"][0] == "nvmlDeviceGetUtilizationRates: RuntimeError: boom"
    assert len(result["errors"]) <= 20  # capped, though the call failed on every tick


def test_sampler_bad_index_handle_is_a_reason(fake):
    fake.fail[("nvmlDeviceGetHandleByIndex", 1)] = pynvml.NVML_ERROR_INVALID_ARGUMENT
    result = NvmlSampler(index=1, interval_s=0.001).start().stop()
    assert result["samples"] == 0 and "no handle" in result["reason"]
    assert result["errors"] == ["nvmlDeviceGetHandleByIndex: Invalid Argument"]


def test_sampler_never_started():
    result = NvmlSampler().stop()
    assert result["samples"] == 0 and "not started" in result["reason"]


@pytest.mark.parametrize(("kwargs", "field_name"), [({"index": -1}, "index"), ({"index": 1.5}, "index"),
                                                    ({"interval_s": 0}, "interval_s"),
                                                    ({"interval_s": float("nan")}, "interval_s")])
def test_sampler_bad_arguments_name_the_field(kwargs, field_name):
    with pytest.raises(InputError) as info:
        NvmlSampler(**kwargs)
    assert info.value.field == field_name
