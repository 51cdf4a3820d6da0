"""The planner's request: one pydantic model, :class:`PlanRequest`, for every way in.

It is the keyword arguments of :func:`scaling_planner.planning.recommend.recommend`, the flags of
``planner recommend`` / ``planner plot`` (each field carries its flag, metavar and unit; the CLI builds
its arguments from them, :func:`scaling_planner.cli.options.add_model_arguments`), the argument of the
``recommend-plan`` Prefect task, and the form of the pre-flight flow (whose request subclasses it).
Adding an option is one field here.

:meth:`PlanRequest.validated` raises :class:`~scaling_planner.base.errors.InputError` naming the field,
for the first problem in this order:

1. each field alone: numbers positive and finite, MFUs and tolerances fractions in (0, 1], counts whole;
2. the objective: exactly one of target_loss, budget_flops, budget_usd, budget_gpu_hours, or a fixed
   cluster (gpus and deadline_days together, objective ``"deadline"``);
3. a serving demand (tokens_per_day and serving_days together, with its options, :mod:`.serving`) needs a
   GPU profile and sets the lifetime inference tokens T·S; inference_mfu needs inference tokens;
4. experts / top_k (:mod:`.moe`);
5. what needs the simulator (the dollar, GPU-hour and deadline objectives, calibration) needs a GPU
   profile; ``calibration_dir`` only goes with ``calibration``.

What needs the profile itself (a GPU count that is a whole number of nodes, the calibration records of
that profile) is checked when the hardware is resolved (:mod:`.hardware`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..base.errors import InputError

OBJECTIVES = ("target_loss", "budget_flops", "budget_usd", "budget_gpu_hours")
SIMULATED_OBJECTIVES = ("budget_usd", "budget_gpu_hours", "deadline")  # met by searching over the simulator
DEFAULT_TARGET_DAYS = 90.0  # wall-clock the default GPU count aims at
DEFAULT_GPU = "h100-sxm"
INFERENCE_MFU = 0.25  # assumed model-FLOP utilisation of serving (prefill and decode), stated in the plan
NEAR_OPTIMAL_REL_TOL = 0.005  # "within 0.5 % of the minimum loss" (marin issue #4447, reference §4)


def option(default: Any = None, description: str = "", *, flag: str | None = None, metavar: str | None = None,
           unit: str | None = None, aliases: tuple[str, ...] = (), dollar: bool = False, group: str | None = None,
           store: Any = None, cli: bool = True, **constraints) -> Any:
    """A request field and the command-line flag it is given by: ``flag`` (default ``--field-name``),
    ``metavar``, the ``unit`` the help states, ``aliases``, ``dollar`` (accept ``$2M``), ``group`` (flags of
    one group exclude each other), ``store`` (a switch that stores this value), ``cli=False`` (API only)."""
    meta = {"flag": flag, "metavar": metavar, "unit": unit, "aliases": list(aliases), "dollar": dollar,
            "group": group, "store": store, "cli": cli}
    return Field(default, description=description, json_schema_extra={"cli": meta}, **constraints)


class ServingOptions(BaseModel):
    """How the serving demand looks and what it must meet (``planner serve``'s options); a field left
    None takes the serving simulator's default."""

    model_config = ConfigDict(extra="forbid", defer_build=True, allow_inf_nan=False)

    prompt_tokens: int | None = option(None, "prompt tokens per query of the serving demand (default 1024)",
                                       metavar="P", ge=1)
    output_tokens: int | None = option(None, "answer tokens per query of the serving demand (default 256)",
                                       metavar="O", ge=1)
    p99_ttft_s: float | None = option(None, "serving p99 time-to-first-token SLO (default 2)", flag="--p99-ttft",
                                      metavar="S", unit="seconds", gt=0)
    p99_tpot_s: float | None = option(None, "serving p99 time-per-output-token SLO (default 0.2)",
                                      flag="--p99-tpot", metavar="S", unit="seconds", gt=0)
    peak_factor: float | None = option(None, "peak / mean serving demand the fleet is sized for (default 2)",
                                       metavar="X", ge=1)
    simulate: bool | None = option(None, "refine the analytic capacity by event simulation (default True)",
                                   cli=False)

    def given(self) -> dict:
        """The options set, as ``serving_capacity`` keyword arguments."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class PlanRequest(BaseModel):
    """What :func:`~scaling_planner.planning.recommend.recommend` is asked (module docstring)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, allow_inf_nan=False)

    # -- the objective --------------------------------------------------------------------------------
    target_loss: float | None = option(None, "the cheapest model that reaches this loss", metavar="L",
                                       unit="nats/token", group="objective", gt=0)
    budget_flops: float | None = option(None, "the lowest loss this many training FLOPs buy (1e22, 5.76e23)",
                                        metavar="C", unit="FLOPs", group="objective", gt=0)
    budget_usd: float | None = option(None, "the lowest loss this many dollars buy ($2M, 2e6)", metavar="X",
                                      unit="USD", dollar=True, group="objective", gt=0)
    budget_gpu_hours: float | None = option(None, "the lowest loss this many GPU-hours buy (1e6, 500k)",
                                            flag="--gpu-hours", metavar="H", unit="GPU-hours", group="objective",
                                            gt=0)
    # -- the cluster ----------------------------------------------------------------------------------
    gpus: int | None = option(
        None, "a fixed GPU count (default: the smallest power-of-two multiple of a node that finishes within the "
        "deadline, 90 days unless --deadline-days); with --deadline-days and no other objective: the best model "
        "G GPUs train in time", metavar="G", ge=1)
    deadline_days: float | None = option(
        None, "wall-clock limit (a fixed cluster's objective, or a constraint)", metavar="T", unit="days", gt=0)
    gpu: Any = option(DEFAULT_GPU, "hardware profile (planner profiles list; API: None plans at law level)",
                      metavar="PROFILE")
    price_usd_per_device_hour: float | None = option(None, "price per device-hour (default: the profile's dated price)",
                                              flag="--price", metavar="USD_PER_DEVICE_HOUR", dollar=True, gt=0)
    # -- training efficiency --------------------------------------------------------------------------
    mfu: float | None = option(
        None, "a measured MFU (0-1) of your own stack replacing the efficiency prior (provenance 'measured'; the "
        "band narrows to the step model's transfer error)", aliases=("--measured-mfu",), metavar="FRACTION",
        gt=0, le=1)
    efficiency: Literal["realised", "tuned"] = option(
        "realised", "realised: what published runs really spent end to end, with a P10-P90 band; tuned: a tuned "
        "Megatron-class stack in steady state (plus failures)")
    calibration: Any = option(
        None, "plan with the measured MFU (training records) and bf16 matmul FLOP/s (probe records) of the GPU "
        "profile in the calibration history: the median of the newest 5 that qualify within 30 days; the plan "
        "names the records used; an error when the history has none (API: 'latest', or CalibrationRecords)",
        flag="--calibrated", store="latest")
    calibration_dir: str | Path | None = option(
        None, "calibration history directory (default $SCALING_PLANNER_CALIBRATION_DIR, else "
        "~/.scaling-planner/calibration)", metavar="DIR")
    # -- inference and serving ------------------------------------------------------------------------
    inference_tokens: float | None = option(
        None, "lifetime tokens served: adds the inference-optimal model (Sardana 2024) and lifetime cost",
        metavar="T", unit="tokens", gt=0)
    inference_mfu: float = option(INFERENCE_MFU, "MFU assumed for serving with --inference-tokens",
                                  metavar="FRACTION", gt=0, le=1)
    tokens_per_day: float | None = option(
        None, "serving demand, prompt + answer tokens per day (as planner serve): size the serving fleet of the "
        "plan and of each alternative; lifetime cost = training + serving (needs --serving-days)", metavar="T",
        unit="tokens/day", gt=0)
    serving_days: float | None = option(None, "how many days the model serves --tokens-per-day", metavar="S",
                                        unit="days", gt=0)
    serving_options: ServingOptions | None = option(None, "the serving demand's shape and SLOs")
    # -- the law's regime and sections ----------------------------------------------------------------
    unique_tokens: float | None = option(
        None, "unique training tokens available: allocate under repeated data (Muennighoff 2023) and report "
        "epochs, effective data and the loss under repetition", metavar="U", unit="tokens", gt=0)
    experts: int | None = option(
        None, "routed experts per layer: add the compute-optimal fine-grained MoE at the plan's compute "
        "(Krajewski 2024): total vs active parameters, tokens, loss vs dense, simulated training", metavar="X")
    top_k: int | None = option(None, "experts active per token (must divide --experts; default: chosen by the law)",
                               metavar="K")
    near_optimal_rel_tol: float = option(
        NEAR_OPTIMAL_REL_TOL, "the plan's near-optimal range of N: sizes whose loss at the same compute is within "
        "this fraction of the minimum", flag="--near-optimal-tol", metavar="FRACTION", gt=0, le=1)
    alternatives: bool = option(True, "add the alternatives (over-trained, inference-optimal, ...)", cli=False)

    @property
    def objective(self) -> str:
        """target_loss, budget_flops, budget_usd, budget_gpu_hours or deadline (a fixed cluster)."""
        given = [name for name in OBJECTIVES if getattr(self, name) is not None]
        return given[0] if given else "deadline"

    @property
    def target_days(self) -> float:
        """The wall-clock the GPU count aims at: the deadline, else :data:`DEFAULT_TARGET_DAYS`."""
        return self.deadline_days if self.deadline_days is not None else DEFAULT_TARGET_DAYS

    def serving_kwargs(self) -> dict:
        """The serving options set, as ``serving_capacity`` keyword arguments."""
        return self.serving_options.given() if self.serving_options is not None else {}

    def recommend_kwargs(self) -> dict:
        """This request's fields, as :func:`~scaling_planner.planning.recommend.recommend` takes them."""
        return {name: getattr(self, name) for name in PlanRequest.model_fields}

    @classmethod
    def validated(cls, **fields) -> PlanRequest:
        """The request, or InputError naming the field of the first problem (module docstring)."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise input_error(exc) from None

    # -- the rules across fields ---------------------------------------------------------------------
    def check_objective(self) -> None:
        """Exactly one objective, or a fixed cluster (InputError ``objective``)."""
        given = [name for name in OBJECTIVES if getattr(self, name) is not None]
        if len(given) > 1:
            raise InputError("objective", f"give one objective, got {' and '.join(given)}")
        if not given and (self.gpus is None or self.deadline_days is None):
            hint = (" (gpus alone is not an objective)" if self.gpus is not None else
                    " (deadline_days alone needs gpus)" if self.deadline_days is not None else "")
            raise InputError("objective", "give one of target_loss, budget_flops, budget_usd, budget_gpu_hours, "
                                          f"or a fixed cluster (gpus and deadline_days){hint}")

    @model_validator(mode="after")
    def _rules(self):
        from .moe import check as check_experts
        from .serving import lifetime_tokens

        self.check_objective()
        if "inference_mfu" in self.model_fields_set and self.inference_tokens is None:
            raise InputError("inference_mfu", "needs inference_tokens (the lifetime tokens served)")
        if self.tokens_per_day is not None or self.serving_days is not None or self.serving_options is not None:
            if self.tokens_per_day is None or self.serving_days is None:
                raise InputError("serving", "give both tokens_per_day and serving_days (a demand and how long it "
                                            "lasts); the serving options need them")
            if self.gpu is None:
                raise InputError("gpu", "a serving demand needs the serving simulator: give a GPU profile")
            self.inference_tokens = lifetime_tokens(self.tokens_per_day, self.serving_days, self.inference_tokens)
        if self.experts is not None:
            self.experts, self.top_k = check_experts(self.experts, self.top_k)
        elif self.top_k is not None:
            raise InputError("top_k", "needs experts (the number of routed experts)")
        if self.gpu is None and self.objective in SIMULATED_OBJECTIVES:
            raise InputError("gpu", f"objective {self.objective} needs the simulator: give a GPU profile")
        if self.calibration is None and self.calibration_dir is not None:
            raise InputError("calibration_dir", "is only read with calibration='latest' (--calibrated)")
        if self.gpu is None and self.calibration is not None:
            raise InputError("calibration", "calibrates the training simulator: give a GPU profile")
        return self


def input_error(exc: ValidationError) -> InputError:
    """The first error of a pydantic validation as an InputError naming the field and what is allowed
    (a rule of the model that raised InputError itself is passed on unchanged)."""
    err = exc.errors(include_url=False)[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, InputError):
        return cause
    field = ".".join(str(p) for p in err["loc"]) or "request"
    ctx = err.get("ctx") or {}
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
              "less_than_equal": "<= {le}"}
    if err["type"] in bounds:
        allowed = f"must be {bounds[err['type']].format(**ctx)}"
    elif err["type"] == "finite_number":
        allowed = "must be a finite number"
    elif err["type"] == "extra_forbidden":
        return InputError(field, "is not a known option")
    else:
        allowed = err["msg"][0].lower() + err["msg"][1:]
    return InputError(field, f"{allowed}, got {err.get('input')!r}")
