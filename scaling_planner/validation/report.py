"""``planner validate``'s document: every validation case with its prediction and error, one summary per
group, and the published end-to-end runs scored leave-one-out (:mod:`.tuned`, :mod:`.published`).

The README's "How far to trust the training estimates" section is generated from this output
(``scripts/validation_readme.py``), so the numbers a user reads are the ones this code computes.
"""

from __future__ import annotations

import math
import time

import numpy as np
from pydantic import BaseModel, Field


class CaseRow(BaseModel):
    name: str
    status: str = Field(description="strict (scored), miss (scored, a known miss with its reason), unsupported "
                                    "(not modelled, not scored)")
    metric: str
    published: float
    predicted: float | None
    error: float | None = Field(description="predicted / published - 1")
    within_tolerance: bool | None
    layout: str = ""
    note: str = ""


class GroupReport(BaseModel):
    id: str
    title: str
    source: str
    tolerance: float
    cases: list[CaseRow]
    scored_cases: int = Field(description="strict and known-miss cases")
    known_misses: int
    within_tolerance: int
    median_abs_error: float | None = Field(description="over the scored cases")
    max_abs_error: float | None


class RunRow(BaseModel):
    name: str
    tier: str
    role: str
    gpu: str
    gpus: int
    gpus_source: str
    published_gpu_hours: float
    predicted_gpu_hours: float = Field(description="P50: leave-one-out for scored runs, the shipped prior otherwise")
    p10: float
    p90: float
    log_error: float = Field(description="log(published / predicted)")
    in_band: bool
    tuned_gpu_hours: float = Field(description="the tuned stack plus failures (no end-to-end prior)")
    note: str = ""


class PublishedReport(BaseModel):
    source: str
    runs: list[RunRow]
    summary: dict = Field(description="leave-one-out figures of the scored runs (the acceptance reads these)")
    mechanism: dict = Field(description="leave-one-out error with and without the eager-stack traffic")
    tier_c: dict = Field(description="tier C runs predicted by the shipped prior: an out-of-sample check")
    bounds: list[str] = Field(default_factory=list, description="upper-bound rows: does the prediction stay below")


class ValidationReport(BaseModel):
    groups: list[GroupReport]
    published: PublishedReport
    seconds: float


def tuned_groups() -> list[GroupReport]:
    from . import tuned

    out = []
    for g in tuned.load_groups():
        rows = []
        for c in g.cases:
            r = tuned.predict(c)
            rows.append(CaseRow(name=c.name, status=c.status, metric=c.metric, published=c.measured,
                                predicted=r.predicted, error=r.error,
                                within_tolerance=None if r.error is None else r.within, layout=r.layout,
                                note=c.reason or "; ".join(r.notes)))
        errs = [abs(r.error) for r in rows if r.status in tuned.SCORED and r.error is not None]
        out.append(GroupReport(id=g.id, title=g.title, source=g.source, tolerance=g.tolerance, cases=rows,
                               scored_cases=len(errs), known_misses=sum(r.status == "miss" for r in rows),
                               within_tolerance=sum(e <= g.tolerance for e in errs),
                               median_abs_error=float(np.median(errs)) if errs else None,
                               max_abs_error=max(errs) if errs else None))
    return out


def published_report() -> PublishedReport:
    from ..simulate.training.end_to_end import load_prior
    from . import published as pub

    prior = load_prior()
    loo = pub.leave_one_out()
    by_name = {n: i for i, n in enumerate(loo.names)}
    rows, tier_c, bounds = [], [], []
    for c in pub.curves():
        run = c.run
        if run.name in by_name:
            i = by_name[run.name]
            p50, p10, p90 = float(loo.predicted[i]), float(loo.p10[i]), float(loo.p90[i])
        else:
            p50, p10, p90 = pub.predict_with(prior, c)
        err = math.log(run.gpu_hours / p50)
        rows.append(RunRow(name=run.name, tier=run.tier, role=run.role, gpu=run.profile, gpus=c.gpus,
                           gpus_source=c.gpus_source, published_gpu_hours=run.gpu_hours, predicted_gpu_hours=p50,
                           p10=p10, p90=p90, log_error=err, in_band=p10 <= run.gpu_hours <= p90,
                           tuned_gpu_hours=float(c.hours[0]), note=run.note))
        if run.role.startswith("tier C"):
            tier_c.append((err, p10 <= run.gpu_hours <= p90))
        if run.role.startswith("bound"):
            ok = p50 <= run.gpu_hours
            bounds.append(f"{run.name}: predicted {p50:,.0f} GPU-h {'<=' if ok else '>'} the upper bound "
                          f"{run.gpu_hours:,.0f} ({'holds' if ok else 'broken'})")
    tc = {"runs": len(tier_c),
          "median_abs_log_error": float(np.median([abs(e) for e, _ in tier_c])) if tier_c else None,
          "band_coverage_p10_p90": float(np.mean([b for _, b in tier_c])) if tier_c else None}
    return PublishedReport(source="validation/data/published_runs.csv (from ../shared/data/published_runs.csv, "
                                  "each row's source in the file)",
                           runs=rows, summary=loo.summary, mechanism=pub.mechanism_gain(), tier_c=tc, bounds=bounds)


def build() -> ValidationReport:
    t0 = time.perf_counter()
    groups = tuned_groups()
    published = published_report()
    return ValidationReport(groups=groups, published=published, seconds=time.perf_counter() - t0)
