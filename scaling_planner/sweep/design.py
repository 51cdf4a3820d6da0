"""The design of a scaling sweep: which (N, D) rungs to train, checked before anything trains.

Conventions (stated once, used everywhere in the sweep):

* **N** is the GPT's *non-embedding* parameter count, ``L (12 d^2 + 4 d) + 2 d``
  (:meth:`~scaling_planner.train.gpt.GPTConfig.params_nonembedding`; Kaplan et al. 2020 §2.1).
* **D** is the number of training tokens the run *sees* (bytes; whole optimizer steps of
  ``batch_size x seq_len`` tokens, so D is the requested tokens rounded to a step).
* **Compute** is ``C = 6 N D`` (Kaplan et al. 2020 Eq. 2.1, Hoffmann et al. 2022 §3): the budgets,
  the isoFLOP rows, the fitted law's compute axis and the recommendation all use it. The GPT's full
  per-token cost (``6 (N + V d) + 12 L d T``: the tied output head and attention,
  :meth:`~scaling_planner.train.gpt.GPTConfig.flops_per_token`) is 1.4-2.5x larger for these tiny
  byte-level models; every run records it too (``model_flops``), and MFU is measured against it.

The ladder (Hoffmann et al. 2022 Approach 2, "isoFLOP profiles"): for each budget C of
``budgets_flops``, ``sizes_per_budget`` model sizes log-spaced over a factor ``size_span`` around
``N_c = sqrt(C / (6 r))`` (r = ``tokens_per_param``, the row's centre), each snapped to the nearest
real shape of :func:`~scaling_planner.train.gpt.config_for_params` (duplicates dropped), trained on
``D = C / (6 N)`` tokens. The held-out rung sits at ``heldout_flops`` (default ``heldout_factor`` x
the largest budget), N at the same rule; it is trained last and predicted before it trains.

The fitter's suggestion (:func:`suggest`): after the isoFLOP rows are fitted, the extra runs that most
shrink the spread of the predicted held-out loss, by a linearised (ensemble Kalman) update of the
bootstrap draws: Evensen 1994's ensemble update of the covariance, used as a c-optimal design
criterion (Chaloner & Verdinelli 1995 §2.2: the variance of one linear functional of the parameters).

Learning rate: tuned per sweep on the smallest row's sizes and carried to every size by a fitted
power law (:mod:`.lr`; ``lr_tune``). Without tuning, the rule ``lr(N) = lr x (N / 1e5)^(-lr_exponent)``.
One rate for every size (3e-3, the first round's choice) cost the smallest models 0.3 nats at 2e11
FLOPs (12.5K params: 2.44 at 3e-3, 2.14 at 1e-2; 49.5K params were best near 3e-3) and pushed every
row's minimum to its edge.

Ladder centre: byte-level models this small (N non-embedding, embeddings not counted) find the row
minimum at several hundred tokens per parameter (``tokens_per_param`` 300), far from Chinchilla's 20;
:mod:`.bracket` extends a row whose minimum still sits at an edge.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..base.errors import InputError

FLOPS_PER_PARAM_TOKEN = 6.0
FLOPS_CONVENTION = ("C = 6·N·D: N = non-embedding parameters L(12d^2+4d)+2d, D = training tokens seen "
                    "(Kaplan et al. 2020 Eq. 2.1); model_flops (6(N+Vd)+12LdT per token, the tied head and "
                    "attention included) recorded beside it and used for MFU")
LR_REFERENCE_PARAMS = 1e5
DTYPES = ("auto", "fp32", "bf16", "tf32")
Role = Literal["lr_tune", "isoflop", "extension", "suggested", "heldout"]


class SweepDefinition(BaseModel):
    """What to sweep. Bad values raise :class:`InputError` naming the field (the CLI: one line, exit 2).

    Defaults are the default sweep; :meth:`ci` is the small one (timings: ``planner sweep --help``).
    Cross-checks against the corpus (too small for the tokens asked, a budget too small for the
    smallest model) happen in :func:`plan_ladder`, before anything trains.
    """

    model_config = ConfigDict(extra="forbid")

    budgets_flops: list[float] = Field(default_factory=lambda: [6e10, 1.2e11, 2.4e11, 6e11], min_length=2,
                                       description="isoFLOP budgets of the fitted ladder, C = 6·N·D")
    sizes_per_budget: int = Field(5, ge=2, le=12, description="model sizes per isoFLOP budget (before dedup)")
    size_span: float = Field(8.0, gt=1.0, le=1000.0, description="largest / smallest N in one isoFLOP row")
    tokens_per_param: float = Field(300.0, gt=0, description="D/N at the centre of each isoFLOP row (byte-level "
                                    "models this small, N non-embedding, find their optimum at several hundred)")
    suggested_runs: int = Field(2, ge=0, le=8, description="extra rungs chosen by the fitter to narrow the "
                                                           "held-out prediction")
    heldout_flops: float | None = Field(None, gt=0, description="compute of the held-out rung (default "
                                                                "heldout_factor x the largest budget)")
    heldout_factor: float = Field(10 / 3, gt=1.0, description="held-out compute / the largest budget")
    heldout_tokens_per_param: float | None = Field(200.0, gt=0, description="D/N of the held-out rung (None: "
                                                   "tokens_per_param; 200 keeps it within one pass of the corpus)")
    seq_len: int = Field(128, ge=8, le=4096)
    batch_size: int = Field(16, ge=1, le=4096, description="sequences per step, every rung")
    lr: float = Field(3e-3, gt=0, le=1.0, description="peak learning rate at N = 1e5 (without lr_tune)")
    lr_exponent: float = Field(0.0, ge=0.0, le=1.0, description="lr(N) = lr·(N/1e5)^-lr_exponent (without lr_tune)")
    lr_tune: bool = Field(True, description="tune the learning rate on the smallest row's sizes and carry it to "
                                            "every size by a fitted power law (sweep.lr); else the lr rule above")
    lr_grid: list[float] = Field(default_factory=lambda: [3e-3, 6e-3, 1.2e-2, 2.4e-2, 4.8e-2], min_length=3,
                                 description="learning rates tried per tuned size")
    lr_tune_sizes: int = Field(3, ge=1, le=8, description="sizes of the smallest row the learning rate is tuned on")
    lr_tune_flops: float | None = Field(None, gt=0, description="compute of each tuning run (default the "
                                                                "smallest budget)")
    max_extensions: int = Field(2, ge=0, le=6, description="rounds of extra rungs that extend a row whose minimum "
                                                          "sits at an edge (sweep.bracket)")
    calibrate_interval: bool = Field(True, description="widen the held-out interval by the backtests' "
                                                      "split-conformal factor (sweep.backtests)")
    backtest_bootstrap: int = Field(200, ge=20, le=5000, description="bootstrap replicates of each backtest fit")
    seed: int = Field(0, ge=0, description="initialisation and batch-order seed of every rung")
    dtype: str = Field("auto", description="auto (fp32 on CPU: faster than bf16 autocast there; bf16 on "
                                           "GPU), fp32, bf16, tf32")
    threads_per_rung: int = Field(1, ge=1, le=256, description="torch threads (and Ray CPUs) per rung")
    eval_batches: int = Field(16, ge=1, le=1000, description="validation batches for the final loss")
    corpus: str | None = Field(None, description="text file (.xz read decompressed); default the large corpus "
                                                 "shipped with the package (docs_large.txt.xz, 21.4M train tokens)")
    max_epochs: float = Field(1.0, gt=0, description="most passes over the train split a rung may ask for (1: no "
                                                     "rung repeats data; the Chinchilla form assumes fresh tokens)")
    min_steps: int = Field(100, ge=1, description="fewest optimizer steps a rung may have (runs of ~50-100 "
                                                  "steps sat 0.1-0.2 nats above the law fitted to the rest)")
    tied: bool = Field(False, description="fit with alpha = beta")
    bootstrap: int = Field(1000, ge=20, le=20000, description="bootstrap replicates for every interval")
    level: float = Field(0.9, gt=0, lt=1, description="interval level of the held-out prediction")
    target_loss: float | None = Field(None, gt=0, description="recommend the cheapest run reaching this loss")
    target_budget_flops: float | None = Field(None, gt=0, description="recommend the best run for this compute "
                                                                      "(default 10x the held-out compute)")

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "definition"
            msg = err["msg"].removeprefix("Value error, ")
            if not err["loc"] and ": " in msg:  # a cross-field check names its field first
                field, msg = msg.split(": ", 1)
            if err["type"] == "extra_forbidden":
                msg = f"not a sweep definition field (fields: {', '.join(type(self).model_fields)})"
            raise InputError(field, msg) from None

    @model_validator(mode="after")
    def _check(self):
        b = self.budgets_flops
        if any(not (math.isfinite(x) and x > 0) for x in b):
            raise ValueError(f"budgets_flops: every budget must be a finite number > 0, got {b}")
        if any(y <= x for x, y in itertools.pairwise(b)):
            raise ValueError(f"budgets_flops: budgets must be strictly increasing, got {b}")
        if self.heldout_flops is not None and self.heldout_flops <= b[-1]:
            raise ValueError(f"heldout_flops: {self.heldout_flops:.3g} must exceed the largest ladder budget "
                             f"{b[-1]:.3g} (the held-out rung is an extrapolation)")
        if not math.isfinite(self.heldout_compute_flops):
            field = "heldout_flops" if self.heldout_flops is not None else "heldout_factor"
            raise ValueError(f"{field}: the held-out compute must be a finite number of FLOPs, got "
                             f"{self.heldout_compute_flops!r}")
        if any(not (math.isfinite(x) and 0 < x <= 1) for x in self.lr_grid):
            raise ValueError(f"lr_grid: every learning rate must be in (0, 1], got {self.lr_grid}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.target_loss is not None and self.target_budget_flops is not None:
            raise ValueError("target_loss: give target_loss or target_budget_flops, not both")
        return self

    @classmethod
    def default(cls, **overrides) -> SweepDefinition:
        return cls(**overrides)

    @classmethod
    def ci(cls, **overrides) -> SweepDefinition:
        """The CI sweep: three budgets of four sizes, a learning rate tuned on two sizes at three rates,
        one suggested rung, a held-out at 3.3x."""
        base = {"budgets_flops": [3e10, 1e11, 3e11], "sizes_per_budget": 4, "size_span": 6.0,
                "tokens_per_param": 300.0,
                "suggested_runs": 1, "heldout_factor": 10 / 3, "heldout_tokens_per_param": 100.0,
                "bootstrap": 400, "eval_batches": 8,
                "lr_grid": [4e-3, 1.2e-2, 3.6e-2], "lr_tune_sizes": 2, "max_extensions": 1, "backtest_bootstrap": 100}
        base.update(overrides)
        return cls(**base)

    def lr_for(self, params: float) -> float:
        """The learning-rate rule (module docstring)."""
        return self.lr * (params / LR_REFERENCE_PARAMS) ** (-self.lr_exponent)

    @property
    def heldout_compute_flops(self) -> float:
        return self.heldout_flops if self.heldout_flops is not None else self.heldout_factor * self.budgets_flops[-1]

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


# -- shapes --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """One GPT shape of :func:`~scaling_planner.train.gpt.config_for_params`; ``params`` is its N."""

    n_layer: int
    n_head: int
    d_model: int
    params: int


SMALL_WIDTHS = (8, 16, 24, 40, 56, 72)
"""Widths of the one-layer models the catalogue adds below and between config_for_params' smallest shapes
(816, 3.2K, 7.1K, 19.4K, 37.9K and 62.6K non-embedding parameters): the isoFLOP rows of byte-level models this small
find their minimum at 300-1,500 tokens per parameter (the row optima of the default and CI ladders), left of
config_for_params' 12.5K-parameter floor."""


