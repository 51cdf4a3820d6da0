"""The scaling sweep as a Prefect flow: train a ladder of small real GPTs, fit the law, predict the next one.

1. The ladder: isoFLOP rows of real GPT shapes (N non-embedding params, D tokens, C = 6ND), checked
   before anything trains (a budget too small for the smallest model, a corpus too small for the tokens
   asked fail the flow at once with the reason).
2. Every rung trains as a Ray task calling ``train_gpt`` on the same corpus (CPU here, one GPU per rung
   when the Ray cluster has GPUs); each result is written as it finishes, so a failed or interrupted run
   resumes with ``resume=True`` without redoing finished rungs.
3. The law is fitted with bootstrap intervals; the fit suggests the extra runs that most narrow its
   prediction of the held-out (largest) rung; the prediction and its 90% interval are written *before*
   the held-out rung trains; then it trains and the error is reported.
4. A recommendation for the target with the fitted law's intervals; ``sweep.json``, ``runs.csv``
   (``planner fit`` reads it), ``fit.png`` and ``heldout.png`` in ``out_dir``.

Same code path as ``planner sweep`` (:func:`scaling_planner.sweep.runner.run_sweep`). Run it::

    python flows/scaling_sweep.py --ci --out /tmp/sweep        # the CI sweep, 4 min on 2 idle cores
    python flows/scaling_sweep.py --out sweep-results --summary benchmarks/results/sweep.json
"""

from __future__ import annotations

import sys

from .common import quiet_environment

quiet_environment()

from prefect import flow, get_run_logger  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from scaling_planner.sweep.design import SweepDefinition  # noqa: E402


class SweepRequest(BaseModel):
    """What to sweep and where the results go. ``definition`` None: the default sweep (or the CI one)."""

    model_config = ConfigDict(extra="forbid")

    definition: SweepDefinition | None = Field(None, description="the ladder, training and fit settings")
    ci: bool = Field(False, description="with no definition: the small CI sweep instead of the default")
    out_dir: str = Field("sweep-results", description="results directory (runs.csv, runs/, sweep.json, plots)")
    resume: bool = Field(False, description="continue the sweep in out_dir, skipping finished rungs")
    summary_path: str | None = Field(None, description="also write sweep.json here")
    plots: bool = Field(True, description="write fit.png and heldout.png")
    ray_address: str | None = Field(None, description="Ray cluster address; none = a local Ray instance")

    def resolved(self) -> SweepDefinition:
        if self.definition is not None:
            return self.definition
        return SweepDefinition.ci() if self.ci else SweepDefinition.default()


@flow(name="scaling-sweep", log_prints=True)
def scaling_sweep(request: SweepRequest | None = None) -> dict:
    """Train the ladder, fit, predict the held-out rung before training it, recommend; the sweep.json
    document. Fails with the reason for a bad definition (before training) or a rung that fails."""
    from scaling_planner.sweep.report import summary_lines
    from scaling_planner.sweep.runner import run_sweep

    req = request or SweepRequest()
    logger = get_run_logger()
    doc = run_sweep(req.resolved(), req.out_dir, resume=req.resume, ray_address=req.ray_address, log=logger.info,
                    summary_path=req.summary_path, plots=req.plots, command="flows/scaling_sweep.py")
    _publish(doc)
    for line in summary_lines(doc):
        logger.info(line)
    return doc


def _publish(doc: dict) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from scaling_planner.sweep.report import summary_lines

    create_markdown_artifact(key="scaling-sweep", description="the fit, the held-out prediction, the recommendation",
                             markdown="# Scaling sweep\n\n" + "\n".join(f"- {ln}" for ln in summary_lines(doc)))
    create_table_artifact(key="scaling-sweep-runs", description="every rung: N, D, final validation loss, speed",
                          table=[{"role": r["role"], "N": r["N"], "D": r["D"], "loss": round(r["loss"], 4),
                                  "tokens_per_s": round(r["tokens_per_s"] or 0), "mfu": r["mfu"]}
                                 for r in doc["runs"]])


def main(argv: list[str] | None = None) -> int:
    from scaling_planner.base.errors import PlannerError
    from scaling_planner.cli import OneLineParser
    from scaling_planner.sweep.report import summary_lines
    from scaling_planner.sweep.runner import prepare

    ap = OneLineParser(prog="python flows/scaling_sweep.py", description=__doc__.splitlines()[0])
    ap.add_argument("--ci", action="store_true", help="the small CI ladder (minutes) instead of the default one")
    ap.add_argument("--out", default="sweep-results", metavar="DIR",
                    help="where each run's result and the summary go (default sweep-results)")
    ap.add_argument("--resume", action="store_true", help="reuse the runs already finished in --out")
    ap.add_argument("--summary", metavar="FILE.json", help="also write the summary here")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots (default: written to --out)")
    ap.add_argument("--ray-address", metavar="HOST:PORT",
                    help="a Ray cluster to train the rungs on (default: a local Ray instance)")
    ap.add_argument("--budgets", metavar="C1,C2,...",
                    help="isoFLOP budgets in FLOPs, comma-separated (default: the ladder's own)")
    ap.add_argument("--corpus", metavar="FILE",
                    help="training text (default: the corpus shipped with the package)")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        fields = {}
        if a.budgets:
            fields["budgets_flops"] = [float(x) for x in a.budgets.split(",") if x.strip()]
        if a.corpus:
            fields["corpus"] = a.corpus
        definition = SweepDefinition.ci(**fields) if a.ci else SweepDefinition.default(**fields)
        prepare(definition)  # a bad definition: one line, before Prefect and Ray start
    except ValueError as exc:  # InputError is a ValueError; so is float('x')
        print(f"scaling_sweep: error: {exc}", file=sys.stderr)
        return 2
    try:
        doc = scaling_sweep(SweepRequest(definition=definition, out_dir=a.out, resume=a.resume,
                                         summary_path=a.summary, plots=not a.no_plots, ray_address=a.ray_address))
    except PlannerError as exc:
        print(f"scaling_sweep: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(summary_lines(doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
