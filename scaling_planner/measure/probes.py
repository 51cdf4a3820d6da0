"""Micro-benchmarks of one device: dense matmul FLOP/s per dtype and device-to-device copy bandwidth.

A matmul of two n x n matrices costs ``2 n^3`` FLOPs (n^3 multiply-adds; the usual GEMM count, e.g.
NVIDIA's "Matrix Multiplication Background" guide and reference/stack_notes.md §6). A copy of S bytes
moves ``2 S`` bytes through memory (S read, S written), the convention of STREAM's "Copy" kernel.

Backends:

- ``numpy`` (CPU; fp32, fp64): whatever BLAS numpy was built with; threads are not controlled here
  (``OPENBLAS_NUM_THREADS`` before import does that), so ``threads`` is recorded as None.
- ``torch-cpu`` (fp32, bf16): ``torch.matmul``; ``threads`` sets ``torch.set_num_threads`` for the
  probe and is restored after it.
- ``torch-cuda`` (fp32 with TF32 off, tf32, bf16, fp16, fp8): ``torch.matmul``, and for fp8
  ``torch._scaled_mm`` on e4m3 inputs with unit scales and a bf16 output (needs compute capability
  >= 8.9: Ada and Hopper or later). Timed with CUDA events around each product.

CPU repeats are timed with ``time.perf_counter``. Every timed repeat gives one rate; the result has
the median, every sample, the spread ``(max - min) / median``, the seconds inside the timed regions
(``timed_s``) and the seconds of the whole probe with allocation and warm-up (``total_s``), so the
probe's overhead ``1 - timed_s / total_s`` can be reported. ``fraction_of_peak`` is median / the dense
peak given (never the 2:4-sparsity figure).

A combination this host cannot run (fp8 on a CPU, CUDA without a GPU, a dtype the backend lacks, a
CUDA error such as out-of-memory) is a :class:`ProbeResult` with ``error`` set, not an exception.
Arguments that are wrong whatever the host (n < 1, an unknown dtype) raise :class:`InputError`.
torch is imported inside the functions that use it.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..base.errors import InputError
from .models import ProbeResult

MATMUL_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8")
BACKENDS = ("auto", "numpy", "torch-cpu", "torch-cuda")
BACKEND_DTYPES = {
    "numpy": ("fp32", "fp64"),
    "torch-cpu": ("fp32", "bf16"),
    "torch-cuda": ("fp32", "tf32", "bf16", "fp16", "fp8"),
}
"""The dtypes each backend can multiply."""

DEFAULT_N = {"cpu": 1024, "cuda": 8192}
QUICK_N = {"cpu": 1024, "cuda": 4096}
"""Quick still means representative: below n ~ 1024 a CPU matmul is dominated by call and thread
start-up (measured here: n=256 gives 2 GFLOP/s fp32 against 58 at n=1024 under the same load), and a
quick measurement may be saved as calibration. The quick set saves time on repeats, not on size."""
MIB = 2**20
DEFAULT_COPY_BYTES = {"cpu": 64 * MIB, "cuda": 256 * MIB}
QUICK_COPY_BYTES = {"cpu": 8 * MIB, "cuda": 64 * MIB}
FP8_MIN_CAPABILITY = (8, 9)


# ---- argument checks ---------------------------------------------------------------------------------

def _parse_device(device: Any) -> tuple[str, int | None]:
    """``"cpu"`` -> ("cpu", None); ``"cuda"`` -> ("cuda", None); ``"cuda:1"`` -> ("cuda", 1)."""
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu", None
    if text == "cuda":
        return "cuda", None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise InputError("device", f"must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")


def _check_int(value: Any, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(field, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _check_positive(value: Any, field: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise InputError(field, f"must be a finite number > 0, got {value!r}")
    return number


def _check_choice(value: Any, field: str, allowed: Sequence[str]) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise InputError(field, f"must be one of {', '.join(allowed)}, got {value!r}")
    return text


def _resolve_backend(backend: str, kind: str, dtype: str) -> str:
    """``auto``: torch-cuda on a cuda device; on the CPU numpy for fp32/fp64, torch-cpu otherwise."""
    if backend != "auto":
        return backend
    if kind == "cuda":
        return "torch-cuda"
    return "numpy" if dtype in BACKEND_DTYPES["numpy"] else "torch-cpu"


def _unsupported(backend: str, kind: str, dtype: str) -> str | None:
    """Why this backend cannot run ``dtype`` on this kind of device (None when it can)."""
    if backend == "torch-cuda" and kind != "cuda":
        return "torch-cuda needs a cuda device"
    if backend != "torch-cuda" and kind == "cuda":
        return f"{backend} runs on the CPU only; use torch-cuda for a cuda device"
    if dtype not in BACKEND_DTYPES[backend]:
        return f"{backend} has no {dtype} matmul; it supports {', '.join(BACKEND_DTYPES[backend])}"
    return None


# ---- results -------------------------------------------------------------------------------------------

def _result(base: dict[str, Any], work: float, times_s: list[float], started: float,
            error: str | None = None, threads: int | None = None) -> ProbeResult:
    """Rates from per-repeat seconds: ``work`` (FLOPs or bytes) / seconds, median, spread, fraction of peak."""
    if any(t <= 0 for t in times_s):
        error = error or "a timed repeat took 0 s at this timer's resolution; use a larger size"
        times_s = []
    samples = [work / t for t in times_s]
    median = statistics.median(samples) if samples else 0.0
    spread = (max(samples) - min(samples)) / median if samples else 0.0
    peak = base.get("peak")
    fraction = median / peak if peak and samples else None
    return ProbeResult(**base, median=median, samples=samples, spread=spread, timed_s=sum(times_s),
                       total_s=time.perf_counter() - started, fraction_of_peak=fraction, threads=threads,
                       error=error)


class _TimeoutError(Exception):
    """The probe ran past ``timeout_s`` (checked between repeats)."""


class _UnavailableError(Exception):
    """This host cannot run the probe (no CUDA, fp8 on an old GPU): becomes the result's ``error``."""


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline


