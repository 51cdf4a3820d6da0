"""Serving the planned model at a demand, and the lifetime cost it implies (``--tokens-per-day T
--serving-days S``).

A model is trained once and served for S days at T tokens a day (prompt + answer, the unit of
``planner serve``). :func:`scaling_planner.simulate.serving.capacity.serving_capacity` sizes the fleet for
the demand's peak under the p99 TTFT / time-per-output-token SLOs on the plan's GPU profile at the
training price (replicas x tensor parallel, capacity by simulated load), so

    serving cost = cost per day x S,        lifetime cost = training cost + serving cost,

for the plan and for every alternative (each served by its own fleet). This replaces the
assumed-MFU inference estimate (2·N FLOPs per token at a fixed utilisation) with the fleet the
demand needs. The fleet's *effective* MFU, 2·N·T / (devices · 86400 s · peak FLOP/s), is what
that fleet delivers over a day, peak provisioning and latency limits included; the inference-aware
(Sardana 2024) alternative is solved at the plan fleet's effective MFU and then served by a fleet
simulated for its own size.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from ..base.errors import InfeasibleError, InputError
from ..base.units import SECONDS_PER_DAY
from ..simulate.serving.models import ServingPlan


class ServingChoice(BaseModel):
    """The ``serving`` section of a plan: the fleet for the demand (``fleet``: the very ServingPlan that
    ``planner serve`` prints for the plan's model) and what the plan adds: the days, the lifetime figures."""

    model_config = ConfigDict(defer_build=True)

    fleet: ServingPlan = Field(description="planner serve's plan for the plan's model at the demand")
    serving_days: float
    lifetime_tokens: float = Field(description="tokens_per_day x serving_days")
    serving_cost_usd: float = Field(description="cost per day x serving_days")
    energy_kwh: float = Field(description="facility energy over serving_days")
    effective_mfu: float = Field(description="2·N·T / (devices · 86400 s · peak): what the fleet delivers over a day")
    training_cost_usd: float | None = None
    lifetime_cost_usd: float | None = Field(None, description="training + serving cost")


class Fleet:
    """Serving fleets for models of N parameters at one demand on one profile, memoised by N."""

    def __init__(self, profile, tokens_per_day: float, serving_days: float, price_usd_per_device_hour, options: dict,
                 precision: str = "bf16"):
        self.profile, self.T, self.S = profile, float(tokens_per_day), float(serving_days)
        self.price, self.options, self.precision = price_usd_per_device_hour, options, precision
        self.cache: dict = {}

    def plan(self, N: float):
        """The ServingPlan of a model of N parameters (``shape_for_params``), or the reason it has none."""
        key = float(N)
        if key not in self.cache:
            from ..simulate.architecture import shape_for_params
            from ..simulate.serving.capacity import serving_capacity

            try:
                self.cache[key] = serving_capacity(
                    shape_for_params(N), self.profile, tokens_per_day=self.T, precision=self.precision,
                    price_usd_per_device_hour=self.price, **self.options)
            except InfeasibleError as exc:
                self.cache[key] = str(exc)
        return self.cache[key]

    def cost_usd(self, N: float) -> float | None:
        p = self.plan(N)
        return None if isinstance(p, str) else p.cost_usd_per_day * self.S

    def effective_mfu(self, plan, N: float) -> float:
        peak = float(self.profile.peak_flops_per_s(self.precision))
        return 2.0 * N * self.T / (plan.devices * SECONDS_PER_DAY * peak)

    def choice(self, N: float, training_cost_usd: float | None) -> ServingChoice | str:
        """The serving section of a model of N parameters, or the reason it has no fleet."""
        p = self.plan(N)
        if isinstance(p, str):
            return p
        serving = self.cost_usd(N)
        return ServingChoice(
            fleet=p, serving_days=self.S, lifetime_tokens=self.T * self.S, serving_cost_usd=serving,
            energy_kwh=p.energy_kwh_per_day * self.S, effective_mfu=self.effective_mfu(p, N),
            training_cost_usd=training_cost_usd,
            lifetime_cost_usd=None if training_cost_usd is None else training_cost_usd + serving,
        )

    def section(self, N: float, training_cost_usd: float | None) -> tuple[ServingChoice | None, list[str]]:
        """The plan's ``serving`` section (None when no fleet meets the demand) and the note that says
        what was sized or why nothing was."""
        choice = self.choice(N, training_cost_usd)
        if isinstance(choice, str):
            return None, [f"serving: the plan's model has no fleet for the demand: {choice}"]
        f = choice.fleet
        return choice, [f"serving: {f.replicas} replicas x TP{f.tensor_parallel} = {f.devices} x "
                        f"{self.profile.name} for {self.T:.3g} tokens/day ({f.capacity_method}); lifetime "
                        f"cost = training + {self.S:g} days of serving, for the plan and each alternative"]


def lifetime_tokens(tokens_per_day, serving_days, inference_tokens):
    """T·S, checked against an explicit ``inference_tokens`` (they must agree, or give one)."""
    total = float(tokens_per_day) * float(serving_days)
    if inference_tokens is not None and not math.isclose(inference_tokens, total, rel_tol=1e-9):
        raise InputError("inference_tokens", f"{inference_tokens:.4g} disagrees with tokens_per_day x serving_days "
                                             f"= {total:.4g}; give one or the other")
    return total
