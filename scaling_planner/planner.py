"""Objective -> plan: ties the scaling laws and the training simulator together.

An objective picks the training compute C (law level), the law's compute-optimal allocation
(Hoffmann Eq. 4) turns C into a model size N and tokens D, and the training simulator
(:func:`scaling_planner.simulate.training.simulate_training`) turns (N, D, GPU, G) into a layout,
MFU, wall-clock, GPU-hours, cost and energy:

- ``target_loss`` L: C = the minimal compute that reaches L (closed form, Besiroglu 2024);
- ``budget_flops`` C: C itself (the lowest loss C buys);
- ``budget_usd`` X / ``budget_gpu_hours`` H: the C whose *simulated* cost / GPU-hours equals the
  budget, by bisection in log C over the simulator (cost is not linear in C: MFU, layout and
  goodput change with the model and the cluster);
- a fixed cluster ``gpus`` G and ``deadline_days`` T: the largest C that G GPUs train within T
  (bisection in log C over the simulated wall-clock).

Without ``gpus``, the GPU count is the smallest power-of-two multiple of a node that finishes the
run within the deadline (default :data:`DEFAULT_TARGET_DAYS` days). The plan carries the
alternatives a user would weigh (compute-optimal, over-trained smaller models at the same loss,
inference-optimal with a lifetime demand) and the law's uncertainty.

numpy, pydantic and the law are imported at the top; the simulator, the profiles and the energy
model load inside the functions that use them, so importing this module stays cheap.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from .errors import InfeasibleError, InputError
from .laws.chinchilla import (
    FLOPS_PER_PARAM_TOKEN,
    ChinchillaLaw,
    compute_for_loss,
    frontier_loss,
    loss,
    near_optimal_params_range,
    optimal_params,
    optimal_tokens,
    tokens_for_loss_at_params,
)
from .planning.calibration import CalibrationUse
from .planning.data_constrained import DataConstrained
from .planning.moe import MoEChoice
from .planning.search import bisect_log
from .planning.serving import ServingChoice

NEAR_OPTIMAL_REL_TOL = 0.005  # "within 0.5 % of the minimum loss" (marin issue #4447, reference §4)
NEAR_OPTIMAL_BISECTIONS = 64  # halvings of the ±60 (log N) bracket: 120/2^64 ~ 7e-18, below double precision
DEFAULT_GPU = "h100-sxm"
DEFAULT_TARGET_DAYS = 90.0  # wall-clock the default GPU count aims at
MAX_NODE_DOUBLINGS = 14  # default GPU count at most 2^14 nodes (131,072 GPUs at 8 per node)
MIN_COMPUTE_FLOPS = 1e18  # the smallest run the planner sizes (~70M params on ~2B tokens)
MAX_COMPUTE_FLOPS = 1e29  # the largest (far beyond any run to date)
INFERENCE_MFU = 0.25  # assumed model-FLOP utilisation of serving (prefill and decode), stated in the plan
INFERENCE_FLOPS_PER_PARAM_TOKEN = 2.0  # forward pass only
OVERTRAIN_SHRINK = (2.0, 10.0)  # over-trained alternatives: models 2x and 10x smaller than optimal
DC_CHINCHILLA_ALTERNATIVE = "chinchilla allocation (ignores the cap)"
BISECTION_STEPS = 40  # log C halvings: ln(1e11)/2^40 ~ 2e-11 relative, far below the simulator's resolution
SECONDS_PER_DAY = 86400.0
PRECISION = "bf16"  # the training precision the planner simulates
MAX_PLAUSIBLE_MFU = 0.8  # no simulated layout exceeds this: a count that would need more is not simulated
GUESS_MFU_OF_MATMUL = 0.8  # first guess of a run's MFU as a share of the achievable matmul fraction


# =================================================================================================
# Output models
# =================================================================================================

class Band(BaseModel):
    """Percentiles over the law's parameter draws."""

    p10: float
    p50: float
    p90: float


class ModelChoice(BaseModel):
    params: float = Field(description="parameters N (all, embeddings included)")
    tokens: float = Field(description="training tokens D")
    tokens_per_param: float
    loss: float = Field(description="predicted final loss L(N, D) under the point law (with unique_tokens: "
                                    "L(N, D, U) with repeated data, Muennighoff 2023)")
    loss_band: Band | None = Field(None, description="L(N, D) over the law's draws")
    params_near_optimal_low: float = Field(description="smallest N within rel_tol of the minimal loss at this compute")
    params_near_optimal_high: float
    near_optimal_rel_tol: float


class LawInfo(BaseModel):
    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str
    draws: int


