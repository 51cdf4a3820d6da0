"""Run a scaling sweep: the one code path of ``planner sweep`` and ``flows/scaling_sweep.py``.

1. Plan and check the ladder (:func:`~.design.plan_ladder`): bad definitions fail here, before Ray starts.
2. Train the isoFLOP rows as Ray tasks (``num_cpus = threads_per_rung``, one torch thread each by
   default, so two rungs run at once on 2 cores; ``num_gpus=1`` each when the cluster has GPUs), the
   largest compute first (shortest makespan). Each finished rung is appended to the store at once.
3. Fit the law with bootstrap draws; choose ``suggested_runs`` extra rungs that most narrow the
   held-out prediction (:func:`~.design.suggest`); train them.
4. Fit the fitted rungs again; predict the held-out rung with its interval and **write the prediction
   before the held-out rung trains**; train it; judge the prediction (:mod:`.heldout`).
5. Fit all rungs, recommend for the target (:func:`scaling_planner.recommend`), write ``sweep.json``
   and the plots (:mod:`.report`).

A rung is one plain Ray task calling :func:`~scaling_planner.train.train_gpt` (no Ray Train: its
~20 s start-up per job is too much for a ladder of minute-long runs). Every rung uses the same corpus,
``seq_len``, batch size and seed; the learning rate follows the definition's rule. On resume
(``resume=True``) rungs whose key has a record are skipped, and the stored suggestion and held-out
prediction are reused when they were made from the same rungs. The device is not part of a rung's
key: a sweep resumed on other hardware reuses the finished rungs (each record says where it ran).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..base.errors import InfeasibleError, InputError, MeasurementError
from .design import (
    FLOPS_CONVENTION,
    CorpusSize,
    Rung,
    SweepDefinition,
    candidate_rungs,
    plan_ladder,
    suggest,
)
from .heldout import now_iso
from .store import ResultStore, json_safe

SUGGESTION_DOC = "suggestion.json"
PREDICTION_DOC = "heldout_prediction.json"
SWEEP_DOC = "sweep.json"
SESSIONS_DOC = "sessions.json"
TRAIN_DEFAULTS = {"warmup_frac": 0.1, "min_lr_frac": 0.1, "weight_decay": 0.1, "grad_clip": 1.0}

Progress = Callable[[dict], None]


class SweepError(MeasurementError):
    """A rung failed to train (the finished rungs are kept; ``--resume`` continues) (exit 4)."""


# -- the Ray task ----------------------------------------------------------------------------------------

_CORPUS_CACHE: dict = {}


def train_rung_task(spec: dict) -> dict:
    """Runs in a Ray worker: train one rung with :func:`train_gpt`; the TrainResult as a dict.

    On a CPU the MFU peak is this rung's share of the ``cpu`` profile (``threads / cores`` of the whole
    box, as ``flows/train.py`` does); on a GPU the meter takes the device's profile.
    """
    from ..train import Corpus, GPTConfig, train_gpt

    path = spec["corpus"]
    corpus = _CORPUS_CACHE.get(path)
    if corpus is None:
        corpus = _CORPUS_CACHE[path] = Corpus.load(path)
    peak, source = None, None
    if spec["device"] == "cpu":
        from ..hardware.profiles import get_profile

        cores = os.cpu_count() or 1
        try:
            peak = get_profile("cpu").peak_flops_per_s(spec["dtype"]) * min(1.0, spec["threads"] / cores)
            source = f"cpu {spec['dtype']} peak x {spec['threads']}/{cores} cores (one rung's share)"
        except Exception:  # no peak for this dtype: throughput without MFU
            peak, source = None, None
    result = train_gpt(GPTConfig(**spec["config"]), tokens=spec["tokens"], batch_size=spec["batch_size"],
                       lr=spec["lr"], seed=spec["seed"], corpus=corpus, device=spec["device"], dtype=spec["dtype"],
                       eval_batches=spec["eval_batches"], threads=spec["threads"], peak_flops_per_s=peak,
                       peak_source=source, log_every=max(1, spec["tokens"] // (spec["batch_size"] *
                                                                               spec["config"]["seq_len"]) // 50),
                       **TRAIN_DEFAULTS)
    return result.model_dump(mode="json")


# -- helpers ---------------------------------------------------------------------------------------------

class _Ray:
    """A Ray session started on first use and kept for the rest of the sweep."""

    def __init__(self, stack: contextlib.ExitStack, address: str | None):
        self.stack, self.address, self.ray = stack, address, None
        self.use_gpu = False

    def start(self):
        if self.ray is None:
            from ..measure.ray_session import ray_session

            self.ray = self.stack.enter_context(ray_session(self.address))
            self.use_gpu = self.ray.cluster_resources().get("GPU", 0) >= 1
        return self.ray


def _corpus_id(corpus) -> dict:
    digest = hashlib.sha256(corpus.tokens.tobytes()).hexdigest()[:16]
    return {"name": Path(corpus.name).name, "tokens": corpus.n_tokens, "sha256": digest,
            "val_fraction": corpus.val_fraction}


def settings_for(defn: SweepDefinition, corpus_id: dict) -> dict:
    """Everything besides the rung's shape, tokens and lr that changes a run's result (part of its key)."""
    return {"seq_len": defn.seq_len, "batch_size": defn.batch_size, "seed": defn.seed, "dtype": defn.dtype,
            "eval_batches": defn.eval_batches, "corpus": corpus_id, **TRAIN_DEFAULTS}


def _runs(records: list[dict], source: str):
    from ..laws.runs import runs_from_arrays

    N = [r["result"]["params_nonembedding"] for r in records]
    D = [r["result"]["tokens_seen"] for r in records]
    L = [r["result"]["final_val_loss"] for r in records]
    return runs_from_arrays(N, D, L, source=source)


def fit_records(records: list[dict], defn: SweepDefinition, source: str):
    """(FitResult with bootstrap draws, Runs) for the records' (N, D, loss)."""
    from ..laws.fit import bootstrap, fit_law

    runs = _runs(records, source)
    fit = fit_law(runs, tied=defn.tied)
    return bootstrap(runs, fit, defn.bootstrap, seed=42 + defn.seed), runs