def _time_cpu(fn: Callable[[], Any], warmup: int, repeats: int, deadline: float | None,
              times_s: list[float]) -> None:
    """Warm up, then time each repeat with perf_counter into ``times_s`` (raises _TimeoutError past the deadline)."""
    for _ in range(warmup):
        fn()
        if _past(deadline):
            raise _TimeoutError("during warm-up")
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        times_s.append(time.perf_counter() - t0)
        if i + 1 < repeats and _past(deadline):
            raise _TimeoutError(f"after {i + 1} of {repeats} repeats")


def _time_cuda(torch: Any, fn: Callable[[], Any], warmup: int, repeats: int, deadline: float | None,
               times_s: list[float]) -> None:
    """Warm up, then time each repeat between two CUDA events (device time, launch gaps excluded)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    if _past(deadline):
        raise _TimeoutError("during warm-up")
    for i in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times_s.append(start.elapsed_time(end) / 1000.0)  # elapsed_time is in milliseconds
        if i + 1 < repeats and _past(deadline):
            raise _TimeoutError(f"after {i + 1} of {repeats} repeats")


# ---- matmul --------------------------------------------------------------------------------------------

def matmul_probe(dtype: str = "fp32", *, device: str = "cpu", backend: str = "auto", n: int | None = None,
                 warmup: int = 2, repeats: int = 5, threads: int | None = None,
                 peak_flops_per_s: float | None = None, timeout_s: float | None = None) -> ProbeResult:
    """Achieved FLOP/s of an n x n x n matrix product (``2 n^3`` FLOPs each) in ``dtype`` on ``device``.

    ``n`` defaults to 8192 on a GPU and 1024 on the CPU. ``timeout_s`` is checked between repeats (a
    running product is not interrupted); past it the result has the samples so far and ``error`` set.
    """
    started = time.perf_counter()
    dtype = _check_choice(dtype, "dtype", MATMUL_DTYPES)
    backend = _check_choice(backend, "backend", BACKENDS)
    kind, index = _parse_device(device)
    n = DEFAULT_N[kind] if n is None else _check_int(n, "n", 1)
    warmup = _check_int(warmup, "warmup", 0)
    repeats = _check_int(repeats, "repeats", 1)
    threads = None if threads is None else _check_int(threads, "threads", 1)
    peak = _check_positive(peak_flops_per_s, "peak_flops_per_s")
    timeout = _check_positive(timeout_s, "timeout_s")
    deadline = None if timeout is None else started + timeout

    resolved = _resolve_backend(backend, kind, dtype)
    base = {"kind": "matmul", "backend": resolved, "dtype": dtype, "size": n, "unit": "flops_per_s",
            "warmup": warmup, "repeats": repeats, "peak": peak}
    flops = 2.0 * n**3
    problem = _unsupported(resolved, kind, dtype)
    if problem:
        return _result(base, flops, [], started, error=problem)

    times_s: list[float] = []
    used_threads: list[int | None] = [None]
    try:
        if resolved == "numpy":
            _numpy_matmul(dtype, n, warmup, repeats, deadline, times_s)
        elif resolved == "torch-cpu":
            _torch_cpu_matmul(dtype, n, warmup, repeats, threads, deadline, times_s, used_threads)
        else:
            _torch_cuda_matmul(dtype, n, index, warmup, repeats, deadline, times_s)
    except _TimeoutError as exc:
        return _result(base, flops, times_s, started, threads=used_threads[0],
                       error=f"timed out {exc} (timeout_s={timeout:g})")
    except _UnavailableError as exc:
        return _result(base, flops, [], started, error=str(exc))
    except (RuntimeError, MemoryError, OSError, ImportError) as exc:  # e.g. CUDA out of memory, no torch
        return _result(base, flops, [], started, error=f"{type(exc).__name__}: {exc}".strip())
    return _result(base, flops, times_s, started, threads=used_threads[0])


def _numpy_matmul(dtype: str, n: int, warmup: int, repeats: int, deadline: float | None,
                  times_s: list[float]) -> None:
    import numpy as np

    np_dtype = {"fp32": np.float32, "fp64": np.float64}[dtype]
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np_dtype)
    b = rng.random((n, n), dtype=np_dtype)
    out = np.empty((n, n), dtype=np_dtype)
    _time_cpu(lambda: np.matmul(a, b, out=out), warmup, repeats, deadline, times_s)


def _torch_cpu_matmul(dtype: str, n: int, warmup: int, repeats: int, threads: int | None,
                      deadline: float | None, times_s: list[float], used_threads: list[int | None]) -> None:
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=generator).to(torch_dtype)
    b = torch.rand(n, n, generator=generator).to(torch_dtype)
    out = torch.empty(n, n, dtype=torch_dtype)
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        used_threads[0] = torch.get_num_threads()
        with torch.inference_mode():
            _time_cpu(lambda: torch.matmul(a, b, out=out), warmup, repeats, deadline, times_s)
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _cuda_device(torch: Any, index: int | None) -> Any:
    if not torch.cuda.is_available():
        raise _UnavailableError(f"CUDA is not available to torch {torch.__version__}")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if index is None else index
    if index >= count:
        raise _UnavailableError(f"cuda:{index} does not exist; this host has {count} CUDA device(s)")
    return torch.device("cuda", index)


@contextlib.contextmanager
def _fp32_matmul_precision(torch: Any, tf32: bool) -> Iterator[None]:
    """TF32 on or off for fp32 CUDA matmuls during the probe, restored after (new API where present;
    mixing it with the legacy ``allow_tf32`` flag is an error in recent torch)."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        previous = matmul.fp32_precision
        matmul.fp32_precision = "tf32" if tf32 else "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = previous
    else:  # older torch
        previous = matmul.allow_tf32
        matmul.allow_tf32 = tf32
        try:
            yield
        finally:
            matmul.allow_tf32 = previous


