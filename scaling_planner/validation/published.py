"""The end-to-end validation: published pre-training runs (``data/published_runs.csv``) predicted by
the planner's own estimate, scored leave-one-out, and the fit of the end-to-end prior
(:mod:`scaling_planner.simulate.training.end_to_end`).

Each run is simulated as ``planner simulate`` would: the shape derived from N (and, for an MoE, the
experts, top-k and active parameters) with the run's sequence length and vocabulary, on its hardware
profile and GPU count (where the source gives none, the planner's own choice: the smallest
power-of-two number of nodes that trains it within 90 days at the tuned figure) and its global batch
where published. Each run is priced twice: by the tuned stack (X = 0) and with the eager-layer
traffic of step 1 (X = :data:`~scaling_planner.simulate.training.end_to_end.EAGER_UNFUSED_BYTES`, a count,
not a fit), the best layout re-chosen for each.

Fit (median regression): ``log_factor`` = the median of log(published / predicted). Leave-one-out:
each scored run is predicted from a fit on the others, and its band from the others' own
leave-one-out residuals (nested), so the reported error and coverage are out of sample.
:func:`mechanism_gain` repeats the leave-one-out without step 1, so the mechanism shows what it
earns.

Roles (``role`` column): ``scored`` (tiers A and B); ``excluded: distilled`` / ``excluded:
implausible`` (the data notes say why; predicted and shown, not scored); ``bound: upper`` (hours
are an upper bound: checked that the prediction stays below); ``tier C: not scored`` (a secondary
or coarse source: predicted from the full fit and shown as an out-of-sample check); ``no hours``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np

from ..base.errors import InfeasibleError
from ..base.units import SECONDS_PER_DAY, SECONDS_PER_HOUR
from ..hardware.profiles import get_profile
from ..simulate.architecture import moe_shape_for_params, shape_for_params
from ..simulate.reliability import checkpoint_bytes, goodput
from ..simulate.training.end_to_end import EAGER_UNFUSED_BYTES, EndToEndPrior, best_for_stack, percentile_band
from ..simulate.training.search import search_layouts

# X of step 1: the tuned stack (0) and the eager-layer count; the fit uses the last, the first shows
# what the mechanism is worth (leave-one-out with and without it)
UNFUSED_GRID = (0.0, EAGER_UNFUSED_BYTES)
PLANNER_TARGET_DAYS = 90.0  # the planner's default wall-clock when no GPU count is given
MAX_NODE_DOUBLINGS = 14
SCORED = "scored"


@dataclass(frozen=True)
class PublishedRun:
    name: str
    params: float
    active_params: float | None
    experts: int | None
    top_k: int | None
    shared_experts: int
    tokens: float
    profile: str
    gpus: int | None
    seq_len: int
    vocab_size: int
    global_batch_tokens: float | None
    precision: str
    stack: str
    gpu_hours: float | None
    tier: str
    role: str
    note: str
    source: str

    @property
    def n_active(self) -> float:
        return self.active_params or self.params


def _num(x: str) -> float | None:
    return float(x) if x.strip() else None


@cache
def load_runs() -> tuple[PublishedRun, ...]:
    text = resources.files(__package__).joinpath("data", "published_runs.csv").read_text(encoding="utf-8")
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        out.append(PublishedRun(
            name=r["name"], params=float(r["params"]), active_params=_num(r["active_params"]),
            experts=int(r["experts"]) if r["experts"] else None, top_k=int(r["top_k"]) if r["top_k"] else None,
            shared_experts=int(r["shared_experts"] or 0), tokens=float(r["tokens"]), profile=r["profile"],
            gpus=int(r["gpus"]) if r["gpus"] else None, seq_len=int(r["seq_len"]), vocab_size=int(r["vocab_size"]),
            global_batch_tokens=_num(r["global_batch_tokens"]), precision=r["precision"], stack=r["stack"],
            gpu_hours=_num(r["gpu_hours"]), tier=r["tier"], role=r["role"], note=r["note"], source=r["source"]))
    return tuple(out)


def run_architecture(run: PublishedRun):
    if run.experts:
        return moe_shape_for_params(run.params, experts=run.experts, top_k=run.top_k or 1,
                                    active_params=run.active_params, shared_experts=run.shared_experts,
                                    seq_len=run.seq_len, vocab_size=run.vocab_size)
    return shape_for_params(run.params, seq_len=run.seq_len, vocab_size=run.vocab_size)


@dataclass
class RunCurve:
    """One run's predicted GPU-hours for every X of :data:`UNFUSED_GRID` (before the end-to-end factor)."""

    run: PublishedRun
    gpus: int
    gpus_source: str
    hours: np.ndarray  # GPU-hours (goodput included) per X
    tuned_mfu: float
    notes: list = field(default_factory=list)