class _Runner:
    def __init__(self, defn: SweepDefinition, out_dir: Path, store: ResultStore, corpus, settings: dict,
                 ray: _Ray, progress: Progress, log: Callable[[str], None], total: int):
        self.defn, self.out_dir, self.store, self.corpus = defn, out_dir, store, corpus
        self.settings, self.ray, self.progress, self.log = settings, ray, progress, log
        self.total = total
        self.trained: list[str] = []
        self.reused: list[str] = []
        self.phase_s: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self.started_at = now_iso()

    def key(self, rung: Rung) -> str:
        return rung.key(self.settings)

    def done(self) -> int:
        return len(self.trained) + len(self.reused)

    def emit(self, phase: str, label: str, running: list[str] | None = None) -> None:
        self.progress({"phase": phase, "done": self.done(), "total": self.total, "label": label,
                       "running": running or [], "elapsed_s": time.perf_counter() - self.t0})

    def _spec(self, rung: Rung) -> dict:
        from ..train.gpt import GPTConfig

        cfg = GPTConfig(vocab_size=256, seq_len=self.defn.seq_len, n_layer=rung.n_layer, n_head=rung.n_head,
                        d_model=rung.d_model)
        use_gpu = self.ray.use_gpu
        dtype = self.defn.dtype if self.defn.dtype != "auto" else ("bf16" if use_gpu else "fp32")
        return {"config": cfg.model_dump(), "tokens": rung.tokens, "batch_size": self.defn.batch_size, "lr": rung.lr,
                "seed": self.defn.seed, "corpus": str(Path(self.corpus.name).resolve()),
                "device": "cuda" if use_gpu else "cpu", "dtype": dtype, "threads": self.defn.threads_per_rung,
                "eval_batches": self.defn.eval_batches}

    def train(self, rungs: list[Rung], phase: str) -> None:
        """Train the rungs without a record (largest compute first), appending each as it finishes."""
        t = time.perf_counter()
        pending = []
        for rung in rungs:
            if self.key(rung) in self.store:
                if self.key(rung) not in self.reused:
                    self.reused.append(self.key(rung))
                    self.emit(phase, f"{rung.label()} reused")
            else:
                pending.append(rung)
        if not pending:
            return
        ray = self.ray.start()
        if self.defn.dtype == "tf32" and not self.ray.use_gpu:
            raise InputError("dtype", "tf32 is a CUDA matmul mode and the Ray cluster has no GPU; use fp32 or bf16")
        remote = ray.remote(train_rung_task).options(num_cpus=self.defn.threads_per_rung,
                                                      num_gpus=1 if self.ray.use_gpu else 0, max_retries=0)
        refs = {}
        for rung in sorted(pending, key=lambda r: -r.compute_flops):
            refs[remote.remote(self._spec(rung))] = (rung, time.perf_counter())
        self.log(f"{phase}: training {len(pending)} rung(s) on Ray ({'GPU' if self.ray.use_gpu else 'CPU'}, "
                 f"{self.defn.threads_per_rung} thread(s) each)")
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                if not ready:
                    self.emit(phase, "training", [r.label() for r, _ in refs.values()])
                    continue
                for ref in ready:
                    rung, _ = refs.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # RayTaskError, WorkerCrashedError, ...
                        raise SweepError(f"rung {rung.label()} ({phase}) failed to train: {_first_line(exc)}; "
                                         "the finished rungs are kept, rerun with --resume") from None
                    self._record(rung, result)
                    self.emit(phase, f"{rung.label()} loss {result['final_val_loss']:.4f}",
                              [r.label() for r, _ in refs.values()])
        finally:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
        self.phase_s[phase] = self.phase_s.get(phase, 0.0) + time.perf_counter() - t

    def _record(self, rung: Rung, result: dict) -> None:
        key = self.key(rung)
        self.store.append({"key": key, "role": rung.role, "rung": rung.model_dump(), "settings": self.settings,
                           "result": result, "finished_at": now_iso(),
                           "corpus_train_tokens": int(self.corpus.train.size)})
        self.trained.append(key)
        res = result
        self.log(f"  finished {rung.role} {rung.label()}: val loss {res['final_val_loss']:.4f}, "
                 f"{res['mfu']['tokens_per_s']:,.0f} tokens/s, {res['train_s']:.1f} s")

    def records(self, rungs: list[Rung]) -> list[dict]:
        return [self.store.get(self.key(r)) for r in rungs]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    useful = [ln.strip() for ln in text if ln.strip() and not ln.startswith((" ", "Traceback", "File"))]
    return f"{type(exc).__name__}: {(useful[-1] if useful else '')[:300]}"