class TrainingChoice(BaseModel):
    """The simulator's estimate for training the chosen model (best layout on ``gpus`` x ``gpu``)."""

    gpu: str
    gpus: int
    gpus_source: str = Field(description="'--gpus' or how the count was chosen")
    precision: str
    layout: dict = Field(description="the best parallel layout (TP, PP, DP, micro-batching, recompute, ZeRO)")
    shape: str = Field(description="the transformer shape simulated for N")
    model_flops: float = Field(description="the simulator's model FLOPs of the run (Megatron count, a count)")
    peak_flops_per_s: float = Field(description="dense peak per GPU at this precision (a rate)")
    mfu: float = Field(description="model FLOPs utilisation (model FLOPs, no recompute, dense peak)")
    mfu_provenance: str = Field(
        description="'measured' (--mfu), 'measured: <calibration record>', 'simulated with the measured matmul "
        "rate of <calibration record>' or 'profile default' (simulated from the profile)")
    predicted_mfu: float = Field(description="the simulator's MFU for this layout, before any override")
    step_time_s: float
    tokens_per_s: float
    ideal_time_s: float = Field(description="model_flops / (gpus x peak x mfu): failure-free time")
    goodput: float
    wall_clock_days: float = Field(description="ideal time / goodput")
    gpu_hours: float
    price_usd_per_gpu_hour: float
    price_source: str
    cost_usd: float
    energy_kwh: float = Field(description="facility energy (PUE and host power included)")
    co2_kg: float
    device_power_w: float
    host_w_per_device: float
    pue: float
    grid_kg_co2_per_kwh: float
    notes: list[str] = []


class Alternative(BaseModel):
    """A model a user would weigh against the plan, reaching the same loss (or the lifetime optimum)."""

    name: str
    description: str
    params: float
    tokens: float | None = Field(None, description="None: this size cannot reach the loss under the law")
    tokens_per_param: float | None = None
    loss: float
    compute_flops: float | None = Field(None, description="training compute 6·N·D (FLOPs)")
    gpus: int | None = None
    wall_clock_days: float | None = None
    gpu_hours: float | None = None
    cost_usd: float | None = None
    mfu: float | None = None
    inference_flops: float | None = Field(None, description="2·N per token over the lifetime demand")
    inference_cost_usd: float | None = Field(
        None, description="serving cost over the demand (serving simulator) or, without one, 2·N FLOPs per token at "
        "an assumed MFU")
    serving_devices: int | None = Field(None, description="devices of the fleet that serves the demand")
    serving_cost_usd: float | None = Field(None, description="fleet cost per day x serving days")
    lifetime_flops: float | None = None
    lifetime_cost_usd: float | None = None
    note: str = ""


class Uncertainty(BaseModel):
    """What the spread of the law's parameters does to the plan."""

    draws: int
    compute_flops: Band | None = Field(None, description="compute each draw needs to reach the target")
    wall_clock_days: Band | None = Field(
        None, description="wall-clock scaled with each draw's compute at the plan's layout, GPUs and MFU")
    gpu_hours: Band | None = None
    cost_usd: Band | None = Field(None, description="cost scaled with each draw's compute at fixed layout and MFU")
    optimal_params: Band
    optimal_tokens: Band
    probability_target_met: float | None = Field(
        None, description="share of draws under which the planned N, D reach the target loss"
    )
    probability_within_budget: float | None = Field(
        None, description="share of draws whose compute-optimal model reaches the target within the planned compute"
    )
    scaling_note: str = ""


class Recommendation(BaseModel):
    """The plan: model, compute, training on the cluster, alternatives, uncertainty, provenance."""

    objective: str
    target_loss: float | None = None
    budget_flops: float | None = None
    budget_usd: float | None = None
    budget_gpu_hours: float | None = None
    deadline_days: float | None = None
    compute_flops: float = Field(description="training compute 6·N·D (FLOPs, a count)")
    model: ModelChoice
    training: TrainingChoice | None = None
    law: LawInfo
    uncertainty: Uncertainty | None = None
    alternatives: list[Alternative] = []
    inference_tokens: float | None = None
    inference_mfu: float | None = None
    data_constrained: DataConstrained | None = Field(
        None, description="with unique_tokens: epochs, effective data, loss under repetition (Muennighoff 2023)")
    serving: ServingChoice | None = Field(
        None, description="with tokens_per_day and serving_days: the plan's serving fleet and lifetime cost")
    moe: MoEChoice | None = Field(
        None, description="with experts: the compute-optimal fine-grained MoE at the same compute (Krajewski 2024)")
    calibration: CalibrationUse | None = Field(
        None, description="the calibration records the plan used (ids and what they measured), or why none")
    notes: list[str] = []


Plan = Recommendation


# =================================================================================================
# Helpers
# =================================================================================================