def fp8_supported(device: str = "cuda") -> bool:
    """True when ``device`` is a CUDA device of compute capability >= 8.9 that torch can use."""
    kind, index = _parse_device(device)
    if kind != "cuda":
        return False
    try:
        import torch

        dev = _cuda_device(torch, index)
        return tuple(torch.cuda.get_device_capability(dev)) >= FP8_MIN_CAPABILITY
    except (_UnavailableError, ImportError, RuntimeError):
        return False


def _torch_cuda_matmul(dtype: str, n: int, index: int | None, warmup: int, repeats: int,
                       deadline: float | None, times_s: list[float]) -> None:
    import torch

    dev = _cuda_device(torch, index)
    generator = torch.Generator(device=dev).manual_seed(0)
    if dtype == "fp8":
        capability = tuple(torch.cuda.get_device_capability(dev))
        if capability < FP8_MIN_CAPABILITY:
            raise _UnavailableError(f"fp8 needs compute capability >= 8.9; {dev} is {capability[0]}.{capability[1]}")
        if n % 16:
            raise _UnavailableError(f"fp8 (torch._scaled_mm) needs n divisible by 16, got {n}")
        a = torch.randn(n, n, device=dev, generator=generator).to(torch.float8_e4m3fn)
        # the second operand must be column-major: the transpose of a row-major matrix
        b = torch.randn(n, n, device=dev, generator=generator).to(torch.float8_e4m3fn).t()
        scale = torch.ones((), device=dev, dtype=torch.float32)

        def product() -> Any:
            return torch._scaled_mm(a, b, scale_a=scale, scale_b=scale, out_dtype=torch.bfloat16)

        _time_cuda(torch, product, warmup, repeats, deadline, times_s)
        return
    torch_dtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    a = torch.randn(n, n, device=dev, generator=generator).to(torch_dtype)
    b = torch.randn(n, n, device=dev, generator=generator).to(torch_dtype)
    out = torch.empty(n, n, device=dev, dtype=torch_dtype)
    with torch.cuda.device(dev), torch.inference_mode(), _fp32_matmul_precision(torch, tf32=dtype == "tf32"):
        _time_cuda(torch, lambda: torch.matmul(a, b, out=out), warmup, repeats, deadline, times_s)


