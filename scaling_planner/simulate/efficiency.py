"""Achieved efficiency of kernels and collectives as a function of their size, from a hardware profile.

One curve per hardware profile, derived only from the profile's own numbers, never tuned per case:

* **GEMM** (``gemm_time_s``): a roofline with a fixed per-kernel cost,
  ``t = max(F / (f_mm x peak), bytes / (eta_mem x BW_hbm)) + t_kernel``, where ``f_mm`` is the
  profile's ``achievable_matmul_fraction`` (what a large bf16 GEMM reaches; a measurement replaces
  it), ``bytes = 2 (MK + KN + MN)`` the operand traffic. The achieved fraction of peak therefore rises
  with the GEMM's size and arithmetic intensity and saturates at ``f_mm`` -- the shape of Calculon's
  efficiency-vs-op-size tables (Isaev et al. SC'23), written as a closed form so it applies to any
  accelerator. ``t_kernel`` (launch + tail-wave cost, ~ a few microseconds on current GPUs) is what
  makes small GEMMs inefficient.
* **Memory-bound kernels** (layernorm, softmax, dropout, activations, optimizer):
  ``bytes / (eta_mem x BW_hbm) + t_kernel``.
* **Collectives** (ring, nccl-tests bus-bandwidth convention): ``latency + volume x factor /
  (eta_link x BW_link)`` with factor ``2(n-1)/n`` for all-reduce, ``(n-1)/n`` for reduce-scatter,
  all-gather and all-to-all, 1 for point-to-point.

The universal constants below are properties of the software stack (cuBLAS / NCCL / PyTorch), not of a
particular model or cluster; they were set once against the published Megatron-LM A100 runs together
(Korthikanti et al. 2022 Table 5, PTD-P) and are used unchanged for every profile. MT-NLG (DeepSpeed's
pipeline engine, ``training.step_time(pipeline_engine="deepspeed")``) was not used to set them: it stays
16-19 % slower than predicted, a residual documented in ``tests/test_training_validation.py``.
"""

from __future__ import annotations

import math

import numpy as np

from ..base.errors import InputError
from ..base.units import TERA

# Fraction of HBM bandwidth the elementwise kernels of a PyTorch training step reach (STREAM-like
# kernels reach 0.85-0.9; unfused layernorm/softmax/dropout less).
MEMORY_EFFICIENCY = 0.75
# Fixed cost per kernel of a training step (eager launch from Python, prologue/epilogue, last partial
# wave), seconds.
KERNEL_OVERHEAD_S = 20e-6
# Fixed cost of one kernel in an inference engine that launches from C++ or CUDA graphs (launch,
# prologue, last partial wave): a few microseconds on A100/H100; 3 us is a prior. The serving model's
# default (a different software path from training's eager Python launches, hence a different figure).
ENGINE_KERNEL_OVERHEAD_S = 3e-6
# Fraction of the link's one-direction bandwidth NCCL reaches as bus bandwidth on the 10-100 MB
# messages of tensor parallelism (NVSwitch: nccl-tests ~230 of 300 GB/s at 1 GB, less at 10-100 MB
# and while compute kernels share the SMs; Calculon's A100 system file also uses 0.6) and on the
# large gradient buckets of data parallelism over InfiniBand (~85 % of line rate).
INTRA_NODE_LINK_EFFICIENCY = 0.60
INTER_NODE_LINK_EFFICIENCY = 0.85
# Fused attention kernels (FlashAttention-2) reach this share of the GEMM fraction.
FLASH_ATTENTION_RELATIVE = 0.75
# An FP8 GEMM reaches this share of the bf16 GEMM's *fraction of peak*: cuBLAS 12.9 on Hopper runs
# large FP8 matmuls 1.75x as fast as BF16 on a 2x higher peak (NVIDIA technical blog "Boosting
# Matrix Multiplication Speed and Flexibility with NVIDIA cuBLAS 12.9", 2025: "a 1.75x speedup for
# large matmuls ... compared to the BF16 baseline"), so 1.75 / 2.
FP8_GEMM_RELATIVE = 1.75 / 2.0
# Bytes moved per element to quantise one GEMM operand for Transformer Engine's FP8 recipe: read the
# 16-bit tensor (2), write its FP8 copy (1) and the FP8 transpose the other GEMM of the backward pass
# needs (1); applied to every linear layer's input (forward) and output gradient (backward).
FP8_CAST_BYTES = 4.0
PRECISIONS = ("bf16", "fp8", "fp32")
# bytes per element of the activations, weights and gradients a step moves: 16-bit for bf16 and fp8
# mixed precision (Transformer Engine keeps activations in 16 bits between its FP8 GEMMs), 32-bit for
# fp32 training (what a CPU trains in: without bf16 matrix units, bf16 autocast is slower there)
ELEMENT_BYTES = {"bf16": 2.0, "fp8": 2.0, "fp32": 4.0}


