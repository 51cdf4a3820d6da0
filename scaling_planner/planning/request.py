"""The planner's request, validated once: :meth:`PlanRequest.validated` turns the keyword arguments
of :func:`scaling_planner.planning.recommend.recommend` into one frozen object, or raises
:class:`~scaling_planner.base.errors.InputError` naming the field, for the first problem in this order:

1. the objective: exactly one of target_loss, budget_flops, budget_usd, budget_gpu_hours, or a
   fixed cluster (gpus and deadline_days together, objective ``"deadline"``);
2. the numbers: budgets, deadline, price, MFUs and token counts positive and finite (MFUs <= 1);
3. a serving demand (tokens_per_day and serving_days, :mod:`.serving`) needs a GPU profile and sets
   the lifetime inference tokens T·S;
4. experts / top_k (:mod:`.moe`), a whole GPU count;
5. what needs the simulator (the dollar, GPU-hour and deadline objectives, calibration) needs a GPU
   profile; ``calibration_dir`` only goes with ``calibration``.

What needs the profile itself (a GPU count that is a whole number of nodes, the calibration
records of that profile) is checked when the hardware is resolved (:mod:`.hardware`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..base.errors import InputError
from .moe import check as check_experts
from .serving import check_demand, lifetime_tokens

OBJECTIVES = ("target_loss", "budget_flops", "budget_usd", "budget_gpu_hours")
SIMULATED_OBJECTIVES = ("budget_usd", "budget_gpu_hours", "deadline")  # met by searching over the simulator
DEFAULT_TARGET_DAYS = 90.0  # wall-clock the default GPU count aims at


def number(value, field: str) -> float:
    """``value`` as a float, or InputError(field)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(field, f"must be a number, got {value!r}") from None


def positive(value, field: str, *, maximum: float | None = None) -> float | None:
    """None stays None; otherwise a positive, finite float (at most ``maximum``), or InputError(field)."""
    if value is None:
        return None
    v = number(value, field)
    if not (math.isfinite(v) and v > 0) or (maximum is not None and v > maximum):
        rng = f"(0, {maximum:g}]" if maximum is not None else "a positive, finite number"
        raise InputError(field, f"must be {rng}, got {value!r}")
    return v


def _objective(target_loss, budget_flops, budget_usd, budget_gpu_hours, gpus, deadline_days) -> str:
    given = [name for name, v in zip(OBJECTIVES, (target_loss, budget_flops, budget_usd, budget_gpu_hours), strict=True)
             if v is not None]
    if len(given) > 1:
        raise InputError("objective", f"give one objective, got {' and '.join(given)}")
    if given:
        return given[0]
    if gpus is None or deadline_days is None:
        raise InputError("objective", "give one of target_loss, budget_flops, budget_usd, budget_gpu_hours, "
                                      "or a fixed cluster (gpus and deadline_days)")
    return "deadline"


def _gpu_count(gpus) -> int | None:
    if gpus is None:
        return None
    if isinstance(gpus, bool) or not float(gpus).is_integer() or gpus < 1:
        raise InputError("gpus", f"must be a whole number >= 1, got {gpus!r}")
    return int(gpus)


class PlanRequest(NamedTuple):
    """What :func:`~scaling_planner.planning.recommend.recommend` was asked, validated (module docstring);
    the fields are its keyword arguments, plus ``objective``. Immutable (a NamedTuple: ~10x cheaper
    to define than a frozen dataclass, which counts on the CLI's cold start)."""

    objective: str
    target_loss: float | None
    budget_flops: float | None
    budget_usd: float | None
    budget_gpu_hours: float | None
    gpus: int | None
    deadline_days: float | None
    gpu: object  # a profile name, a profile, or None (law level only)
    price_usd_per_hour: float | None
    mfu: float | None
    inference_tokens: float | None
    inference_mfu: float
    near_optimal_rel_tol: float
    alternatives: bool
    calibration: object
    calibration_dir: object
    unique_tokens: float | None
    experts: int | None
    top_k: int | None
    tokens_per_day: float | None
    serving_days: float | None
    serving_options: dict | None
    efficiency: str = "realised"

    @property
    def target_days(self) -> float:
        """The wall-clock the GPU count aims at: the deadline, else :data:`DEFAULT_TARGET_DAYS`."""
        return self.deadline_days if self.deadline_days is not None else DEFAULT_TARGET_DAYS

    @classmethod
    def validated(cls, *, target_loss, budget_flops, budget_usd, budget_gpu_hours, gpus, deadline_days, gpu,
                  price_usd_per_hour, mfu, inference_tokens, inference_mfu, near_optimal_rel_tol, alternatives,
                  calibration, calibration_dir, unique_tokens, experts, top_k, tokens_per_day, serving_days,
                  serving_options, efficiency="realised") -> PlanRequest:
        """The request, or InputError for the first problem (module docstring)."""
        from ..simulate.training.end_to_end import check_mode

        objective = _objective(target_loss, budget_flops, budget_usd, budget_gpu_hours, gpus, deadline_days)
        check_mode(efficiency)
        if target_loss is not None:
            target_loss = number(target_loss, "target_loss")
        budget_flops = positive(budget_flops, "budget_flops")
        budget_usd = positive(budget_usd, "budget_usd")
        budget_gpu_hours = positive(budget_gpu_hours, "budget_gpu_hours")
        deadline_days = positive(deadline_days, "deadline_days")
        price_usd_per_hour = positive(price_usd_per_hour, "price")
        mfu = positive(mfu, "mfu", maximum=1.0)
        inference_mfu = positive(inference_mfu, "inference_mfu", maximum=1.0)
        inference_tokens = positive(inference_tokens, "inference_tokens")
        unique_tokens = positive(unique_tokens, "unique_tokens")
        tokens_per_day = positive(tokens_per_day, "tokens_per_day")
        serving_days = positive(serving_days, "serving_days")
        if tokens_per_day is not None or serving_days is not None or serving_options:
            serving_options = check_demand(tokens_per_day, serving_days, serving_options)
            if gpu is None:
                raise InputError("gpu", "a serving demand needs the serving simulator: give a GPU profile")
            inference_tokens = lifetime_tokens(tokens_per_day, serving_days, inference_tokens)
        if experts is not None:
            experts, top_k = check_experts(experts, top_k)
        elif top_k is not None:
            raise InputError("top_k", "needs experts (the number of routed experts)")
        gpus = _gpu_count(gpus)
        if gpu is None and objective in SIMULATED_OBJECTIVES:
            raise InputError("gpu", f"objective {objective} needs the simulator: give a GPU profile")
        if calibration is None and calibration_dir is not None:
            raise InputError("calibration_dir", "is only read with calibration='latest'")
        if gpu is None and calibration is not None:
            raise InputError("calibration", "calibrates the training simulator: give a GPU profile")
        return cls(objective=objective, target_loss=target_loss, budget_flops=budget_flops, budget_usd=budget_usd,
                   budget_gpu_hours=budget_gpu_hours, gpus=gpus, deadline_days=deadline_days, gpu=gpu,
                   price_usd_per_hour=price_usd_per_hour, mfu=mfu, inference_tokens=inference_tokens,
                   inference_mfu=inference_mfu, near_optimal_rel_tol=near_optimal_rel_tol, alternatives=alternatives,
                   calibration=calibration, calibration_dir=calibration_dir, unique_tokens=unique_tokens,
                   experts=experts, top_k=top_k, tokens_per_day=tokens_per_day, serving_days=serving_days,
                   serving_options=serving_options, efficiency=efficiency)
