"""Objective -> plan: ties the scaling laws and the training simulator together.

An objective picks the training compute C (law level), the law's compute-optimal allocation
(Hoffmann Eq. 4) turns C into a model size N and tokens D, and the training simulator
(:func:`scaling_planner.simulate.training.estimate.simulate_training`) turns (N, D, GPU, G) into a layout,
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

:func:`recommend` runs the steps; each lives in :mod:`scaling_planner.planning`: the validated
request (:mod:`~.planning.request`), the profile, calibration and simulator
(:mod:`~.planning.hardware`), the compute of the objective and where it lands
(:mod:`~.planning.compute`), the training block (:mod:`~.planning.training`), the law's bands
(:mod:`~.planning.uncertainty`), the alternatives (:mod:`~.planning.alternatives`) and the
optional sections (:mod:`~.planning.data_constrained`, :mod:`~.planning.moe`,
:mod:`~.planning.serving`, :mod:`~.planning.calibration`).

pydantic and the law are imported at the top; the simulator, the profiles and the energy model
load inside the functions that use them, so importing this module stays cheap.
"""

from __future__ import annotations

from ..base.errors import InfeasibleError, InputError
from ..calibration.choice import mfu_provenance
from ..laws.chinchilla import ChinchillaLaw
from .alternatives import alternatives_for
from .compute import Placer, compute_for_objective
from .data_constrained import DataConstrained
from .data_regime import data_regime
from .hardware import Hardware, resolve_hardware
from .moe import MoEChoice
from .plan import LawInfo, ModelChoice, Recommendation
from .request import PlanRequest
from .serving import Fleet
from .training import (
    TrainingChoice,
    training_choice,
)
from .uncertainty import loss_band, uncertainty_for


def recommend(law: ChinchillaLaw, request: PlanRequest | None = None, /, **fields) -> Recommendation:
    """The plan for one objective (module docstring): ``recommend(law, target_loss=2.0, gpu="a100-sxm")``,
    or ``recommend(law, request)`` with a :class:`~.request.PlanRequest` (its fields are the keyword
    arguments, with their defaults and limits). ``gpu=None`` plans at the level of the law only (no
    simulator: no training block, no alternatives' costs; FLOP objectives only).

    Raises InputError for a bad or contradictory request, InfeasibleError when no plan meets it
    (a budget too small for the smallest run, a deadline too short, a model that fits nowhere).

    ``calibration``: ``"latest"`` plans with the newest training MFU and bf16 matmul rate measured
    for the profile (in ``calibration_dir``, else ``$SCALING_PLANNER_CALIBRATION_DIR``, else
    ``~/.scaling-planner/calibration``), or give a :class:`~scaling_planner.calibration.store.CalibrationRecord`
    or a list of them; the plan's ``calibration`` says which records it used
    (:mod:`scaling_planner.calibration.choice`). An explicit ``mfu`` wins over a training record.

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

    ``efficiency``: ``"realised"`` (default) plans with what teams really spend end to end, with a
    P10 / P90 band (:mod:`scaling_planner.simulate.training.end_to_end`); ``"tuned"`` with the step model's
    tuned Megatron-class stack. A measured MFU (``mfu`` or a calibration record) replaces both.
    """
    if request is not None and fields:
        raise InputError("request", "give a PlanRequest or keyword arguments, not both")
    req = request if request is not None else PlanRequest.validated(**fields)
    regime = data_regime(law, req.unique_tokens)
    hw = resolve_hardware(req)
    fleet = _serving_fleet(req, hw)
    placer = Placer(regime, hw.sim, req.gpus, req.target_days)

    C, compute_notes = compute_for_objective(req, regime, placer)
    N, D = regime.allocate(C)
    low, high, model_loss = regime.near_optimal(C, N, D, req.near_optimal_rel_tol)
    plan_loss = model_loss if req.objective != "target_loss" else float(req.target_loss)
    training, training_notes = _training_for(req, hw, placer, C, N)
    band = loss_band(regime, N, D)
    limits = {"budget_usd": req.budget_usd, "budget_gpu_hours": req.budget_gpu_hours,
              "deadline_days": req.deadline_days}
    uncertainty, uncertainty_notes = uncertainty_for(regime, req.objective, req.target_loss, C, N, D, training,
                                                     limits)
    serving, serving_notes = fleet.section(N, training.cost_usd) if fleet is not None else (None, [])
    alts = alternatives_for(regime, plan_loss, C, N, D, training=training, sim=hw.sim, profile=hw.profile,
                            inference_tokens=req.inference_tokens, inference_mfu=req.inference_mfu, fleet=fleet,
                            serving=serving) if req.alternatives else []
    moe, moe_notes = _moe_section(req, regime, C, hw, training)
    dc_section, dc_notes = _data_constrained_section(req, regime, C, N, D)

    notes = (hw.notes + compute_notes + training_notes + uncertainty_notes + serving_notes + moe_notes + dc_notes
             + _inference_notes(req, fleet))
    model = ModelChoice(params=N, tokens=D, tokens_per_param=D / N, loss=model_loss, loss_band=band,
                        params_near_optimal_low=float(low), params_near_optimal_high=float(high),
                        near_optimal_rel_tol=req.near_optimal_rel_tol)
    return Recommendation(
        objective=req.objective, target_loss=req.target_loss, budget_flops=req.budget_flops,
        budget_usd=req.budget_usd, budget_gpu_hours=req.budget_gpu_hours, deadline_days=req.deadline_days,
        compute_flops=C, model=model, training=training, law=_law_info(law), uncertainty=uncertainty,
        alternatives=alts, inference_tokens=req.inference_tokens,
        inference_mfu=req.inference_mfu if req.inference_tokens is not None else None, calibration=hw.calibration,
        data_constrained=dc_section, moe=moe, serving=serving, notes=notes,
    )


