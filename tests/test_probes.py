"""Probes, run for real on this host's CPU (numpy and torch); CUDA and fp8 here are error results."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
import torch

from scaling_planner.base.errors import InputError
from scaling_planner.hardware.profiles import get_profile
from scaling_planner.measure.probes import bandwidth_probe, cpu_name, matmul_probe, run_probes

GFLOPS = 1e9
# a rate, not a speed floor: any positive rate (a busy machine may be slow), below what a few CPU cores can
# physically do (10 TFLOP/s would take hundreds of AVX-512 cores)
PLAUSIBLE_FLOPS_PER_S = (0.0, 10_000 * GFLOPS)


def _check_statistics(result, work: float):
    """The summary fields are what they claim to be, recomputed from the samples."""
    assert result.error is None
    assert len(result.samples) == result.repeats
    assert all(s > 0 for s in result.samples)
    assert result.median == pytest.approx(statistics.median(result.samples))
    assert result.spread == pytest.approx((max(result.samples) - min(result.samples)) / result.median)
    # each sample is work / seconds, and timed_s sums those seconds
    assert result.timed_s == pytest.approx(sum(work / s for s in result.samples), rel=1e-9)
    assert 0 < result.timed_s < result.total_s


@pytest.mark.parametrize(("backend", "dtype"), [("numpy", "fp32"), ("torch-cpu", "fp32"), ("torch-cpu", "bf16"),
                                                ("numpy", "fp64")])
def test_cpu_matmul_rates_are_plausible(backend, dtype):
    n = 256
    result = matmul_probe(dtype, backend=backend, n=n, warmup=1, repeats=4)
    assert (result.kind, result.backend, result.dtype, result.size, result.unit) == (
        "matmul", backend, dtype, n, "flops_per_s")
    _check_statistics(result, 2 * n**3)
    assert PLAUSIBLE_FLOPS_PER_S[0] < result.median < PLAUSIBLE_FLOPS_PER_S[1]
    assert result.peak is None and result.fraction_of_peak is None


def test_auto_backend_picks_numpy_for_fp32_and_torch_for_bf16():
    assert matmul_probe("fp32", n=64, repeats=1).backend == "numpy"
    assert matmul_probe("bf16", n=64, repeats=1).backend == "torch-cpu"


def test_fraction_of_peak_is_median_over_peak():
    peak = 3.5e11
    result = matmul_probe("fp32", n=128, repeats=3, peak_flops_per_s=peak)
    assert result.peak == peak
    assert result.fraction_of_peak == pytest.approx(result.median / peak)


def test_torch_threads_recorded_and_restored():
    before = torch.get_num_threads()
    one = matmul_probe("fp32", backend="torch-cpu", n=128, repeats=2, threads=1)
    assert one.threads == 1
    assert torch.get_num_threads() == before
    assert matmul_probe("fp32", backend="torch-cpu", n=128, repeats=2).threads == before
    assert matmul_probe("fp32", backend="numpy", n=128, repeats=2).threads is None  # numpy's BLAS: not controlled


def _independent_rate(n: int, repeats: int = 7) -> float:
    """Same product, timed here with perf_counter on one torch thread: 2 n^3 / fastest seconds."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a @ b
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return 2 * n**3 / min(times)


def test_flop_count_agrees_with_an_independent_timing():
    """A probe that counted n^3 (or 4 n^3) FLOPs, or timed the wrong thing, would be off by 2x.

    One thread on both sides, and the fastest repeat of each: other work on the machine can only slow
    a repeat down, so the fastest one is the least disturbed estimate of the same product's rate on
    both sides (a median moved by 2x beside two busy loops and the rest of the suite). A 1.5x band
    cannot be crossed by that noise but is by a 2x bug. Three interleaved rounds, median ratio.
    """
    n = 384
    ratios = []
    for _ in range(3):
        before = _independent_rate(n)
        probe = matmul_probe("fp32", backend="torch-cpu", n=n, warmup=1, repeats=7, threads=1)
        after = _independent_rate(n)
        ratios.append(max(probe.samples) / max(before, after))
    assert 2 / 3 < statistics.median(ratios) < 3 / 2, ratios