# ---- memory bandwidth ----------------------------------------------------------------------------------

def bandwidth_probe(*, device: str = "cpu", size_bytes: int | None = None, warmup: int = 2, repeats: int = 5,
                    peak_bytes_per_s: float | None = None) -> ProbeResult:
    """Achieved bytes/s of a device-to-device copy of ``size_bytes`` (``2 x size`` bytes moved each).

    ``size_bytes`` defaults to 256 MiB on a GPU and 64 MiB on the CPU (larger than the caches, so the
    copy streams through DRAM/HBM). CPU: ``numpy.copyto``; GPU: ``Tensor.copy_`` timed with CUDA events.
    """
    started = time.perf_counter()
    kind, index = _parse_device(device)
    size = DEFAULT_COPY_BYTES[kind] if size_bytes is None else _check_int(size_bytes, "size_bytes", 1)
    warmup = _check_int(warmup, "warmup", 0)
    repeats = _check_int(repeats, "repeats", 1)
    peak = _check_positive(peak_bytes_per_s, "peak_bytes_per_s")
    backend = "torch-cuda" if kind == "cuda" else "numpy"
    base = {"kind": "memory_bandwidth", "backend": backend, "dtype": "uint8", "size": size,
            "unit": "bytes_per_s", "warmup": warmup, "repeats": repeats, "peak": peak}
    moved = 2.0 * size
    times_s: list[float] = []
    try:
        if kind == "cpu":
            import numpy as np

            src = np.ones(size, dtype=np.uint8)  # written, so its pages are really allocated
            dst = np.empty(size, dtype=np.uint8)
            dst.fill(0)  # np.zeros may map lazily-zeroed pages; touch them before timing
            _time_cpu(lambda: np.copyto(dst, src), warmup, repeats, None, times_s)
        else:
            import torch

            dev = _cuda_device(torch, index)
            src = torch.ones(size, dtype=torch.uint8, device=dev)
            dst = torch.zeros(size, dtype=torch.uint8, device=dev)
            with torch.cuda.device(dev):
                _time_cuda(torch, lambda: dst.copy_(src), warmup, repeats, None, times_s)
    except _UnavailableError as exc:
        return _result(base, moved, [], started, error=str(exc))
    except (RuntimeError, MemoryError, OSError, ImportError) as exc:
        return _result(base, moved, [], started, error=f"{type(exc).__name__}: {exc}".strip())
    return _result(base, moved, times_s, started)