# -- the steps of recommend() ---------------------------------------------------------------------

def _serving_fleet(req: PlanRequest, hw: Hardware) -> Fleet | None:
    """The serving fleets of the demand on the plan's profile (None without a demand)."""
    if req.tokens_per_day is None:
        return None
    return Fleet(hw.profile, req.tokens_per_day, req.serving_days, req.price_usd_per_device_hour, req.serving_kwargs())


def _training_for(req: PlanRequest, hw: Hardware, placer: Placer, C: float,
                  N: float) -> tuple[TrainingChoice | None, list[str]]:
    """The simulated training of compute C (None at law level) and its note. Raises InfeasibleError
    when the model fits on no GPU count tried or the run misses the deadline."""
    if hw.sim is None:
        return None, []
    placed = placer.place(C)
    if placed.result is None:
        raise InfeasibleError(
            f"a {N / 1e9:.3g}B-parameter model (C = {C:.3g} FLOPs) does not fit in memory on "
            + (f"{req.gpus} x {hw.profile.name}" if req.gpus is not None
               else f"any GPU count of {hw.profile.name} tried"))
    training = training_choice(placed.result, placed.gpus_source, mfu_provenance(hw.calibration, req.mfu))
    days = training.wall_clock_days
    if req.deadline_days is not None and days > req.deadline_days * (1 + 1e-9):
        raise InfeasibleError(
            f"the plan takes {days:.1f} days on {training.gpus} x {hw.profile.name}, "
            f"over the {req.deadline_days:g}-day deadline by {days - req.deadline_days:.1f} days")
    if req.gpus is None and not placed.in_time:
        return training, [f"even {placed.gpus} GPUs take {days:.0f} days (> {req.target_days:g})"]
    return training, []


def _moe_section(req: PlanRequest, regime, C: float, hw: Hardware, training) -> tuple[MoEChoice | None, list[str]]:
    """With experts: the Krajewski 2024 MoE at the plan's compute, simulated on the plan's GPUs,
    with what it does not carry over from the dense plan (the unique-token cap, a measured MFU)."""
    if req.experts is None:
        return None, []
    from .moe import section

    precision = hw.sim.precision if hw.sim is not None else "bf16"
    moe = section(C, req.experts, req.top_k, profile=hw.profile, gpus=training.gpus if training else None,
                  price_usd_per_device_hour=req.price_usd_per_device_hour, precision=precision)
    moe.notes += regime.ignored_by("MoE", "the allocation ignores the unique-token cap (Krajewski's law assumes "
                                   "fresh data)")
    if training is not None and training.mfu_source != "profile":
        moe.notes.append("MoE: the measured MFU / matmul rate of the dense run is not applied to the MoE run "
                         "(simulated from the profile)")
    return moe, moe.notes


def _data_constrained_section(req: PlanRequest, regime, C: float, N: float,
                              D: float) -> tuple[DataConstrained | None, list[str]]:
    """Under the unique-token cap: epochs, effective data, loss under repetition (Muennighoff 2023)."""
    section = regime.section(C, N, D)
    notes = list(section.notes) if section is not None else []
    if req.inference_tokens is not None and req.alternatives:
        notes += regime.ignored_by("data-constrained", "no inference-optimal alternative (Sardana 2024 assumes "
                                   "fresh data)")
    return section, notes


def _inference_notes(req: PlanRequest, fleet) -> list[str]:
    if req.inference_tokens is None or fleet is not None:
        return []
    return [f"inference: 2·N FLOPs per token at an assumed MFU of {req.inference_mfu:g} and the training price "
            "(give --tokens-per-day and --serving-days to size a serving fleet instead)"]


def _law_info(law: ChinchillaLaw) -> LawInfo:
    return LawInfo(name=law.name, source=law.source, draws=0 if law.samples is None else len(law.samples),
                   **{k: float(v) for k, v in law.params.items()})