def _suggestions(runner: _Runner, fit, runs, isoflop: list[Rung], heldout: Rung, csize: CorpusSize) -> dict:
    """The fitter's suggested rungs (stored, so a resumed sweep trains the same ones)."""
    from .heldout import log_residuals

    defn = runner.defn
    iso_keys = [runner.key(r) for r in isoflop]
    stored = runner.store.read_doc(SUGGESTION_DOC)
    if stored and stored.get("fit_run_keys") == iso_keys and stored.get("count") == defn.suggested_runs:
        return stored
    cands = candidate_rungs(defn, csize, isoflop, heldout)
    resid = log_residuals(fit, runs)
    p = 4 if defn.tied else 5
    noise = max(float(np.sqrt(np.mean(resid**2) * len(runs) / max(1, len(runs) - p))), 0.003)
    picks = suggest(fit.samples, [c.params for c in cands], [c.tokens for c in cands], heldout.params,
                    heldout.tokens, defn.suggested_runs, noise) if cands else []
    doc = {"count": defn.suggested_runs, "fit_run_keys": iso_keys, "candidates": len(cands), "noise_sd_log": noise,
           "target": {"N": heldout.params, "D": heldout.tokens},
           "criterion": "greedy ensemble-Kalman shrinkage of Var(log L̂) at the held-out rung over the bootstrap "
                        "draws (design.suggest)",
           "picks": [{"rung": cands[s.index].model_dump(), "sd_log_before": s.sd_before, "sd_log_after": s.sd_after}
                     for s in picks]}
    runner.store.write_doc(SUGGESTION_DOC, doc)
    return doc


