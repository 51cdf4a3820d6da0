"""Training the planned model on a cluster: the memoised training simulator
(:func:`scaling_planner.simulate.training.estimate.simulate_training` on the shape of N parameters), the GPU
count when none is given (the smallest power-of-two multiple of a node that finishes within the
target days), and the plan's ``training`` block built from a simulation.

The simulator, the architectures and the energy model load inside the functions (cold start of
``planner recommend``).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from ..base.errors import InfeasibleError
from ..base.units import SECONDS_PER_DAY
from ..laws.chinchilla import FLOPS_PER_PARAM_TOKEN
from ..simulate.results import TrainingEstimate

MAX_NODE_DOUBLINGS = 14  # default GPU count at most 2^14 nodes (131,072 GPUs at 8 per node)
MAX_PLAUSIBLE_MFU = 0.8  # no simulated layout exceeds this: a count that would need more is not simulated
GUESS_MFU_OF_MATMUL = 0.8  # first guess of a run's MFU as a share of the achievable matmul fraction


class TrainingChoice(TrainingEstimate):
    """The plan's training block: the simulator's :class:`~scaling_planner.simulate.results.TrainingEstimate`
    of the chosen model on its GPUs (the same model ``planner simulate`` prints), plus how the plan came to it."""

    gpus_source: str = Field(description="'--gpus' or how the count was chosen")
    shape: str = Field(description="the transformer shape simulated for N")
    mfu_source: Literal["explicit", "calibration", "calibration matmul", "profile"] = Field(
        description="where the MFU came from: --mfu, a calibration training record's MFU, a calibration probe "
                    "record's matmul rate, or the profile (simulated)")
    mfu_record: str | None = Field(None, description="the calibration record used (its id)")
    mfu_provenance: str = Field(
        description="the same as a sentence: 'measured' (--mfu), 'measured: <calibration record>', 'simulated with "
        "the measured matmul rate of <calibration record>' or 'profile default' (simulated from the profile)")


class Simulator:
    """Simulates (N, D) on a profile, memoised; a layout that cannot fit is ``None``.

    ``precision`` defaults to the profile's training precision (bf16, fp32 on a CPU); ``mfu`` replaces
    the simulator's predicted MFU; ``matmul_flops_per_s`` (a measured GEMM rate of the dtype that
    calibrates the precision: :func:`~scaling_planner.simulate.efficiency.measured_dtype`) replaces the
    profile's achievable-matmul prior; ``efficiency`` is ``"realised"`` (end to
    end, the default) or ``"tuned"``. ``calls`` counts the simulations run."""

    def __init__(self, profile, price, mfu, precision=None, matmul_flops_per_s=None, *, efficiency="realised",
                 measured_source=None):
        self.profile, self.price, self.mfu = profile, price, mfu
        self.precision = precision or profile.training_precision
        self.matmul_flops_per_s = matmul_flops_per_s
        self.efficiency, self.measured_source = efficiency, measured_source
        self.cache: dict = {}
        self.calls = 0

    def __call__(self, N: float, D: float, G: int):
        key = (float(N), float(D), int(G))
        if key not in self.cache:
            from ..simulate.architecture import shape_for_params
            from ..simulate.training.estimate import simulate_training

            self.calls += 1
            try:
                self.cache[key] = simulate_training(
                    shape_for_params(N), D, self.profile, int(G), params=N, precision=self.precision,
                    price_usd_per_device_hour=self.price, measured_mfu=self.mfu,
                    measured_matmul_flops_per_s=self.matmul_flops_per_s, top=0, efficiency=self.efficiency,
                    measured_source=self.measured_source)
            except InfeasibleError:
                self.cache[key] = None
        return self.cache[key]


def node_size(profile) -> int:
    """Devices per node of the profile: the unit of a GPU count."""
    return int(profile.devices_per_node)


def choose_gpus(sim: Simulator, N: float, D: float, target_days: float):
    """Smallest power-of-two multiple of a node that trains (N, D) within ``target_days``.

    Returns (G, result, met); ``met`` is False when even the largest count considered
    (2^MAX_NODE_DOUBLINGS nodes) does not finish in time, in which case that count is returned.
    Raises InfeasibleError when no count considered fits the model in memory.

    The search starts at the count C = 6·N·D needs at a guessed MFU (fewer simulations), jumps up
    by the doublings the simulated wall-clock says are missing, then halves while half the GPUs
    still finish in time.
    """
    node = node_size(sim.profile)
    peak = sim.profile.peak_flops_per_s(sim.precision)
    # first guess of the MFU: GUESS_MFU_OF_MATMUL x the profile's achievable matmul fraction (0.64 on an
    # H100); the search below corrects it, a close guess only saves simulations (startup time)
    guess_mfu = sim.mfu or GUESS_MFU_OF_MATMUL * float(sim.profile.achievable_matmul_fraction)
    est = FLOPS_PER_PARAM_TOKEN * N * D / (peak * guess_mfu * target_days * SECONDS_PER_DAY)
    k = int(min(MAX_NODE_DOUBLINGS, max(0, math.ceil(math.log2(max(est / node, 1.0))))))

    def ok(r):
        return r is not None and r.training.wall_clock_days <= target_days

    r = sim(N, D, node * 2**k)
    while not ok(r) and k < MAX_NODE_DOUBLINGS:
        # too slow: jump by the doublings the simulated wall-clock says are missing (at least one)
        step = 1 if r is None else max(1, math.ceil(math.log2(r.training.wall_clock_days / target_days)))
        k = min(MAX_NODE_DOUBLINGS, k + step)
        r = sim(N, D, node * 2**k)
    if not ok(r):
        if r is None:
            raise InfeasibleError(f"a {N / 1e9:.3g}B-parameter model fits on no GPU count up to "
                                  f"{node * 2**k} x {sim.profile.name}")
        return node * 2**k, r, False
    flops = r.compute_flops
    while k > 0:
        # half the GPUs cannot finish in time even at MAX_PLAUSIBLE_MFU: skip simulating it (startup time)
        if sim.mfu is None and flops / (node * 2 ** (k - 1) * peak * MAX_PLAUSIBLE_MFU) > target_days * SECONDS_PER_DAY:
            break
        r2 = sim(N, D, node * 2 ** (k - 1))
        if not ok(r2):
            break
        k, r = k - 1, r2
    return node * 2**k, r, True


def training_choice(res, gpus_source: str, provenance: dict) -> TrainingChoice:
    """The plan's training block from a simulation ``res``; ``provenance``:
    :func:`~scaling_planner.calibration.choice.mfu_provenance`."""
    m = res.model
    return TrainingChoice(**res.training.model_dump(), gpus_source=gpus_source, **provenance,
                          shape=f"{m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads, "
                                f"{m.params / 1e9:.3g}B params ({m.shape_source})")