def _curve_at(run: PublishedRun, arch, profile, gpus: int, batch: int | None):
    from ..simulate.efficiency import DeviceRates

    rates = DeviceRates(profile, run.precision)
    out = search_layouts(arch, rates, gpus, global_batch=batch)
    if out.order.size == 0:
        return None
    st, res = out.result["step"], out.result
    ckpt = float(checkpoint_bytes(run.params))
    hours, tuned_mfu = [], float(res["mfu"][out.order[0]])
    for x in UNFUSED_GRID:
        i = best_for_stack(st["total"], st["unfused_s_per_byte"], res["tokens_per_step"], out.order, x)
        step = float(st["total"][i] + x * st["unfused_s_per_byte"][i])
        ideal = run.tokens / float(res["tokens_per_step"][i]) * step
        gp = goodput(ideal, gpus, ckpt)
        hours.append(float(gp.wall_clock_s) * gpus / SECONDS_PER_HOUR)
    return np.array(hours), tuned_mfu


def run_curve(run: PublishedRun) -> RunCurve | None:
    """The run's GPU-hours curve over X, or None when no layout fits."""
    arch = run_architecture(run)
    profile = get_profile(run.profile)
    batch = None if run.global_batch_tokens is None else max(1, round(run.global_batch_tokens / run.seq_len))
    if run.gpus is not None:
        got = _curve_at(run, arch, profile, run.gpus, batch)
        return None if got is None else RunCurve(run, run.gpus, "published", got[0], got[1])
    node = int(profile.devices_per_node)
    for k in range(MAX_NODE_DOUBLINGS + 1):
        g = node * 2**k
        try:
            got = _curve_at(run, arch, profile, g, batch)
        except InfeasibleError:
            got = None
        if got is not None and got[0][0] / g / 24.0 <= PLANNER_TARGET_DAYS:
            return RunCurve(run, g, "the planner's choice (not published)", got[0], got[1])
    return None


@cache
def curves() -> tuple[RunCurve, ...]:
    """Every run with published hours, simulated once (cached for the process)."""
    out = []
    for run in load_runs():
        if run.gpu_hours is None:
            continue
        c = run_curve(run)
        if c is not None:
            out.append(c)
    return tuple(out)


# -- the fit -----------------------------------------------------------------------------------------

def _log_residuals(cs) -> np.ndarray:
    """log(published / predicted) for each run (rows) and X (columns)."""
    pub = np.array([c.run.gpu_hours for c in cs])
    return np.log(pub[:, None] / np.array([c.hours for c in cs]))


STACK = len(UNFUSED_GRID) - 1  # the column the prior uses: the eager-layer traffic


def fit(r: np.ndarray, column: int = STACK) -> tuple[int, float]:
    """(column, log_factor): the median of the rows' log(published / predicted) in ``column``
    (median regression of a constant: the P50 of the runs' end-to-end factor)."""
    return column, float(np.median(r[:, column]))


@dataclass
class LooResult:
    """Leave-one-out predictions of the scored runs and the summary the acceptance reads."""

    names: list
    predicted: np.ndarray  # P50 GPU-hours
    p10: np.ndarray
    p90: np.ndarray
    published: np.ndarray
    log_error: np.ndarray  # log(published / predicted)
    covered: np.ndarray
    unfused_bytes: np.ndarray  # X chosen in each fold
    constant_mfu_log_error: np.ndarray
    summary: dict


def implied_log_mfu(runs) -> np.ndarray:
    """log of each run's implied MFU: 6 N_active D / (GPU-hours x 3600 x dense bf16 peak)."""
    return np.array([math.log(6.0 * r.n_active * r.tokens / (r.gpu_hours * SECONDS_PER_HOUR
                                                             * get_profile(r.profile).peak_flops_per_s("bf16")))
                     for r in runs])