def measured_dtype(precision: str) -> str:
    """The dtype of a run's GEMMs outside fp8 (attention core, logits) and so of the matmul probe that
    calibrates a run at ``precision``: bf16 for bf16 and fp8 (fp8 scales the bf16 fraction), fp32 for fp32."""
    return "fp32" if precision == "fp32" else "bf16"


def check_measured_matmul(profile, flops_per_s, field: str = "measured_matmul_flops_per_s",
                          dtype: str = "bf16") -> float:
    """A measured ``dtype`` matmul rate per device, or InputError: not finite and > 0, or above the
    profile's dense peak of that dtype (no GEMM beats the peak: the number is per node, sparse, another
    dtype, or the profile is the wrong device)."""
    peak = float(profile.peak_flops_per_s(dtype))
    try:
        rate = float(flops_per_s)
    except (TypeError, ValueError):
        raise InputError(field, f"must be a number of FLOP/s, got {flops_per_s!r}") from None
    if not (math.isfinite(rate) and rate > 0):
        raise InputError(field, f"must be a finite rate > 0, got {flops_per_s!r}")
    if rate > peak:
        raise InputError(field, f"{rate / TERA:.4g} TFLOP/s is above the dense {dtype} peak of "
                                f"{getattr(profile, 'name', 'the device')} ({peak / TERA:.4g} TFLOP/s): a measured "
                                f"matmul cannot beat the peak; give TFLOP/s per device, dense {dtype}, or check --gpu")
    return rate


class DeviceRates:
    """The rates one profile implies, at one precision; ``achievable_fraction`` may be measured (a matmul
    rate of :func:`measured_dtype`)."""

    def __init__(self, profile, precision: str = "bf16", achievable_flops_per_s: float | None = None):
        self.name = getattr(profile, "name", "device")
        self.precision = precision
        self.element_bytes = ELEMENT_BYTES.get(precision, 2.0)
        self.peak_flops_per_s = float(profile.peak_flops_per_s(precision))
        # the GEMMs outside the linear layers (attention core, logits): 16-bit in mixed precision, fp32 in fp32
        self.peak_other_flops_per_s = float(profile.peak_flops_per_s(measured_dtype(precision)))
        prior = float(profile.achievable_matmul_fraction)
        if achievable_flops_per_s is not None:
            # a measured GEMM rate of the calibrating dtype; the same fraction scales to fp8 if asked
            dtype = measured_dtype(precision)
            check_measured_matmul(profile, achievable_flops_per_s, dtype=dtype)
            self.achievable_fraction = float(achievable_flops_per_s) / float(profile.peak_flops_per_s(dtype))
            self.source = (f"measured matmul {achievable_flops_per_s / TERA:.1f} TFLOP/s" if dtype == "bf16" else
                           f"measured {dtype} matmul {achievable_flops_per_s / TERA:.4g} TFLOP/s")
        else:
            self.achievable_fraction = prior
            self.source = f"profile prior achievable_matmul_fraction={prior:g}"
        # Linear layers run at the precision's peak (FP8: Transformer Engine's recipe, at the FP8 share of
        # the bf16 fraction); the attention core and the logits stay in bf16 (Megatron-Core keeps
        # the output layer and the fused attention kernels in 16 bits under --fp8-format).
        fp8 = precision == "fp8"
        self.linear_flops_per_s = (self.achievable_fraction * self.peak_flops_per_s
                                   * (FP8_GEMM_RELATIVE if fp8 else 1.0))
        self.other_flops_per_s = self.achievable_fraction * self.peak_other_flops_per_s
        self.cast_bytes_per_element = FP8_CAST_BYTES if fp8 else 0.0
        self.memory_bytes = float(profile.memory_bytes)
        self.hbm_bytes_per_s = float(profile.memory_bandwidth_bytes_per_s)
        self.devices_per_node = int(profile.devices_per_node)
        self.intra_bytes_per_s = float(profile.intra_node_bandwidth_bytes_per_s)
        self.inter_bytes_per_s = float(profile.inter_node_bandwidth_bytes_per_s)
        self.intra_latency_s = float(profile.intra_node_latency_s)
        self.inter_latency_s = float(profile.inter_node_latency_s)