def test_bandwidth_probe_counts_read_and_write():
    size = 4 * 2**20
    result = bandwidth_probe(size_bytes=size, warmup=1, repeats=4, peak_bytes_per_s=1e11)
    assert (result.kind, result.backend, result.unit, result.size) == ("memory_bandwidth", "numpy", "bytes_per_s",
                                                                      size)
    _check_statistics(result, 2 * size)
    assert 1e8 < result.median < 1e13  # 0.1 GB/s .. 10 TB/s
    assert result.fraction_of_peak == pytest.approx(result.median / 1e11)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dtype": "fp8"}, "torch-cpu has no fp8"),
    ({"dtype": "fp16", "backend": "torch-cpu"}, "torch-cpu has no fp16"),
    ({"dtype": "bf16", "backend": "numpy"}, "numpy has no bf16"),
    ({"dtype": "fp32", "backend": "torch-cuda"}, "needs a cuda device"),
    ({"dtype": "fp32", "backend": "numpy", "device": "cuda"}, "CPU only"),
])
def test_unsupported_combinations_are_error_results(kwargs, message):
    result = matmul_probe(n=64, **kwargs)
    assert result.error is not None and message in result.error
    assert result.samples == [] and result.median == 0.0 and result.fraction_of_peak is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
@pytest.mark.parametrize("dtype", ["bf16", "fp8", "tf32"])
def test_cuda_without_a_gpu_is_an_error_result(dtype):
    result = matmul_probe(dtype, device="cuda:0", n=64)
    assert result.backend == "torch-cuda" and "CUDA is not available" in result.error
    copy = bandwidth_probe(device="cuda", size_bytes=1024)
    assert copy.backend == "torch-cuda" and "CUDA is not available" in copy.error


def test_timeout_keeps_the_samples_so_far():
    result = matmul_probe("fp32", n=64, warmup=0, repeats=3, timeout_s=1e-12)
    assert result.error.startswith("timed out after 1 of 3 repeats")
    assert len(result.samples) == 1
    warm = matmul_probe("fp32", n=64, warmup=1, repeats=3, timeout_s=1e-12)
    assert "during warm-up" in warm.error and warm.samples == []


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"n": 0}, "n"), ({"n": 2.5}, "n"), ({"n": True}, "n"), ({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup"),
    ({"dtype": "fp12"}, "dtype"), ({"backend": "jax"}, "backend"), ({"device": "tpu"}, "device"),
    ({"device": "cuda:x"}, "device"), ({"threads": 0}, "threads"), ({"peak_flops_per_s": -1.0}, "peak_flops_per_s"),
    ({"peak_flops_per_s": float("nan")}, "peak_flops_per_s"), ({"timeout_s": 0}, "timeout_s"),
])
def test_bad_matmul_arguments_name_the_field(kwargs, field):
    with pytest.raises(InputError) as info:
        matmul_probe(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"size_bytes": 0}, "size_bytes"), ({"repeats": 0}, "repeats"), ({"device": "gpu"}, "device"),
    ({"peak_bytes_per_s": 0}, "peak_bytes_per_s"),
])
def test_bad_bandwidth_arguments_name_the_field(kwargs, field):
    with pytest.raises(InputError) as info:
        bandwidth_probe(**kwargs)
    assert info.value.field == field


def test_run_probes_cpu_default_set_with_profile_peaks():
    profile = get_profile("cpu")
    results = run_probes("cpu", quick=True, profile="cpu")
    assert [(r.kind, r.backend, r.dtype) for r in results] == [
        ("matmul", "numpy", "fp32"), ("matmul", "torch-cpu", "fp32"), ("matmul", "torch-cpu", "bf16"),
        ("memory_bandwidth", "numpy", "uint8")]
    assert all(r.error is None and len(r.samples) == r.repeats for r in results)
    for r in results[:3]:
        assert r.peak == profile.peak_flops_per_s(r.dtype)
        assert r.fraction_of_peak == pytest.approx(r.median / r.peak)
    assert results[3].peak == profile.memory_bandwidth_bytes_per_s


def test_run_probes_dtype_filter_and_missing_peak():
    results = run_probes("cpu", dtypes=["bf16", "fp64", "fp8"], quick=True, profile=get_profile("cpu"))
    assert [(r.backend, r.dtype) for r in results] == [("torch-cpu", "bf16"), ("numpy", "fp64"), ("torch-cpu", "fp8"),
                                                     ("numpy", "uint8")]
    bf16, fp64, fp8, _ = results
    assert bf16.error is None and bf16.peak is not None
    assert fp64.error is None and fp64.peak is None and fp64.fraction_of_peak is None  # cpu profile: no fp64 peak
    assert fp8.error is not None
    with pytest.raises(InputError) as info:
        run_probes("cpu", dtypes=["fp4"])
    assert info.value.field == "dtypes"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_run_probes_cuda_without_a_gpu_reports_every_probe_as_an_error():
    results = run_probes("cuda", quick=True, profile="h100-sxm")
    assert [r.dtype for r in results] == ["bf16", "fp16", "tf32", "fp32", "uint8"]  # no fp8: not supported here
    assert all("CUDA is not available" in r.error for r in results)
    assert results[0].peak == get_profile("h100-sxm").peak_flops_per_s("bf16")


def test_cpu_name():
    name = cpu_name()
    assert isinstance(name, str) and name
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        assert name in cpuinfo.read_text()