@lru_cache(maxsize=8)
def shape_catalogue(seq_len: int = 128, max_params: float = 2e8) -> tuple[Shape, ...]:
    """Every distinct shape ``config_for_params`` returns for targets from its smallest model up to
    ``max_params`` (a log grid of 40 targets per decade) and the one-layer models of :data:`SMALL_WIDTHS`,
    sorted by N. Imports torch (the GPT module)."""
    from ..train.gpt import config_for_params

    seen: dict[int, Shape] = {}
    for d in SMALL_WIDTHS:  # one-layer models below config_for_params' range (head dim 8)
        n = 12 * d * d + 4 * d + 2 * d
        seen[n] = Shape(1, d // 8, d, n)
    for target in np.geomspace(1.2e4, max_params, int(40 * math.log10(max_params / 1.2e4)) + 1):
        try:
            cfg = config_for_params(float(target), seq_len=seq_len)
        except InputError:
            continue
        n = cfg.params_nonembedding()
        seen.setdefault(n, Shape(cfg.n_layer, cfg.n_head, cfg.d_model, n))
    return tuple(sorted(seen.values(), key=lambda s: s.params))


def snap(target_params: float, catalogue: tuple[Shape, ...]) -> Shape:
    """The catalogue shape nearest ``target_params`` in log N (a target that underflowed to 0 or overflowed to
    inf, from extreme definition values, snaps to the smallest or the largest shape; the ladder's checks then
    say what is wrong)."""
    logs = np.log([s.params for s in catalogue])
    target = min(max(float(target_params), 1e-300), 1e300) if not math.isnan(target_params) else 1.0
    return catalogue[int(np.argmin(np.abs(logs - math.log(target))))]


# -- rungs ---------------------------------------------------------------------------------------------

class Rung(BaseModel):
    """One training run of the sweep. ``budget_flops`` is the isoFLOP row's nominal C (the actual
    ``compute_flops = 6 N D`` differs by the snapping of N and the rounding of D to whole steps)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    budget_flops: float
    n_layer: int
    n_head: int
    d_model: int
    params: int = Field(description="N, non-embedding parameters")
    tokens: int = Field(description="D, training tokens (whole steps)")
    lr: float

    @property
    def compute_flops(self) -> float:
        return FLOPS_PER_PARAM_TOKEN * self.params * self.tokens

    def label(self) -> str:
        from ..base.units import format_si

        return f"N={format_si(self.params)} D={format_si(self.tokens)}"

    def key(self, settings: dict) -> str:
        """Identity of the run for resume: the shape, tokens, lr and every training setting that changes
        the result (``settings``: seq_len, batch size, seed, dtype, device kind, eval batches, corpus); a
        learning-rate tuning run is never the same run as a rung of the ladder."""
        spec = {"n_layer": self.n_layer, "n_head": self.n_head, "d_model": self.d_model, "tokens": self.tokens,
                "lr": float(f"{self.lr:.6g}"), **settings}
        if self.role == "lr_tune":
            spec["purpose"] = "lr_tune"
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        return f"L{self.n_layer}-d{self.d_model}-D{self.tokens}-{digest}"


def parabola_minimum(x, y) -> tuple[float, float] | None:
    """(x, y) of the minimum of the parabola through three points ``(x, y)`` (``x`` in log units: log N,
    log lr), or None when the parabola has no minimum (it opens downward or is flat). Hoffmann et al. 2022
    Approach 2 reads a row's optimum off it; :mod:`.lr` a size's best learning rate."""
    c2, c1, c0 = np.polyfit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 2)
    if c2 <= 0:
        return None
    return float(-c1 / (2 * c2)), float(c0 - c1 * c1 / (4 * c2))


def _steps_for(compute_flops: float, params: int, tokens_per_step: int) -> int:
    return max(1, round(compute_flops / (FLOPS_PER_PARAM_TOKEN * params) / tokens_per_step))


def _make_rung(defn: SweepDefinition, role: Role, budget: float, shape: Shape, steps: int) -> Rung:
    return Rung(role=role, budget_flops=budget, n_layer=shape.n_layer, n_head=shape.n_head, d_model=shape.d_model,
                params=shape.params, tokens=steps * defn.tokens_per_step, lr=defn.lr_for(shape.params))


@dataclass(frozen=True)
class CorpusSize:
    """What validation needs to know of the corpus: its name and split sizes (tokens = bytes)."""

    name: str
    train_tokens: int
    val_tokens: int


@dataclass
class Ladder:
    """The planned rungs: the isoFLOP rows (fitted) and the held-out rung (predicted, then trained)."""

    rows: dict[float, list[Rung]]
    heldout: Rung

    @property
    def isoflop(self) -> list[Rung]:
        return [r for row in self.rows.values() for r in row]

    def with_lr(self, lr_for) -> Ladder:
        """The same ladder with every rung's learning rate ``lr_for(N)``."""
        def re(r: Rung) -> Rung:
            return r.model_copy(update={"lr": float(lr_for(r.params))})

        return Ladder(rows={C: [re(r) for r in row] for C, row in self.rows.items()}, heldout=re(self.heldout))


def _check_rung(defn: SweepDefinition, corpus: CorpusSize, rung: Rung, smallest: Shape, where: str) -> None:
    steps = rung.tokens // defn.tokens_per_step
    if steps < defn.min_steps:
        need = FLOPS_PER_PARAM_TOKEN * rung.params * defn.min_steps * defn.tokens_per_step
        if rung.params == smallest.params:
            raise InputError(where, f"{rung.budget_flops:.3g} FLOPs is too small for the smallest model "
                             f"({smallest.params:,} non-embedding params): it buys {steps} step(s) of "
                             f"{defn.tokens_per_step:,} tokens, a rung needs >= {defn.min_steps} steps "
                             f"(>= {need:.2g} FLOPs)")
        raise InputError(where, f"{rung.budget_flops:.3g} FLOPs gives the {rung.params:,}-param rung only {steps} "
                         f"step(s) (< min_steps {defn.min_steps}; needs >= {need:.2g} FLOPs); raise the budget, "
                         f"lower size_span or raise tokens_per_param")
    epochs = rung.tokens / corpus.train_tokens
    if epochs > defn.max_epochs:
        raise InputError("corpus", f"{corpus.name} is too small for the tokens asked: the {rung.role} rung "
                         f"N={rung.params:,} at {rung.budget_flops:.3g} FLOPs asks for {rung.tokens:,} tokens = "
                         f"{epochs:.1f} epochs of its "
                         f"{corpus.train_tokens:,} train tokens (max_epochs {defn.max_epochs:g}); give a larger "
                         f"corpus, lower the budget or lower tokens_per_param")


def plan_ladder(defn: SweepDefinition, corpus: CorpusSize) -> Ladder:
    """The isoFLOP rows and the held-out rung, or :class:`InputError` with one clear reason.

    Rejected up front: a budget too small for the smallest model (fewer than ``min_steps`` steps), a
    corpus too small for the tokens asked (more than ``max_epochs`` passes over its train split), a
    row left with one model size after snapping, too few rungs to fit the law, a held-out rung that
    is not the largest in compute, a context longer than a split.
    """
    if corpus.val_tokens < defn.seq_len + 1 or corpus.train_tokens < defn.seq_len + 1:
        raise InputError("seq_len", f"{defn.seq_len} + 1 tokens do not fit in the splits of {corpus.name} "
                                    f"({corpus.train_tokens:,} train, {corpus.val_tokens:,} validation tokens)")
    catalogue = shape_catalogue(defn.seq_len)
    smallest = catalogue[0]
    rows: dict[float, list[Rung]] = {}
    for C in defn.budgets_flops:
        centre = math.sqrt(C / (FLOPS_PER_PARAM_TOKEN * defn.tokens_per_param))
        targets = centre * defn.size_span ** np.linspace(-0.5, 0.5, defn.sizes_per_budget)
        shapes = sorted({snap(t, catalogue) for t in targets}, key=lambda s: s.params)
        row = [_make_rung(defn, "isoflop", C, s, _steps_for(C, s.params, defn.tokens_per_step)) for s in shapes]
        for rung in row:
            _check_rung(defn, corpus, rung, smallest, "budgets_flops")
        if len(row) < 2:
            raise InputError("budgets_flops", f"the isoFLOP row at {C:.3g} FLOPs has one model size "
                             f"({row[0].params:,} params) after snapping to real shapes; raise size_span or the budget")
        rows[C] = row
    n_params = 4 if defn.tied else 5
    rungs = [r for row in rows.values() for r in row]
    if len({(r.params, r.tokens) for r in rungs}) < n_params + 1:
        raise InputError("sizes_per_budget", f"the ladder has {len(rungs)} distinct rungs; fitting {n_params} "
                         f"parameters needs at least {n_params + 1} (add budgets or sizes)")
    C_h = defn.heldout_compute_flops
    r_h = defn.heldout_tokens_per_param or defn.tokens_per_param
    shape = snap(math.sqrt(C_h / (FLOPS_PER_PARAM_TOKEN * r_h)), catalogue)
    heldout = _make_rung(defn, "heldout", C_h, shape, _steps_for(C_h, shape.params, defn.tokens_per_step))
    _check_rung(defn, corpus, heldout, smallest, "heldout_flops")
    biggest = max(r.compute_flops for r in rungs)
    if heldout.compute_flops <= biggest:
        raise InputError("heldout_flops", f"the held-out rung's compute {heldout.compute_flops:.3g} FLOPs (after "
                         f"snapping) is not above the largest ladder rung's {biggest:.3g}; raise heldout_flops")
    return Ladder(rows=rows, heldout=heldout)


# -- the fitter's suggestion ---------------------------------------------------------------------------

def candidate_rungs(defn: SweepDefinition, corpus: CorpusSize, done: list[Rung], heldout: Rung,
                    n_tokens_grid: int = 16) -> list[Rung]:
    """Rungs the fitter may suggest: real shapes from the ladder's smallest N up to the held-out N, D on
    a log grid up to the corpus limit, compute between the two largest ladder budgets (a suggestion
    costs no more than a top-row rung, and no less than the row below: the prediction is an
    extrapolation upwards, and the linearised criterion of :func:`suggest` is least trustworthy far
    below the data), none within 5% in N and 10% in D of a done rung."""
    catalogue = shape_catalogue(defn.seq_len)
    n_lo = min(r.params for r in done)
    n_hi = max(max(r.params for r in done), heldout.params)
    shapes = [s for s in catalogue if n_lo <= s.params <= n_hi]
    cap = defn.budgets_flops[-1]
    floor = defn.budgets_flops[-2]
    d_lo = defn.min_steps * defn.tokens_per_step
    d_hi = min(defn.max_epochs * corpus.train_tokens, cap / (FLOPS_PER_PARAM_TOKEN * n_lo))
    if d_hi <= d_lo:
        return []
    steps = sorted({round(d / defn.tokens_per_step) for d in np.geomspace(d_lo, d_hi, n_tokens_grid)})
    done_logs = np.array([[math.log(r.params), math.log(r.tokens)] for r in done])
    out = []
    for s in shapes:
        for k in steps:
            rung = _make_rung(defn, "suggested", cap, s, k)
            if not floor <= rung.compute_flops <= cap * 1.0001 or rung.tokens > defn.max_epochs * corpus.train_tokens:
                continue
            near = (np.abs(done_logs[:, 0] - math.log(rung.params)) < 0.05) & \
                   (np.abs(done_logs[:, 1] - math.log(rung.tokens)) < 0.1)
            if not near.any():
                out.append(rung.model_copy(update={"budget_flops": rung.compute_flops}))
    return out


def _log_loss(draws: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """log L(N, D) for every draw (rows) and point (columns); draws are rows of (E, A, B, alpha, beta)."""
    E, A, B, a, b = (draws[:, i : i + 1] for i in range(5))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return np.log(E + A / N[None, :] ** a + B / D[None, :] ** b)


@dataclass
class Suggestion:
    index: int  # into the candidate list
    sd_before: float  # predicted sd of log L at the target before this pick (the ensemble's)
    sd_after: float  # after observing this candidate (linearised update)


def suggest(draws: np.ndarray, candidates_N, candidates_D, target_N: float, target_D: float, k: int,
            noise_sd: float) -> list[Suggestion]:
    """Greedily pick ``k`` candidates that most shrink the variance of log L̂ at the target.

    The bootstrap draws are an ensemble of plausible laws. For the ensemble's predictions f = log L̂
    at the candidates and the target, observing candidate j (noise variance s^2 = ``noise_sd``^2 in log
    loss) shrinks the target's variance by ``Cov(t, j)^2 / (Var(j) + s^2)`` under a linear-Gaussian
    approximation, and updates the covariance ``Cov <- Cov - Cov[:, j] Cov[j, :] / (Var(j) + s^2)``
    (Evensen 1994's ensemble Kalman update). The pick with the largest shrinkage is taken, the
    covariance updated, and so on: a cheap c-optimal design (Chaloner & Verdinelli 1995) that needs no
    refits. Draws are winsorised at their 2nd/98th percentiles per point first, so a few wild
    bootstrap fits do not decide the design. Returns the picks in order with the target's predicted sd.
    """
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.all(np.isfinite(draws), axis=1)]
    N = np.append(np.asarray(candidates_N, dtype=float), target_N)
    D = np.append(np.asarray(candidates_D, dtype=float), target_D)
    if k <= 0 or N.size <= 1 or draws.shape[0] < 3:
        return []
    F = _log_loss(draws, N, D)
    F = F[np.all(np.isfinite(F), axis=1)]
    if F.shape[0] < 3:
        return []
    lo, hi = np.percentile(F, [2, 98], axis=0)
    F = np.clip(F, lo, hi)
    cov = np.cov(F, rowvar=False)
    t = N.size - 1
    noise = max(float(noise_sd), 1e-6) ** 2
    picks: list[Suggestion] = []
    available = np.ones(t, dtype=bool)
    for _ in range(min(k, t)):
        gain = np.where(available, cov[t, :t] ** 2 / (np.diag(cov)[:t] + noise), -np.inf)
        j = int(np.argmax(gain))
        if not np.isfinite(gain[j]) or gain[j] <= 1e-9 * cov[t, t]:  # nothing left worth a run
            break
        before = math.sqrt(max(cov[t, t], 0.0))
        cov = cov - np.outer(cov[:, j], cov[j, :]) / (cov[j, j] + noise)
        picks.append(Suggestion(index=j, sd_before=before, sd_after=math.sqrt(max(cov[t, t], 0.0))))
        available[j] = False
    return picks