def prepare(defn: SweepDefinition):
    """(corpus, its sizes, the ladder): everything checked before a sweep trains (InputError otherwise)."""
    from ..train.data import Corpus

    if not isinstance(defn, SweepDefinition):
        raise InputError("definition", f"must be a SweepDefinition, got {type(defn).__name__}")
    corpus = Corpus.load(defn.corpus)
    csize = CorpusSize(Path(corpus.name).name, int(corpus.train.size), int(corpus.val.size))
    return corpus, csize, plan_ladder(defn, csize)


def run_sweep(defn: SweepDefinition, out_dir: str | Path, *, resume: bool = False, ray_address: str | None = None,
              progress: Progress | None = None, log: Callable[[str], None] | None = None,
              summary_path: str | Path | None = None, plots: bool = True, command: str | None = None) -> dict:
    """Run (or resume) the sweep into ``out_dir``; the ``sweep.json`` document (also written there, and to
    ``summary_path`` when given). Raises InputError for a bad definition before anything trains,
    SweepError when a rung fails (finished rungs are kept)."""
    from ..base.io import write_json_atomic
    from ..render.plots import check_out_dir
    from . import report
    from .heldout import backtest, backtest_corrected, predict

    t_start = time.perf_counter()
    log = log or (lambda _msg: None)
    progress = progress or (lambda _event: None)
    corpus, csize, ladder = prepare(defn)
    if plots:
        report.check_plotting()
    out = check_out_dir(out_dir)
    store = ResultStore(out, resume=resume)
    out = check_out_dir(out, create=True)
    settings = settings_for(defn, _corpus_id(corpus))
    isoflop, heldout = ladder.isoflop, ladder.heldout
    total = len(isoflop) + defn.suggested_runs + 1
    with contextlib.ExitStack() as stack:
        ray = _Ray(stack, ray_address)
        runner = _Runner(defn, out, store, corpus, settings, ray, progress, log, total)
        store.active = [runner.key(r) for r in isoflop]
        log(f"sweep: {len(isoflop)} isoFLOP rungs at {', '.join(f'{c:.3g}' for c in defn.budgets_flops)} FLOPs, "
            f"{defn.suggested_runs} suggested, held-out {heldout.label()} at {heldout.compute_flops:.3g} FLOPs; "
            f"corpus {csize.name} ({csize.train_tokens:,} train tokens)")

        runner.train(isoflop, "isoflop")
        t = time.perf_counter()
        fit1, runs1 = fit_records(runner.records(isoflop), defn, "isoFLOP rungs")
        sugg = _suggestions(runner, fit1, runs1, isoflop, heldout, csize) if defn.suggested_runs else \
            {"count": 0, "picks": []}
        runner.phase_s["fit_and_suggest"] = time.perf_counter() - t
        suggested = [Rung(**p["rung"]) for p in sugg["picks"]]
        fitted = isoflop + suggested
        store.active = [runner.key(r) for r in fitted]
        if suggested:
            log("suggested: " + "; ".join(f"{r.label()} (sd of log L at the held-out {p['sd_log_before']:.4f} -> "
                                          f"{p['sd_log_after']:.4f})" for r, p in zip(suggested, sugg["picks"],
                                                                                       strict=True)))
        runner.train(suggested, "suggested")

        t = time.perf_counter()
        fit_keys = [runner.key(r) for r in fitted]
        fit2, runs2 = fit_records(runner.records(fitted), defn, "isoFLOP + suggested rungs")
        heldout_key = runner.key(heldout)
        prediction = store.read_doc(PREDICTION_DOC) if resume else None
        if not (prediction and prediction.get("key") == heldout_key and prediction.get("fit_run_keys") == fit_keys
                and prediction.get("level") == defn.level):
            prediction = predict(fit2, runs2, heldout.params, heldout.tokens, defn.level, seed=defn.seed)
            bt = backtest(runs2.N, runs2.D, runs2.loss, defn.budgets_flops[-2], tied=defn.tied)
            prediction.update({"key": heldout_key, "fit_run_keys": fit_keys, "already_measured": heldout_key in store,
                               "backtest": bt, "backtest_corrected": backtest_corrected(prediction, bt)})
            store.write_doc(PREDICTION_DOC, prediction)  # before the held-out rung trains
        runner.phase_s["predict"] = time.perf_counter() - t
        log(f"held-out prediction for {heldout.label()}: {prediction['predicted']:.4f} "
            f"[{prediction['predicted_low']:.4f}, {prediction['predicted_high']:.4f}] ({defn.level:.0%}), "
            + (f"in {out / PREDICTION_DOC} (recomputed: that rung was already measured)"
               if prediction.get("already_measured") else f"written to {out / PREDICTION_DOC} before training it"))
        store.active = fit_keys + [heldout_key]
        runner.train([heldout], "heldout")

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflowing bootstrap draws
        doc = _finish(runner, defn, settings, ladder, sugg, fitted, fit2, prediction, heldout, csize, store, out,
                      command, plots, t_start)
    if summary_path:
        write_json_atomic(summary_path, json_safe(doc))
    return doc


