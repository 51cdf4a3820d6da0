"""The plan :func:`~.recommend.recommend` returns: :class:`Recommendation`, whose sections are the typed
models of the modules that compute them (the training estimate, :mod:`.training`; the law's bands,
:mod:`.uncertainty`; the alternatives, :mod:`.alternatives`; the optional data-constrained, MoE and
serving sections; the calibration records used)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..calibration.choice import CalibrationUse
from .alternatives import Alternative
from .data_constrained import DataConstrained
from .moe import MoEChoice
from .serving import ServingChoice
from .training import TrainingChoice
from .uncertainty import Band, Uncertainty


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
