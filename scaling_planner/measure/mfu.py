"""MFU meter: model FLOPs utilisation of a real training loop.

MFU = achieved *model* FLOP/s / the device's *dense* peak FLOP/s for the dtype trained in
(Chowdhery et al. 2022, "PaLM", App. B). Model FLOPs are what the model needs per token,
forward + backward, whatever the implementation really executes: activation recompute, the
flash-attention backward's recomputation of the score matrix and the masked-out half of a causal
attention matrix are not in the numerator (those are hardware FLOPs, HFU, never mixed in here).

FLOPs per token (:func:`scaling_planner.simulate.flops.model_flops_per_token`, the one copy)::

    6 N + 12 L H Q T        (PaLM App. B; nanoGPT ``estimate_mfu``; torchtitan ``get_nparams_and_flops``)
    6 N +  6 L H Q T        (causal_halving=True: Megatron-LM ``num_floating_point_operations``
                             counts the core-attention GEMMs over the causal half only)

N: parameters multiplied per token (non-embedding, active -- MoE routed experts weighted by
top_k/num_experts -- *plus* the output head, which is a matmul even when it is tied to the input
embedding: nanoGPT counts the tied ``wte``, torchtitan the untied ``output`` layer); L layers, H
heads, Q head dim, T sequence length. The attention term is 2 GEMMs (QK^T, PV) of 2 T Q FLOPs per
head per token forward, x3 for forward + backward.

Time base: per device, like torchtitan. Call :meth:`MfuMeter.step` with the tokens *this device*
processed in the optimizer step (global batch tokens / data-parallel size). The first
``warmup_steps`` steps (allocation, autotuning, thread-pool start) are left out of the timing.

MFU on a CPU: the ``cpu`` hardware profile's peak (``hardware_profiles/cpu.yaml``, fp32 0.25,
bf16 0.85 TFLOP/s) is NOMINAL: this project's own 2-thread n=2048 matmul rate on the 2-core
development box, rounded up so measured <= peak. It is not a vendor figure and is wrong for any other
CPU. An MFU measured against it says "fraction of what a big GEMM reaches on that box", not
"fraction of silicon peak". On another CPU pass ``peak_flops_per_s`` measured there (the matmul probe
of :mod:`scaling_planner.measure.probes`, e.g. its ``median``) with ``peak_source`` saying so; MFU is
then the fraction of the achievable GEMM rate. Small models on CPU spend much of the step in
elementwise ops, softmax, layer norms and the optimizer, so expect low values.

Imports nothing heavy at module level: torch (``torch.cuda.synchronize``) and the NVML sampler
(:class:`scaling_planner.measure.nvml.NvmlSampler`) load inside the methods that need them; without
them the meter runs, just without synchronisation or power sampling.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base.checks import positive_number
from ..base.errors import InputError, MeasurementError
from ..simulate.flops import FLOPS_CONVENTION
from .models import MfuReport


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def _device_kind(device: str) -> str:
    kind = str(device).split(":", 1)[0].strip().lower()
    if kind not in ("cpu", "cuda"):
        raise InputError("device", f"must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    return kind


def _cuda_index(device: str) -> int:
    _, _, idx = str(device).partition(":")
    if not idx:
        return 0
    if not idx.isdigit():
        raise InputError("device", f"must be 'cuda' or 'cuda:<index>', got {device!r}")
    return int(idx)


def _cuda_name(device: str) -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(_cuda_index(device))
    except Exception:  # no torch, no CUDA build, no device: the name is only informative
        return None


def _resolve_peak(peak_flops_per_s, peak_source, profile, device_kind, device_name, dtype):
    """(peak FLOP/s or None, where it came from, profile name or None)."""
    from ..hardware.profiles import HardwareProfile, get_profile, profile_for_nvml_name

    prof = None
    if isinstance(profile, HardwareProfile):
        prof = profile
    elif profile is not None:
        prof = get_profile(str(profile))
    elif device_kind == "cpu":
        prof = get_profile("cpu")
    elif device_name:
        prof = profile_for_nvml_name(device_name)
    name = prof.name if prof is not None else None

    if peak_flops_per_s is not None:
        peak = positive_number("peak_flops_per_s", peak_flops_per_s)
        return peak, peak_source or "given by the caller (peak_flops_per_s)", name
    if prof is None:
        why = (f"no hardware profile matches device name {device_name!r}" if device_name
               else "no device name and no profile given")
        return None, f"none: {why}; pass profile= or peak_flops_per_s=", None
    peak = prof.peak_flops_per_s(dtype)  # InputError naming the supported dtypes
    nominal = " (NOMINAL, see hardware_profiles/cpu.yaml)" if prof.name == "cpu" else ""
    return peak, f"profile {prof.name}: dense {dtype} peak{nominal}", name


class MfuMeter:
    """Times a training loop and reports tokens/s, model FLOP/s and MFU (:class:`MfuReport`).

    Use as a context manager or as a callback::

        meter = MfuMeter(cfg.flops_per_token(), device="cpu", dtype="fp32")
        with meter:                      # or meter.start() ... meter.stop()
            for batch in batches:
                train_step(batch)
                meter.step(tokens_in_batch)
        report = meter.report()

    Timing: the window opens at the end of the ``warmup_steps``-th :meth:`step` call (at
    :meth:`start`, or construction if start is never called, when ``warmup_steps`` is 0) and closes
    at the last :meth:`step` call, so work after the last step (evaluation, checkpoints) is not
    timed. ``steps`` and ``tokens`` in the report are those of the timed window.

    Peak: ``peak_flops_per_s`` when given (``peak_source`` says where it came from, e.g. a matmul
    probe); else the dense peak for ``dtype`` of ``profile`` (a name or a HardwareProfile); else of
    the ``cpu`` profile on a CPU, or of the profile matching the CUDA device name. With no peak the
    report has ``mfu`` None and ``peak_source`` says why.

    On CUDA each :meth:`step` calls ``torch.cuda.synchronize`` first (``synchronize=False`` turns it
    off, e.g. when the loop already syncs through ``loss.item()``), so the clock sees finished work.
    NVML: when ``nvml_index`` is given, or the device is CUDA (index from ``cuda:<i>``; that is the
    CUDA ordinal, which equals the NVML index unless ``CUDA_VISIBLE_DEVICES`` reorders devices),
    power and utilisation are sampled every ``sample_interval_s`` over the timed window on a
    background thread (:class:`~scaling_planner.measure.nvml.NvmlSampler`); a missing pynvml or GPU
    only leaves those fields empty. ``nvml_index=-1`` turns sampling off.
    """

    def __init__(self, flops_per_token: float, *, peak_flops_per_s: float | None = None, profile: Any = None,
                 device: str = "cpu", dtype: str = "fp32", nvml_index: int | None = None,
                 sample_interval_s: float = 0.5, convention: str = FLOPS_CONVENTION, warmup_steps: int = 1,
                 peak_source: str | None = None, synchronize: bool | None = None,
                 device_name: str | None = None, clock: Callable[[], float] = time.perf_counter):
        self.flops_per_token = positive_number("flops_per_token", flops_per_token)
        self.device = str(device)
        self._kind = _device_kind(self.device)
        self.dtype = str(dtype)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise InputError("warmup_steps", f"must be a whole number >= 0, got {warmup_steps!r}")
        self.warmup_steps = warmup_steps
        self.sample_interval_s = positive_number("sample_interval_s", sample_interval_s)
        self.convention = str(convention)
        self.device_name = device_name or (_cpu_name() if self._kind == "cpu" else _cuda_name(self.device))
        self.peak_flops_per_s, self.peak_source, self.profile = _resolve_peak(
            peak_flops_per_s, peak_source, profile, self._kind, self.device_name, self.dtype)
        self._synchronize = (self._kind == "cuda") if synchronize is None else bool(synchronize)
        if nvml_index is None and self._kind == "cuda":
            nvml_index = _cuda_index(self.device)
        if nvml_index is not None and (isinstance(nvml_index, bool) or not isinstance(nvml_index, int)
                                       or nvml_index < -1):
            raise InputError("nvml_index", f"must be a GPU index >= 0 (or -1 for no sampling), got {nvml_index!r}")
        self.nvml_index = None if nvml_index in (None, -1) else nvml_index
        self._clock = clock
        self._t_open = clock()
        self._steps_seen = 0
        self._t_window: float | None = None
        self._t_last: float | None = None
        self._timed_steps = 0
        self._timed_tokens = 0
        self._sampler = None
        self._nvml: dict[str, Any] | None = None
        self._stopped = False
        if self.warmup_steps == 0:
            self._t_window = self._t_open

    # ---- control ------------------------------------------------------------------------------
    def __enter__(self) -> MfuMeter:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def start(self) -> MfuMeter:
        """(Re)start the clock before the first step; opens the window now when ``warmup_steps`` is 0."""
        if self._steps_seen:
            raise MeasurementError("MfuMeter.start() after step(): start the meter before the first step")
        self._t_open = self._clock()
        if self.warmup_steps == 0:
            self._open_window(self._t_open)
        return self

    def step(self, tokens: int) -> None:
        """Mark the end of one optimizer step that processed ``tokens`` tokens on this device."""
        if self._stopped:
            raise MeasurementError("MfuMeter.step() after stop()")
        n = positive_number("tokens", tokens, integer=True)
        if self._synchronize:
            self._sync()
        now = self._clock()
        self._steps_seen += 1
        if self._steps_seen <= self.warmup_steps:
            if self._steps_seen == self.warmup_steps:
                self._open_window(now)
            return
        if self._t_window is not None and self._sampler is None and self.nvml_index is not None:
            self._start_sampler()  # warmup_steps == 0 without start(): sample from the first step on
        self._timed_steps += 1
        self._timed_tokens += int(n)
        self._t_last = now

    def stop(self) -> None:
        """Close the meter and stop NVML sampling (idempotent). :meth:`report` calls it."""
        if self._stopped:
            return
        self._stopped = True
        if self._sampler is not None:
            try:
                self._nvml = self._sampler.stop()
            except Exception as exc:  # the sampler promises not to raise; never let it break training
                self._nvml = {"samples": 0, "reason": f"sampler stop failed: {type(exc).__name__}: {exc}"}

    # ---- results ------------------------------------------------------------------------------
    @property
    def timed_steps(self) -> int:
        return self._timed_steps

    @property
    def nvml_summary(self) -> dict[str, Any] | None:
        """What the NVML sampler returned (None when there was no sampling), after :meth:`stop`."""
        return self._nvml

    def report(self) -> MfuReport:
        """Stop the meter and summarise the timed window.

        Raises :class:`MeasurementError` when no step was timed (all were warm-up) or no time passed.
        """
        self.stop()
        if self._timed_steps == 0 or self._t_last is None or self._t_window is None:
            raise MeasurementError(
                f"MFU meter: {self._steps_seen} step(s) seen, {self.warmup_steps} of them warm-up; "
                "need at least one timed step after the warm-up")
        elapsed_s = self._t_last - self._t_window
        if not elapsed_s > 0:
            raise MeasurementError(f"MFU meter: the timed window lasted {elapsed_s} s; the clock did not advance")
        tokens_per_s = self._timed_tokens / elapsed_s
        achieved = self.flops_per_token * tokens_per_s
        nv = self._nvml or {}
        return MfuReport(
            device=self.device, device_name=self.device_name, profile=self.profile, dtype=self.dtype,
            steps=self._timed_steps, tokens=self._timed_tokens, elapsed_s=elapsed_s, tokens_per_s=tokens_per_s,
            flops_per_token=self.flops_per_token, flops_convention=self.convention,
            achieved_flops_per_s=achieved, peak_flops_per_s=self.peak_flops_per_s, peak_source=self.peak_source,
            mfu=achieved / self.peak_flops_per_s if self.peak_flops_per_s else None,
            power_w_mean=nv.get("power_w_mean"), utilization_gpu_pct_mean=nv.get("utilization_gpu_pct_mean"),
            tensor_active_pct_mean=nv.get("tensor_active_pct_mean"), nvml_samples=int(nv.get("samples") or 0),
        )

    # ---- internals ----------------------------------------------------------------------------
    def _open_window(self, now: float) -> None:
        self._t_window = now
        if self.nvml_index is not None and self._sampler is None:
            self._start_sampler()

    def _start_sampler(self) -> None:
        try:
            from .nvml import NvmlSampler
        except ImportError as exc:
            self._sampler = None
            self._nvml = {"samples": 0, "reason": f"no NVML sampler ({exc})"}
            self.nvml_index = None
            return
        try:
            self._sampler = NvmlSampler(self.nvml_index, self.sample_interval_s)
            self._sampler.start()
        except Exception as exc:
            self._sampler = None
            self._nvml = {"samples": 0, "reason": f"sampler did not start: {type(exc).__name__}: {exc}"}
            self.nvml_index = None

    def _sync(self) -> None:
        try:
            import torch

            torch.cuda.synchronize(self.device if self._kind == "cuda" else None)
        except Exception as exc:
            raise MeasurementError(f"torch.cuda.synchronize({self.device}) failed: {exc}") from exc