def _finish(runner, defn, settings, ladder, sugg, fitted, fit2, prediction, heldout, csize, store, out, command,
            plots, t_start) -> dict:
    from . import report
    from .heldout import verdict

    t = time.perf_counter()
    heldout_key = runner.key(heldout)
    held_rec = store.get(heldout_key)
    fit_records_list = runner.records(fitted)
    context = _verdict_context(fit_records_list, held_rec, fit2, defn, csize)
    judged = verdict(prediction, held_rec["result"]["final_val_loss"], context)
    all_records = fit_records_list + [held_rec]
    store.active = [r["key"] for r in all_records]
    store.write_csv()  # a resumed sweep that trained nothing still leaves every rung in runs.csv
    fit_all, _ = fit_records(all_records, defn, "all rungs")
    rec = recommendation(fit_all, defn, heldout, all_records, csize)
    runner.phase_s["report"] = time.perf_counter() - t
    doc = report.sweep_document(
        defn=defn, settings=settings, ladder=ladder, suggestion=sugg, records=all_records, fit=fit2, fit_all=fit_all,
        prediction=prediction, judged=judged, heldout_record=held_rec, recommendation=rec,
        timing={"wall_s": time.perf_counter() - t_start, "phases_s": runner.phase_s,
                "rungs_trained_now": len(runner.trained), "rungs_reused": len(runner.reused),
                "train_s_sum": sum(r["result"]["wall_s"] for r in all_records)},
        corpus=csize, command=command, out_dir=out, damaged=store.damaged)
    if plots:
        doc["plots"] = report.write_plots(doc, fit2, all_records, out)
    timing = doc["timing"]
    timing["wall_s"] = time.perf_counter() - t_start
    # every session of this sweep (a resumed one has several): the sweep's whole cost is their sum
    sessions = (store.read_doc(SESSIONS_DOC) or {}).get("sessions", [])
    sessions.append({"started_at": runner.started_at, "wall_s": timing["wall_s"],
                     "rungs_trained": len(runner.trained)})
    store.write_doc(SESSIONS_DOC, {"sessions": sessions})
    timing["sessions"] = sessions
    timing["total_wall_s"] = sum(x["wall_s"] for x in sessions)
    store.write_doc(SWEEP_DOC, doc)
    return json_safe(doc)


def _verdict_context(fit_records_list: list[dict], held: dict, fit, defn: SweepDefinition, csize: CorpusSize) -> dict:
    N = np.array([r["result"]["params_nonembedding"] for r in fit_records_list], dtype=float)
    D = np.array([r["result"]["tokens_seen"] for r in fit_records_list], dtype=float)
    N_h, D_h = held["result"]["params_nonembedding"], held["result"]["tokens_seen"]
    return {"fit_max_compute": float(np.max(6 * N * D)), "fit_max_N": float(N.max()), "fit_max_D": float(D.max()),
            "fit_max_epochs": float(D.max() / csize.train_tokens),
            "heldout_epochs": D_h / csize.train_tokens, "fit_warnings": fit.warnings,
            "bootstrap_failed": fit.bootstrap_failed,
            "bootstrap_replicates": (0 if fit.samples is None else len(fit.samples)) + fit.bootstrap_failed,
            "corner_rungs": int(np.sum((N >= N_h / 2) & (D >= D_h / 2))),
            "heldout_layers": held["rung"]["n_layer"], "fit_layers": [r["rung"]["n_layer"] for r in fit_records_list]}