def constant_mfu_log_errors(runs) -> np.ndarray:
    """Leave-one-out log(published / predicted) of the best single MFU, fitted the same way (the
    median of the other runs' implied log MFU)."""
    lm = implied_log_mfu(runs)
    return np.array([np.median(np.delete(lm, i)) - lm[i] for i in range(lm.size)])


def leave_one_out(cs=None, column: int = STACK) -> LooResult:
    """Out-of-sample predictions of every scored run (module docstring); ``column`` 0 leaves out
    step 1 (the tuned stack plus goodput and the fitted factor only)."""
    cs = [c for c in (cs or curves()) if c.run.role == SCORED]
    r = _log_residuals(cs)
    n = len(cs)
    pred, lo, hi, xs = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        j, mu = fit(r[keep], column)
        pred[i] = cs[i].hours[j] * math.exp(mu)
        xs[i] = UNFUSED_GRID[j]
        inner = []
        for k in np.flatnonzero(keep):
            keep2 = keep & (np.arange(n) != k)
            j2, mu2 = fit(r[keep2], column)
            inner.append(r[k, j2] - mu2)
        q10, q90 = percentile_band(inner)
        lo[i], hi[i] = pred[i] * math.exp(q10), pred[i] * math.exp(q90)
    pub = np.array([c.run.gpu_hours for c in cs])
    err = np.log(pub / pred)
    covered = (pub >= lo) & (pub <= hi)
    const = constant_mfu_log_errors([c.run for c in cs])
    med = float(np.median(np.abs(err)))
    med_const = float(np.median(np.abs(const)))
    summary = {
        "runs": n,
        "loo_median_abs_log_error": med,
        "loo_mean_log_error": float(np.mean(err)),
        "loo_max_abs_log_error": float(np.max(np.abs(err))),
        "constant_mfu_loo_median_abs_log_error": med_const,
        "ratio_to_constant_mfu": med / med_const,
        "constant_mfu": float(math.exp(np.median(implied_log_mfu([c.run for c in cs])))),
        "band_coverage_p10_p90": float(np.mean(covered)),
        "median_p90_over_p10": float(np.median(hi / lo)),
        "tuned_median_ratio_published_over_predicted": float(math.exp(np.median(r[:, 0]))),
    }
    return LooResult([c.run.name for c in cs], pred, lo, hi, pub, err, covered, xs, const, summary)


def mechanism_gain(cs=None) -> dict:
    """Leave-one-out median |log error| with and without step 1 (the eager-layer traffic)."""
    return {"without_unfused_traffic": leave_one_out(cs, 0).summary["loo_median_abs_log_error"],
            "with_unfused_traffic": leave_one_out(cs, STACK).summary["loo_median_abs_log_error"]}


def fit_prior(tuned_band: tuple[float, float], cs=None) -> dict:
    """The end-to-end prior fitted on every scored run, with the band from their leave-one-out
    residuals (the JSON :func:`~scaling_planner.simulate.training.end_to_end.load_prior` reads)."""
    cs = [c for c in (cs or curves()) if c.run.role == SCORED]
    j, mu = fit(_log_residuals(cs))
    loo = leave_one_out(cs)
    q10, q90 = percentile_band(loo.log_error)
    return {
        "unfused_bytes_per_element": UNFUSED_GRID[j], "log_factor": round(mu, 6),
        "log_p10": round(q10, 6), "log_p90": round(q90, 6),
        "tuned_log_p10": round(tuned_band[0], 6), "tuned_log_p90": round(tuned_band[1], 6),
        "runs": len(cs),
        "source": "scaling_planner.validation.published.fit_prior on validation/data/published_runs.csv "
                  f"(scored tiers A and B); leave-one-out median |log error| "
                  f"{loo.summary['loo_median_abs_log_error']:.3f}, P10-P90 coverage "
                  f"{loo.summary['band_coverage_p10_p90']:.0%}; regenerate with scripts/fit_end_to_end_prior.py",
    }


def predict_with(prior: EndToEndPrior, c: RunCurve) -> tuple[float, float, float]:
    """(P50, P10, P90) GPU-hours of a run under ``prior`` (the shipped one for tier C and excluded rows)."""
    p50 = float(c.hours[STACK]) * math.exp(prior.log_factor)
    f10, f90 = prior.factor_band("realised")
    return p50, p50 * f10, p50 * f90


def days(c: RunCurve, hours: float) -> float:
    return hours / c.gpus / (SECONDS_PER_DAY / SECONDS_PER_HOUR)