# ---- the default set for a device ----------------------------------------------------------------------

def _profile(profile: Any) -> Any:
    if profile is None or hasattr(profile, "peak_flops_per_s"):
        return profile
    from ..hardware.profiles import get_profile

    return get_profile(str(profile))


def _peak_flops(profile: Any, dtype: str) -> float | None:
    if profile is None:
        return None
    try:
        return profile.peak_flops_per_s(dtype)
    except InputError:  # the profile has no peak for this dtype
        return None


def default_plan(device: str = "cpu") -> list[tuple[str, str]]:
    """The (backend, dtype) matmuls :func:`run_probes` runs on ``device`` by default."""
    kind, _ = _parse_device(device)
    if kind == "cpu":
        return [("numpy", "fp32"), ("torch-cpu", "fp32"), ("torch-cpu", "bf16")]
    plan = [("torch-cuda", d) for d in ("bf16", "fp16", "tf32", "fp32")]
    if fp8_supported(device):
        plan.append(("torch-cuda", "fp8"))
    return plan


def run_probes(device: str = "cpu", *, dtypes: Sequence[str] | None = None, quick: bool = False,
               profile: Any = None) -> list[ProbeResult]:
    """The default probe set of ``device``: matmuls (CPU: numpy fp32, torch-cpu fp32 and bf16; GPU: bf16,
    fp16, tf32, fp32 and fp8 where the device supports it) and one bandwidth probe, last.

    ``dtypes`` keeps the default matmuls of those dtypes and adds an ``auto`` probe for any other
    (so an unsupported one shows up as an error result). ``profile`` (a HardwareProfile or its name)
    fills the peaks: ``peak_flops_per_s(dtype)`` (None where the profile has no peak for the dtype)
    and ``memory_bandwidth_bytes_per_s``. ``quick`` uses small sizes and fewer repeats (tests).
    """
    kind, _ = _parse_device(device)
    hardware = _profile(profile)
    plan = default_plan(device)
    if dtypes is not None:
        if isinstance(dtypes, str):
            dtypes = [dtypes]
        wanted = [_check_choice(d, "dtypes", MATMUL_DTYPES) for d in dtypes]
        plan = [(b, d) for b, d in plan if d in wanted] + [("auto", d) for d in dict.fromkeys(wanted)
                                                          if all(d != pd for _, pd in plan)]
    n = QUICK_N[kind] if quick else None
    warmup, repeats = (1, 3) if quick else (2, 5)
    results = [matmul_probe(d, device=device, backend=b, n=n, warmup=warmup, repeats=repeats,
                            peak_flops_per_s=_peak_flops(hardware, d)) for b, d in plan]
    peak_bytes_per_s = None if hardware is None else hardware.memory_bandwidth_bytes_per_s
    results.append(bandwidth_probe(device=device, size_bytes=QUICK_COPY_BYTES[kind] if quick else None,
                                   warmup=warmup, repeats=repeats, peak_bytes_per_s=peak_bytes_per_s))
    return results


def cpu_name() -> str:
    """The CPU model ("model name" of /proc/cpuinfo on Linux, else ``platform.processor()``)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
        for line in cpuinfo:
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or f"unknown CPU ({os.cpu_count()} cores)"