def throughput_model(records: list[dict]) -> tuple[float, float] | None:
    """(a, b) of log(tokens/s) = a + b log N fitted over the rungs (least squares), or None."""
    pts = [(r["result"]["params_nonembedding"], r["result"]["mfu"]["tokens_per_s"]) for r in records
           if r["result"].get("mfu") and r["result"]["mfu"].get("tokens_per_s")]
    if len({n for n, _ in pts}) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def recommendation(fit, defn: SweepDefinition, heldout: Rung, records: list[dict],
                   corpus: CorpusSize | None = None) -> dict:
    """:func:`scaling_planner.recommend` with the law fitted to every rung, for the definition's target.

    ``recommend`` sizes budgets of at least 1e18 FLOPs only (its smallest run); a smaller budget is
    passed as the loss it buys on the fitted frontier, L*(C), which gives the same compute-optimal
    allocation. The 90% intervals of N*, D*, D*/N* and L*(C) at the plan's compute come from the
    bootstrap draws (:func:`scaling_planner.laws.fit.derived_quantities`); the time on this machine
    from the rungs' measured tokens/s (a power law in N fitted over the rungs). When the plan's D is more
    than ``max_epochs`` passes over the corpus, the data-constrained optimum for its unique tokens
    (Muennighoff et al. 2023, :class:`~scaling_planner.planning.data_constrained.DataConstrainedMode`)
    is given beside it.
    """
    from ..laws.fit import derived_quantities, interval
    from ..planning.recommend import recommend

    law = fit.law(name="sweep-fit")
    notes = []
    if defn.target_loss is not None:
        kwargs, objective = {"target_loss": defn.target_loss}, {"target_loss": defn.target_loss}
    else:
        C = defn.target_budget_flops or 10 * heldout.compute_flops
        kwargs = objective = {"budget_flops": C}
    try:
        plan = recommend(law, gpu=None, **kwargs)
    except (InputError, InfeasibleError) as exc:
        return {"objective": objective, "error": str(exc), "notes": notes}
    C = plan.compute_flops
    out = {"objective": objective, "law": "fitted to every rung of the sweep (held-out included)",
           "compute_flops": C, "params": plan.model.params, "tokens": plan.model.tokens,
           "tokens_per_param": plan.model.tokens_per_param, "loss": plan.model.loss,
           "params_near_optimal": [plan.model.params_near_optimal_low, plan.model.params_near_optimal_high],
           "plan_uncertainty_p10_p90": plan.uncertainty.model_dump(mode="json") if plan.uncertainty else None,
           "notes": notes + list(plan.notes)}
    if fit.samples is not None and len(fit.samples) >= 2:
        draws = derived_quantities(law.draws(), C)
        out["intervals"] = {k: interval(v, defn.level) for k, v in draws.items()}
        out["interval_level"] = defn.level
    model = throughput_model(records)
    if model is not None:
        a, b = model
        rate = math.exp(a + b * math.log(plan.model.params))
        out["estimated_train_s_here"] = plan.model.tokens / rate
        out["estimated_tokens_per_s_here"] = rate
        out["throughput_model"] = (f"tokens/s = exp({a:.3f}) x N^{b:.3f} over the sweep's rungs "
                                   f"({defn.threads_per_rung} thread(s) each)")
    if corpus is not None and plan.model.tokens > defn.max_epochs * corpus.train_tokens:
        out["data_constrained"] = _data_constrained(law, C, corpus, records)
    out["flops_convention"] = FLOPS_CONVENTION
    return out


def _data_constrained(law, C: float, corpus: CorpusSize, records: list[dict]) -> dict:
    from ..base.errors import PlannerError
    from ..planning.data_constrained import DataConstrainedMode

    U = corpus.train_tokens
    fitted_epochs = max(r["result"]["tokens_seen"] for r in records) / U
    try:
        dc = DataConstrainedMode(law, U)
        N, D = dc.allocate(C)
        loss = float(dc.loss(N, D))
    except PlannerError as exc:
        return {"unique_tokens": U, "error": str(exc)}
    return {"unique_tokens": U, "params": N, "tokens": D, "epochs": D / U, "loss": loss,
            "note": f"the plan asks for more than the corpus holds; the rungs saw at most {fitted_epochs:.1f} epochs. "
                    f"This is the optimum for {U:,} unique tokens under Muennighoff et al. 2023's repeated-data law",
            "notes": dc.notes}