def _percentiles(v, qs):
    """numpy's default ("linear") percentiles of a 1-D array, by one sort: the value at rank
    q/100·(n − 1), interpolated between neighbours. ``np.percentile`` gives the same numbers but
    imports ``numpy.ma`` on first use (~10 ms of ``planner recommend``'s start-up)."""
    v = np.sort(v)
    pos = np.asarray(qs, dtype=float) / 100.0 * (v.size - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, v.size - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _band(values) -> Band:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    p10, p50, p90 = _percentiles(v, [10, 50, 90]) if v.size else (np.inf, np.inf, np.inf)
    return Band(p10=float(p10), p50=float(p50), p90=float(p90))


def _positive(value, field: str, *, maximum: float | None = None) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(field, f"must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0) or (maximum is not None and v > maximum):
        rng = f"(0, {maximum:g}]" if maximum is not None else "a positive, finite number"
        raise InputError(field, f"must be {rng}, got {value!r}")
    return v


def load_profile(name):
    """A hardware profile by name. Fast path: with no user profile directories configured, read
    only the built-in file ``<name>.yaml`` instead of validating every profile, with libyaml's
    safe loader where PyYAML has it (the same SafeLoader constructors, ~10x faster than the pure
    Python one); any problem falls back to the validated loader and its error messages."""
    import os

    from .hardware import profiles as hp

    if not isinstance(name, str):
        return name  # already a profile
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if not os.environ.get(hp.ENV_VAR, "").strip():
        try:
            path = hp.builtin_profiles_dir() / f"{key}.yaml"
        except InputError:
            path = None
        if path is not None and path.is_file():
            import yaml

            loader = getattr(yaml, "CSafeLoader", None)
            if loader is not None:
                try:
                    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # libyaml SafeLoader
                    return hp.profile_from_mapping(data, path, builtin=True)
                except (OSError, yaml.YAMLError, InputError):
                    pass
            return hp.load_profile_file(path, builtin=True)
    return hp.get_profile(name)


class _Simulator:
    """Simulates (N, D) on a profile, memoised; a layout that cannot fit is ``None``.

    ``mfu`` replaces the simulator's predicted MFU; ``matmul_flops_per_s`` (a measured bf16 GEMM
    rate) replaces the profile's achievable-matmul prior."""

    def __init__(self, profile, price, mfu, precision="bf16", matmul_flops_per_s=None):
        self.profile, self.price, self.mfu, self.precision = profile, price, mfu, precision
        self.matmul_flops_per_s = matmul_flops_per_s
        self.cache: dict = {}
        self.calls = 0

    def __call__(self, N: float, D: float, G: int):
        key = (float(N), float(D), int(G))
        if key not in self.cache:
            from .simulate.architecture import shape_for_params
            from .simulate.training import simulate_training

            self.calls += 1
            try:
                self.cache[key] = simulate_training(
                    shape_for_params(N), D, self.profile, int(G), params=N, precision=self.precision,
                    price_usd_per_hour=self.price, measured_mfu=self.mfu,
                    measured_matmul_flops_per_s=self.matmul_flops_per_s, top=0)
            except InfeasibleError:
                self.cache[key] = None
        return self.cache[key]


def _node(profile) -> int:
    return int(profile.devices_per_node)


def choose_gpus(sim: _Simulator, N: float, D: float, target_days: float):
    """Smallest power-of-two multiple of a node that trains (N, D) within ``target_days``.

    Returns (G, result, met); ``met`` is False when even the largest count considered
    (2^MAX_NODE_DOUBLINGS nodes) does not finish in time, in which case that count is returned.
    Raises InfeasibleError when no count considered fits the model in memory.
    """
    node = _node(sim.profile)
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


def _training_choice(res, gpus_source: str, profile, precision: str, provenance: str) -> TrainingChoice:
    from .simulate.energy import (
        DEFAULT_GRID_KG_CO2_PER_KWH,
        DEFAULT_HOST_W_PER_DEVICE,
        DEFAULT_PUE,
        DEFAULT_TRAINING_UTILIZATION,
        device_power_w,
    )

    t = res.training
    return TrainingChoice(
        gpu=t.gpu, gpus=t.gpus, gpus_source=gpus_source, precision=t.precision,
        layout=t.layout.model_dump(), shape=f"{res.model.n_layers} layers, d_model {res.model.d_model}, "
        f"{res.model.n_heads} heads, {res.model.params / 1e9:.3g}B params ({res.model.shape_source})",
        model_flops=res.compute_flops, peak_flops_per_s=float(profile.peak_flops_per_s(precision)),
        mfu=t.mfu, mfu_provenance=provenance,
        predicted_mfu=t.efficiency.predicted_mfu, step_time_s=t.step_time_s, tokens_per_s=t.tokens_per_s,
        ideal_time_s=t.ideal_time_s, goodput=t.goodput, wall_clock_days=t.wall_clock_days,
        gpu_hours=t.gpu_hours, price_usd_per_gpu_hour=t.price_usd_per_gpu_hour, price_source=t.price_source,
        cost_usd=t.cost_usd, energy_kwh=t.energy_kwh, co2_kg=t.co2_kg,
        device_power_w=float(device_power_w(profile.tdp_w, DEFAULT_TRAINING_UTILIZATION,
                                            getattr(profile, "idle_w", None))),
        host_w_per_device=DEFAULT_HOST_W_PER_DEVICE, pue=DEFAULT_PUE,
        grid_kg_co2_per_kwh=DEFAULT_GRID_KG_CO2_PER_KWH, notes=list(t.notes),
    )


# =================================================================================================
# The planner
# =================================================================================================

def recommend(
    law: ChinchillaLaw,
    *,
    target_loss: float | None = None,
    budget_flops: float | None = None,
    budget_usd: float | None = None,
    budget_gpu_hours: float | None = None,
    gpus: int | None = None,
    deadline_days: float | None = None,
    gpu=DEFAULT_GPU,
    price_usd_per_hour: float | None = None,
    mfu: float | None = None,
    inference_tokens: float | None = None,
    inference_mfu: float = INFERENCE_MFU,
    near_optimal_rel_tol: float = NEAR_OPTIMAL_REL_TOL,
    alternatives: bool = True,
    calibration=None,
    calibration_dir=None,
    unique_tokens: float | None = None,
    experts: int | None = None,
    top_k: int | None = None,
    tokens_per_day: float | None = None,
    serving_days: float | None = None,
    serving_options: dict | None = None,
) -> Recommendation:
    """The plan for one objective (module docstring). ``gpu=None`` plans at the level of the law
    only (no simulator: no training block, no alternatives' costs; FLOP objectives only).

    Raises InputError for a bad or contradictory request, InfeasibleError when no plan meets it
    (a budget too small for the smallest run, a deadline too short, a model that fits nowhere).

    ``calibration``: ``"latest"`` plans with the newest training MFU and bf16 matmul rate measured
    for the profile (in ``calibration_dir``, else ``$SCALING_PLANNER_CALIBRATION_DIR``, else
    ``~/.scaling-planner/calibration``), or give a :class:`~scaling_planner.calibration.CalibrationRecord`
    or a list of them; the plan's ``calibration`` says which records it used
    (:mod:`scaling_planner.planning.calibration`). An explicit ``mfu`` wins over a training record.

    ``unique_tokens`` U caps the unique data: compute is allocated by the Muennighoff 2023 law of
    repeated data instead of Hoffmann's Eq. 4, and the plan's ``data_constrained`` section reports
    epochs, effective data, the loss under repetition and the return of more epochs
    (:mod:`scaling_planner.planning.data_constrained`).

    ``experts`` X (and optionally ``top_k`` K) adds the plan's ``moe`` section: the compute-optimal
    fine-grained MoE at the same compute under Krajewski 2024 (total vs active parameters, tokens,
    loss against their dense row), simulated on the plan's GPUs where it fits
    (:mod:`scaling_planner.planning.moe`).

    ``tokens_per_day`` T and ``serving_days`` S (a serving demand; ``serving_options``: prompt_tokens,
    output_tokens, p99_ttft_s, p99_tpot_s, peak_factor, simulate, as for ``planner serve``) size the
    serving fleet of the plan and of each alternative with the serving simulator; lifetime cost =
    training + S days of serving (:mod:`scaling_planner.planning.serving`). T·S is the lifetime
    inference demand (``inference_tokens``, which may then be left out).
    """
    objectives = {"target_loss": target_loss, "budget_flops": budget_flops, "budget_usd": budget_usd,
                  "budget_gpu_hours": budget_gpu_hours}
    given = [k for k, v in objectives.items() if v is not None]
    if len(given) > 1:
        raise InputError("objective", f"give one objective, got {' and '.join(given)}")
    if not given:
        if gpus is None or deadline_days is None:
            raise InputError("objective", "give one of target_loss, budget_flops, budget_usd, budget_gpu_hours, "
                                          "or a fixed cluster (gpus and deadline_days)")
        objective = "deadline"
    else:
        objective = given[0]
    if target_loss is not None:
        try:
            target_loss = float(target_loss)
        except (TypeError, ValueError):
            raise InputError("target_loss", f"must be a number, got {target_loss!r}") from None
    budget_flops = _positive(budget_flops, "budget_flops")
    budget_usd = _positive(budget_usd, "budget_usd")
    budget_gpu_hours = _positive(budget_gpu_hours, "budget_gpu_hours")
    deadline_days = _positive(deadline_days, "deadline_days")
    price_usd_per_hour = _positive(price_usd_per_hour, "price")
    mfu = _positive(mfu, "mfu", maximum=1.0)
    inference_mfu = _positive(inference_mfu, "inference_mfu", maximum=1.0)
    if inference_tokens is not None:
        inference_tokens = _positive(inference_tokens, "inference_tokens")
    unique_tokens = _positive(unique_tokens, "unique_tokens")
    tokens_per_day = _positive(tokens_per_day, "tokens_per_day")
    serving_days = _positive(serving_days, "serving_days")
    if tokens_per_day is not None or serving_days is not None or serving_options:
        from .planning.serving import check_demand, lifetime_tokens

        serving_options = check_demand(tokens_per_day, serving_days, serving_options)
        if gpu is None:
            raise InputError("gpu", "a serving demand needs the serving simulator: give a GPU profile")
        inference_tokens = lifetime_tokens(tokens_per_day, serving_days, inference_tokens)
    if experts is not None:
        from .planning.moe import check

        experts, top_k = check(experts, top_k)
    elif top_k is not None:
        raise InputError("top_k", "needs experts (the number of routed experts)")
    if gpus is not None:
        if isinstance(gpus, bool) or not float(gpus).is_integer() or gpus < 1:
            raise InputError("gpus", f"must be a whole number >= 1, got {gpus!r}")
        gpus = int(gpus)
    if gpu is None and (objective in ("budget_usd", "budget_gpu_hours", "deadline")):
        raise InputError("gpu", f"objective {objective} needs the simulator: give a GPU profile")
    if calibration is None and calibration_dir is not None:
        raise InputError("calibration_dir", "is only read with calibration='latest'")
    if gpu is None and calibration is not None:
        raise InputError("calibration", "calibrates the training simulator: give a GPU profile")

    notes: list[str] = []
    profile = sim = cal_use = dc = None
    if unique_tokens is not None:
        from .planning.data_constrained import DataConstrainedMode

        dc = DataConstrainedMode(law, unique_tokens)

    def allocate(C):
        """(N, D) for compute C: Hoffmann Eq. 4, or the Muennighoff optimum under the unique-token cap."""
        if dc is not None:
            return dc.allocate(C)
        return float(optimal_params(law, C)), float(optimal_tokens(law, C))

    if gpu is not None:
        profile = load_profile(gpu)
        if gpus is not None and gpus > _node(profile) and gpus % _node(profile):
            raise InputError("gpus", f"must be <= {_node(profile)} or a multiple of the {_node(profile)} devices "
                                     f"per node of {profile.name}, got {gpus}")
        sim_mfu, matmul = mfu, None
        if calibration is not None:
            from .planning.calibration import resolve

            cal_use = resolve(calibration, calibration_dir, profile.name, PRECISION, explicit_mfu=mfu)
            sim_mfu = mfu if mfu is not None else cal_use.mfu
            matmul = cal_use.matmul_flops_per_s
            notes += [f"calibration: used {line}" for line in cal_use.used]
            notes += [f"calibration: {n}" for n in cal_use.notes]
        sim = _Simulator(profile, price_usd_per_hour, sim_mfu, PRECISION, matmul)
    fleet = None
    if tokens_per_day is not None:
        from .planning.serving import Fleet

        fleet = Fleet(profile, tokens_per_day, serving_days, price_usd_per_hour, serving_options, PRECISION)
    target_days = deadline_days if deadline_days is not None else DEFAULT_TARGET_DAYS

    def place(C):
        """(N, D, G, sim result, gpus_source) for compute C; result None when it fits on nothing."""
        N, D = allocate(C)
        if gpus is not None:
            return N, D, gpus, sim(N, D, gpus), "--gpus"
        try:
            G, r, met = choose_gpus(sim, N, D, target_days)
        except InfeasibleError:
            return N, D, None, None, ""
        how = (f"chosen: the smallest power-of-two multiple of a {_node(profile)}-GPU node that finishes "
               f"within {target_days:g} days" + ("" if met else f" (none up to {G} GPUs does; the largest is used)"))
        return N, D, G, r, how

    # -- the compute C the objective asks for ------------------------------------------------------
    if objective == "target_loss" and dc is not None:
        C = dc.compute_for_loss(target_loss, MAX_COMPUTE_FLOPS)
    elif objective == "target_loss":
        C = float(compute_for_loss(law, target_loss))
        if not math.isfinite(C):
            raise InputError("target_loss", f"{target_loss:g} is out of reach of law {law.name!r}")
        if C > MAX_COMPUTE_FLOPS:
            raise InfeasibleError(
                f"target loss {target_loss:g} needs {C:.3g} FLOPs under law {law.name!r}, beyond the "
                f"{MAX_COMPUTE_FLOPS:.0e} FLOPs the planner sizes; the lowest target in range is "
                f"{float(frontier_loss(law, MAX_COMPUTE_FLOPS)):.4f}")
    elif objective == "budget_flops":
        if budget_flops < MIN_COMPUTE_FLOPS:
            raise InfeasibleError(
                f"budget_flops {budget_flops:.4g} FLOPs is too small for any model: the smallest run the planner "
                f"sizes needs {MIN_COMPUTE_FLOPS:.0e} FLOPs "
                f"({float(optimal_params(law, MIN_COMPUTE_FLOPS)) / 1e6:.0f}M params); give at least that")
        C = budget_flops
    else:
        if objective == "budget_usd":
            def measure(r):
                return r.training.cost_usd
            budget, what = budget_usd, "cost"
        elif objective == "budget_gpu_hours":
            def measure(r):
                return r.training.gpu_hours
            budget, what = budget_gpu_hours, "GPU-hours"
        else:
            def measure(r):
                return r.training.wall_clock_days
            budget, what = deadline_days, "wall-clock"
        C = _bisect_compute(place, measure, budget, what, objective, gpus, profile)
        notes.append(f"compute found by bisection in log C over the simulator so that the simulated {what} "
                     f"meets the budget ({sim.calls} simulations)")

    N, D = allocate(C)
    if dc is not None:
        low, high = dc.near_optimal_params_range(C, N, near_optimal_rel_tol)
        model_loss = float(dc.loss(N, D))
    else:
        low, high = near_optimal_params_range(law, C, near_optimal_rel_tol, iterations=NEAR_OPTIMAL_BISECTIONS)
        model_loss = float(frontier_loss(law, C))
    plan_loss = model_loss if objective != "target_loss" else float(target_loss)

    # -- training on the cluster ----------------------------------------------------------------
    training = None
    if sim is not None:
        _, _, G, res, how = place(C)
        if res is None:
            raise InfeasibleError(
                f"a {N / 1e9:.3g}B-parameter model (C = {C:.3g} FLOPs) does not fit in memory on "
                + (f"{gpus} x {profile.name}" if gpus is not None else f"any GPU count of {profile.name} tried"))
        from .planning.calibration import mfu_provenance

        training = _training_choice(res, how, profile, PRECISION, mfu_provenance(cal_use, mfu))
        if deadline_days is not None and training.wall_clock_days > deadline_days * (1 + 1e-9):
            raise InfeasibleError(
                f"the plan takes {training.wall_clock_days:.1f} days on {training.gpus} x {profile.name}, "
                f"over the {deadline_days:g}-day deadline by {training.wall_clock_days - deadline_days:.1f} days")
        if gpus is None and "none up to" in how:
            notes.append(f"even {G} GPUs take {training.wall_clock_days:.0f} days (> {target_days:g})")

    # -- uncertainty over the law's draws ----------------------------------------------------------
    uncertainty = None
    loss_band = None
    if dc is not None:
        if law.samples is not None and len(law.samples) >= 2:
            loss_band = _band(dc.loss_draws(N, D))
        notes.append("data-constrained: the bands of compute and allocation over the law's draws are not computed "
                     "under the unique-token cap" + (" (the loss band is)" if loss_band is not None else ""))
    elif law.samples is not None and len(law.samples) >= 2:
        draws = law.draws()
        predicted = loss(draws, N, D)
        loss_band = _band(predicted)
        u = dict(draws=len(law.samples), optimal_params=_band(optimal_params(draws, C)),
                 optimal_tokens=_band(optimal_tokens(draws, C)))
        if objective == "target_loss":
            c_draws = np.asarray(compute_for_loss(draws, target_loss), dtype=float)
            u["compute_flops"] = _band(c_draws)
            u["probability_target_met"] = float(np.mean(predicted <= target_loss))
            u["probability_within_budget"] = float(np.mean(c_draws <= C))
            if training is not None:
                ratio = c_draws / C
                u["wall_clock_days"] = _band(training.wall_clock_days * ratio)
                u["gpu_hours"] = _band(training.gpu_hours * ratio)
                u["cost_usd"] = _band(training.cost_usd * ratio)
                u["scaling_note"] = ("wall-clock, GPU-hours and cost scale with each draw's compute at the plan's "
                                     "layout, GPU count and MFU (a first-order band, not re-simulated)")
        uncertainty = Uncertainty(**u)
    else:
        notes.append(f"law {law.name!r} carries no parameter draws: no uncertainty band")

    serving = None
    if fleet is not None:
        serving = fleet.choice(N, training.cost_usd)
        if isinstance(serving, str):
            notes.append(f"serving: the plan's model has no fleet for the demand: {serving}")
            serving = None
        else:
            notes.append(f"serving: {serving.replicas} replicas x TP{serving.tensor_parallel} = {serving.devices} x "
                         f"{profile.name} for {tokens_per_day:.3g} tokens/day ({serving.capacity_method}); lifetime "
                         f"cost = training + {serving_days:g} days of serving, for the plan and each alternative")
    alts = _alternatives(law, plan_loss, C, N, D, training, sim, inference_tokens, inference_mfu, profile, dc,
                         fleet, serving) if alternatives else []
    moe_section = None
    if experts is not None:
        from .planning.moe import section

        moe_section = section(C, experts, top_k, profile=profile, gpus=training.gpus if training else None,
                              price_usd_per_hour=price_usd_per_hour, precision=PRECISION)
        if dc is not None:
            moe_section.notes.append("MoE: the allocation ignores the unique-token cap (Krajewski's law assumes "
                                     "fresh data)")
        if training is not None and training.mfu_provenance != "profile default":
            moe_section.notes.append("MoE: the measured MFU / matmul rate of the dense run is not applied to the "
                                     "MoE run (simulated from the profile)")
        notes += moe_section.notes
    dc_section = None
    if dc is not None:
        dc_section = dc.section(C, N, D)
        notes += dc_section.notes
        if inference_tokens is not None and alternatives:
            notes.append("data-constrained: no inference-optimal alternative (Sardana 2024 assumes fresh data)")
    if inference_tokens is not None and fleet is None:
        notes.append(f"inference: 2·N FLOPs per token at an assumed MFU of {inference_mfu:g} and the training price "
                     "(give --tokens-per-day and --serving-days to size a serving fleet instead)")

    return Recommendation(
        objective=objective, target_loss=target_loss, budget_flops=budget_flops, budget_usd=budget_usd,
        budget_gpu_hours=budget_gpu_hours, deadline_days=deadline_days, compute_flops=C,
        model=ModelChoice(
            params=N, tokens=D, tokens_per_param=D / N, loss=model_loss, loss_band=loss_band,
            params_near_optimal_low=float(low), params_near_optimal_high=float(high),
            near_optimal_rel_tol=near_optimal_rel_tol,
        ),
        training=training,
        law=LawInfo(name=law.name, source=law.source, draws=0 if law.samples is None else len(law.samples),
                    **{k: float(v) for k, v in law.params.items()}),
        uncertainty=uncertainty, alternatives=alts,
        inference_tokens=inference_tokens, inference_mfu=inference_mfu if inference_tokens is not None else None,
        calibration=cal_use, data_constrained=dc_section, moe=moe_section, serving=serving, notes=notes,
    )


def _bisect_compute(place, measure, budget: float, what: str, objective: str, gpus, profile) -> float:
    """The largest C in [MIN, MAX] whose simulated ``measure`` is <= ``budget``, by bisection in log C.

    A C whose model fits on nothing counts as over budget. Raises InfeasibleError with the smallest
    budget that works when even MIN_COMPUTE_FLOPS is over it.
    """
    def value(C):
        r = place(C)[3]
        return math.inf if r is None else float(measure(r))

    lo_val = value(MIN_COMPUTE_FLOPS)
    if not lo_val <= budget:
        unit = {"cost": "USD", "GPU-hours": "GPU-hours", "wall-clock": "days"}[what]
        where = f"{gpus} x {profile.name}" if gpus is not None else profile.name
        if math.isinf(lo_val):
            raise InfeasibleError(f"even the smallest run ({MIN_COMPUTE_FLOPS:.0e} FLOPs) fits on no layout of {where}")
        raise InfeasibleError(
            f"{objective} {budget:.4g} {unit} is too small for any model: the smallest run the planner sizes "
            f"({MIN_COMPUTE_FLOPS:.0e} FLOPs, {float(place(MIN_COMPUTE_FLOPS)[0]) / 1e6:.0f}M params) needs "
            f"{lo_val:.4g} {unit} on {where}; give at least that")
    if value(MAX_COMPUTE_FLOPS) <= budget:
        return MAX_COMPUTE_FLOPS
    return bisect_log(lambda C: value(C) <= budget, math.log(MIN_COMPUTE_FLOPS), math.log(MAX_COMPUTE_FLOPS),
                      BISECTION_STEPS, 1e-6)


def _alternatives(law, plan_loss, C, N, D, training, sim, inference_tokens, inference_mfu, profile, dc=None,
                  fleet=None, serving=None):
    """Compute-optimal, over-trained 2x/10x smaller at the same loss, and (with a lifetime demand)
    the inference-optimal model; each simulated on the plan's GPUs. Under a unique-token cap
    (``dc``) the losses are Muennighoff's, the over-trained models repeat data to reach the plan's
    loss, the Chinchilla allocation of the same compute is shown with the loss it really reaches,
    and the inference-optimal model (Sardana assumes fresh data) is left out. With a serving
    ``fleet`` each model's inference cost is its own simulated fleet's, and the inference-optimal
    model is solved at the plan fleet's effective MFU."""
    G = training.gpus if training is not None else None
    price = training.price_usd_per_gpu_hour if training is not None else None
    peak = training.peak_flops_per_s if training is not None else None
    if dc is None:
        def loss_of(n, d):
            return float(loss(law, n, d))

        def tokens_at(n):
            return float(tokens_for_loss_at_params(law, plan_loss, n))

        rows = [("compute-optimal", "the plan: Hoffmann Eq. 4 allocation of C", N, D)]
    else:
        loss_of = dc.loss

        def tokens_at(n):
            return dc.tokens_for_loss_at_params(plan_loss, n)

        rows = [("compute-optimal", f"the plan: Muennighoff 2023 allocation of C with {dc.U:.3g} unique tokens",
                 N, D)]
    for k in OVERTRAIN_SHRINK:
        n = N / k
        rows.append((f"over-trained {k:g}x smaller", f"N/{k:g}, trained on the tokens that reach the same loss "
                     "(L(N, D) solved for D" + (", data repeated)" if dc is not None else ")"), n, tokens_at(n)))
    if dc is not None:
        n_c, d_c = float(optimal_params(law, C)), float(optimal_tokens(law, C))
        if d_c > dc.U:
            rows.append((DC_CHINCHILLA_ALTERNATIVE, "Hoffmann Eq. 4 allocation of the same C, ignoring the "
                         "unique-token cap: its loss is what it reaches with the data repeated", n_c, d_c))
    elif inference_tokens is not None:
        from .laws.inference_aware import cost_optimal, usd_per_flop

        if training is not None:
            c = usd_per_flop(price, peak)
            inf_mfu, how = inference_mfu, "assumed"
            if serving is not None:
                inf_mfu, how = min(1.0, serving.effective_mfu), "the plan's serving fleet's effective"
            p = cost_optimal(law, plan_loss, inference_tokens, 0.0, train_usd_per_flop=c, inference_usd_per_flop=c,
                             train_mfu=training.mfu, prefill_mfu=inf_mfu, decode_mfu=inf_mfu)
            desc = (f"Sardana 2024: minimal lifetime dollars at the same loss (training MFU {training.mfu:.3f}, "
                    f"{how} inference MFU {inf_mfu:.3g})")
        else:
            from .laws.inference_aware import compute_optimal

            p = compute_optimal(law, plan_loss, inference_tokens)
            desc = "Sardana 2024: minimal lifetime FLOPs at the same loss"
        rows.append(("inference-optimal", desc, float(p.params), float(p.tokens)))
    out = []
    for name, desc, n, d in rows:
        if not math.isfinite(d):
            out.append(Alternative(name=name, description=desc, params=n, loss=plan_loss,
                                   note=f"cannot reach loss {plan_loss:.4f} at this size under the law"))
            continue
        alt = dict(name=name, description=desc, params=n, tokens=d, tokens_per_param=d / n,
                   loss=float(loss_of(n, d)), compute_flops=FLOPS_PER_PARAM_TOKEN * n * d)
        if sim is not None:
            r = sim(n, d, G)
            if r is None:
                alt["note"] = f"does not fit on {G} x {profile.name}"
            else:
                t = r.training
                alt.update(gpus=G, wall_clock_days=t.wall_clock_days, gpu_hours=t.gpu_hours, cost_usd=t.cost_usd,
                           mfu=t.mfu)
        if inference_tokens is not None:
            inf_flops = INFERENCE_FLOPS_PER_PARAM_TOKEN * n * inference_tokens
            alt.update(inference_flops=inf_flops, lifetime_flops=alt["compute_flops"] + inf_flops)
            if fleet is not None:
                fp = fleet.plan(n)
                if isinstance(fp, str):
                    alt["note"] = (alt.get("note", "") + "; " if alt.get("note") else "") + \
                        "no serving fleet meets the SLO"
                else:
                    serve_usd = fp.cost_usd_per_day * fleet.S
                    alt.update(serving_devices=fp.devices, serving_cost_usd=serve_usd, inference_cost_usd=serve_usd)
                    if alt.get("cost_usd") is not None:
                        alt["lifetime_cost_usd"] = alt["cost_usd"] + serve_usd
            elif price is not None:
                inf_usd = inf_flops / (peak * inference_mfu) / 3600.0 * price
                alt["inference_cost_usd"] = inf_usd
                if alt.get("cost_usd") is not None:
                    alt["lifetime_cost_usd"] = alt["cost_usd"] + inf_usd
        out.append(Alternative(**alt))
    return out


# =================================================================================================
# --explain: the arithmetic with the numbers put in
# =================================================================================================

def explain_lines(plan: Recommendation) -> list[str]:
    """The plan's arithmetic, one step a line, with its numbers (FLOPs a count, FLOP/s a rate)."""
    m, t = plan.model, plan.training
    lines = [
        f"C = 6·N·D = 6 × {m.params:.6e} params × {m.tokens:.6e} tokens = {plan.compute_flops:.6e} FLOPs "
        "(law-level training compute, a count)",
    ]
    if plan.objective == "target_loss":
        lines.insert(0, f"target loss {plan.target_loss:g}: minimal compute C(L) = 6·[(A·G^-α + B·G^β)/(L − E)]"
                        f"^((α+β)/(αβ)) with E={plan.law.E:.4g}, A={plan.law.A:.4g}, B={plan.law.B:.4g}, "
                        f"α={plan.law.alpha:.4g}, β={plan.law.beta:.4g}; N, D from Hoffmann Eq. 4")
    if t is None:
        return lines
    lines += [
        f"model FLOPs (simulator, Megatron count for the {t.shape.split(' (')[0]} shape) = {t.model_flops:.6e} FLOPs "
        f"({t.model_flops / plan.compute_flops:.4f} × 6·N·D)",
        f"ideal time = model FLOPs / (GPUs × peak FLOP/s × MFU) = {t.model_flops:.6e} FLOPs / ({t.gpus} × "
        f"{t.peak_flops_per_s:.6e} FLOP/s × {t.mfu:.6f}) = {t.ideal_time_s:.6e} s  (MFU {t.mfu_provenance})",
        f"wall-clock = ideal time / goodput = {t.ideal_time_s:.6e} s / {t.goodput:.6f} = "
        f"{t.wall_clock_days * SECONDS_PER_DAY:.6e} s = {t.wall_clock_days:.6f} days",
        f"GPU-hours = GPUs × wall-clock hours = {t.gpus} × {t.wall_clock_days * 24:.6f} h = {t.gpu_hours:.6e} GPU-h",
        f"cost = GPU-hours × price = {t.gpu_hours:.6e} GPU-h × ${t.price_usd_per_gpu_hour:.4f}/GPU-h = "
        f"${t.cost_usd:.6e}  (price: {t.price_source})",
        f"energy = GPU-hours × (device W + host W) × PUE / 1000 = {t.gpu_hours:.6e} × ({t.device_power_w:.6g} + "
        f"{t.host_w_per_device:.6g}) W × {t.pue:.6g} / 1000 = {t.energy_kwh:.6e} kWh",
        f"CO2 = energy × grid intensity = {t.energy_kwh:.6e} kWh × {t.grid_kg_co2_per_kwh:.6g} kg/kWh = "
        f"{t.co2_kg:.6e} kg",
    ]
    v = plan.serving
    if v is not None:
        lines += [
            f"serving fleet = {v.replicas} replicas × TP{v.tensor_parallel} = {v.devices} devices for "
            f"{v.tokens_per_day:.6e} tokens/day at peak ×{v.peak_factor:g} ({v.capacity_method})",
            f"serving cost = devices × price × 24 h × days = {v.devices} × ${t.price_usd_per_gpu_hour:.4f}/GPU-h "
            f"× 24 h × {v.serving_days:g} = ${v.serving_cost_usd:.6e}",
            f"lifetime cost = training + serving = ${t.cost_usd:.6e} + ${v.serving_cost_usd:.6e} = "
            f"${v.lifetime_cost_usd:.6e}",
        ]
    return lines