def gemm_time_s(rates: DeviceRates, m, n, k, count=1.0, kernels=1.0, bytes_per_element=None, relative=1.0,
                linear=True):
    """Time of ``count`` GEMMs of shape (m x k) @ (k x n) issued as ``kernels`` kernels (a batched
    GEMM is one kernel); broadcasts over arrays. ``linear`` GEMMs (a linear layer's weights) run at
    the training precision's rate, the others (attention core, logits) at the 16-bit rate (fp32 in
    fp32 training). Operands of ``bytes_per_element`` (default: the precision's element width)."""
    flops = 2.0 * m * n * k
    width = rates.element_bytes if bytes_per_element is None else bytes_per_element
    traffic = width * (m * k + k * n + m * n)
    compute = flops / (relative * (rates.linear_flops_per_s if linear else rates.other_flops_per_s))
    memory = traffic / (MEMORY_EFFICIENCY * rates.hbm_bytes_per_s)
    return count * np.maximum(compute, memory) + kernels * KERNEL_OVERHEAD_S


def gemm_efficiency(rates: DeviceRates, m, n, k):
    """Achieved fraction of the dense peak for one GEMM (the curve, for reports and tests)."""
    return 2.0 * m * n * k / (gemm_time_s(rates, m, n, k) * rates.peak_flops_per_s)


def memory_time_s(rates: DeviceRates, nbytes, kernels=1.0):
    """Streaming kernels moving ``nbytes`` in total through HBM."""
    return nbytes / (MEMORY_EFFICIENCY * rates.hbm_bytes_per_s) + kernels * KERNEL_OVERHEAD_S


def link(rates: DeviceRates, inter):
    """(bandwidth bytes/s, latency s) of the tier a group uses; ``inter`` is a bool array."""
    bw = np.where(inter, rates.inter_bytes_per_s * INTER_NODE_LINK_EFFICIENCY,
                  rates.intra_bytes_per_s * INTRA_NODE_LINK_EFFICIENCY)
    lat = np.where(inter, rates.inter_latency_s, rates.intra_latency_s)
    return bw, lat


def ring_all_reduce_s(nbytes, n, bytes_per_s, latency_s):
    """Ring all-reduce of ``nbytes`` over ``n`` ranks: ``latency + 2(n-1)/n · S / BW`` with ``BW`` the
    effective bus bandwidth (nccl-tests convention, formula sheet §5.2 "Collectives"); 0 for n = 1.
    The one copy of the formula: training (:func:`all_reduce_time_s`) and serving use it."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = latency_s + np.asarray(nbytes, dtype=float) * 2.0 * (n - 1) / n / bytes_per_s
    return np.where(n > 1, t, 0.0)


def all_reduce_time_s(rates: DeviceRates, nbytes, n, inter):
    bw, lat = link(rates, inter)
    return ring_all_reduce_s(nbytes, n, bw, lat)


def gather_time_s(rates: DeviceRates, nbytes, n, inter):
    """All-gather, reduce-scatter or all-to-all of ``nbytes`` (the full buffer) over ``n`` ranks."""
    n = np.asarray(n, dtype=float)
    bw, lat = link(rates, inter)
    return np.where(n > 1, lat + nbytes * (n - 1) / n / bw, 0.0)


def p2p_time_s(rates: DeviceRates, nbytes, inter):
    bw, lat = link(rates, inter)
    return lat + nbytes / bw
