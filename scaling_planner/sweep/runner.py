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
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..base.errors import InputError, MeasurementError
from . import bracket
from . import lr as lr_mod
from .backtests import MIN_DRAWS, predict_with_backtests
from .design import (
    CorpusSize,
    Rung,
    SweepDefinition,
    candidate_rungs,
    plan_ladder,
    suggest,
)
from .heldout import now_iso
from .recommendation import recommendation
from .store import ResultStore, json_safe

LR_DOC = "lr_tuning.json"
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
    fit = bootstrap(runs, fit_law(runs, tied=defn.tied), defn.bootstrap, seed=42 + defn.seed)
    drawn = 0 if fit.samples is None else len(fit.samples)
    if drawn < MIN_DRAWS and not defn.tied:
        # the runs do not separate the two exponents (the refits ran off to an infinite parameter): the tied
        # form alpha = beta, one parameter fewer, has an interval where this has none
        tied = bootstrap(runs, fit_law(runs, tied=True), defn.bootstrap, seed=42 + defn.seed)
        tied.warnings.append(f"exponents tied (alpha = beta): {drawn} of {defn.bootstrap} bootstrap refits of the "
                             f"untied law converged ({fit.params['alpha']:.3g} / {fit.params['beta']:.3g} at its "
                             "point fit); these rungs do not separate the N and D exponents")
        fit = tied
    return fit, runs


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
        self.lr_for = defn.lr_for  # replaced by the tuned rule (sweep.lr)

    def key(self, rung: Rung) -> str:
        return rung.key(self.settings)

    def done(self) -> int:
        return len(self.trained) + len(self.reused)

    def emit(self, phase: str, label: str, running: list[str] | None = None) -> None:
        self.progress({"phase": phase, "done": self.done(), "total": self.total, "label": label,
                       "running": running or [], "elapsed_s": time.perf_counter() - self.t0})

    def _threads(self, phase: str, pending: int) -> int:
        """Torch threads (and Ray CPUs) per rung: ``threads_per_rung``, or on a CPU cluster all of one node's
        CPUs for a rung that trains alone in a phase after the ladder (extension, suggested, held-out:
        nothing else would use them). The tuning runs and the ladder keep ``threads_per_rung`` even when
        one trains alone, so a resumed sweep retrains a lost ladder rung bit for bit."""
        t = self.defn.threads_per_rung
        if pending == 1 and phase in ("extension", "suggested", "heldout") and not self.ray.use_gpu:
            node_cpus = max((n.get("Resources", {}).get("CPU", 0) for n in self.ray.ray.nodes() if n.get("Alive")),
                            default=t)
            t = max(t, int(node_cpus))
        return t

    def _spec(self, rung: Rung, threads: int | None = None) -> dict:
        from ..train.gpt import GPTConfig

        cfg = GPTConfig(vocab_size=256, seq_len=self.defn.seq_len, n_layer=rung.n_layer, n_head=rung.n_head,
                        d_model=rung.d_model)
        use_gpu = self.ray.use_gpu
        dtype = self.defn.dtype if self.defn.dtype != "auto" else ("bf16" if use_gpu else "fp32")
        return {"config": cfg.model_dump(), "tokens": rung.tokens, "batch_size": self.defn.batch_size, "lr": rung.lr,
                "seed": self.defn.seed, "corpus": str(Path(self.corpus.name).resolve()),
                "device": "cuda" if use_gpu else "cpu", "dtype": dtype,
                "threads": threads or self.defn.threads_per_rung,
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
        threads = self._threads(phase, len(pending))
        remote = ray.remote(train_rung_task).options(num_cpus=threads,
                                                      num_gpus=1 if self.ray.use_gpu else 0, max_retries=0)
        refs = {}
        for rung in sorted(pending, key=lambda r: -r.compute_flops):
            refs[remote.remote(self._spec(rung, threads))] = (rung, time.perf_counter())
        self.log(f"{phase}: training {len(pending)} rung(s) on Ray ({'GPU' if self.ray.use_gpu else 'CPU'}, "
                 f"{threads} thread(s) each)")
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

    def loss(self, rung: Rung) -> float:
        return float(self.store.get(self.key(rung))["result"]["final_val_loss"])


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
    cands = [c.model_copy(update={"lr": float(runner.lr_for(c.params))})
             for c in candidate_rungs(defn, csize, isoflop, heldout)]
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
    from ..train.data import LARGE_CORPUS, Corpus

    if not isinstance(defn, SweepDefinition):
        raise InputError("definition", f"must be a SweepDefinition, got {type(defn).__name__}")
    corpus = Corpus.load(defn.corpus or LARGE_CORPUS)
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
    first_row = ladder.rows[defn.budgets_flops[0]]
    tune = lr_mod.tuning_rungs(defn, first_row) if defn.lr_tune else []
    total = len(tune) + len(ladder.isoflop) + defn.suggested_runs + 1
    with contextlib.ExitStack() as stack:
        ray = _Ray(stack, ray_address)
        runner = _Runner(defn, out, store, corpus, settings, ray, progress, log, total)
        log(f"sweep: {len(ladder.isoflop)} isoFLOP rungs at {', '.join(f'{c:.3g}' for c in defn.budgets_flops)} "
            f"FLOPs, {len(tune)} learning-rate tuning runs, {defn.suggested_runs} suggested, held-out "
            f"{ladder.heldout.label()} at {ladder.heldout.compute_flops:.3g} FLOPs; corpus {csize.name} "
            f"({csize.train_tokens:,} train tokens)")
        lr_doc = None
        if tune:
            store.active = [runner.key(r) for r in tune]
            runner.train(tune, "lr_tune")
            lr_doc = lr_mod.tuning_document(defn, [(r, runner.loss(r)) for r in tune])
            store.write_doc(LR_DOC, lr_doc)
            runner.lr_for = lambda n: lr_mod.lr_of(lr_doc["rule"], n)
            ladder = ladder.with_lr(runner.lr_for)
            log(f"learning rate: {lr_doc['rule']['text']}")
        isoflop, heldout = ladder.isoflop, ladder.heldout
        store.active = [runner.key(r) for r in isoflop]
        runner.train(isoflop, "isoflop")
        extensions, bracket_notes = bracket.bracket_rows(runner, ladder, csize)
        isoflop = isoflop + extensions
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
                and prediction.get("level") == defn.level
                and prediction.get("calibrated") == defn.calibrate_interval):
            prediction = predict_with_backtests(defn, fit2, runs2, fitted, heldout)
            prediction.update({"key": heldout_key, "fit_run_keys": fit_keys, "already_measured": heldout_key in store})
            store.write_doc(PREDICTION_DOC, prediction)  # before the held-out rung trains
        runner.phase_s["predict"] = time.perf_counter() - t
        log(f"held-out prediction for {heldout.label()}: {prediction['predicted']:.4f} "
            f"[{prediction['predicted_low']:.4f}, {prediction['predicted_high']:.4f}] ({defn.level:.0%}"
            + (f", backtest-calibrated x{prediction['calibration_factor']:.2f}" if prediction.get("calibrated") else "")
            + "), " + (f"in {out / PREDICTION_DOC} (recomputed: that rung was already measured)"
                       if prediction.get("already_measured")
                       else f"written to {out / PREDICTION_DOC} before training it"))
        store.active = fit_keys + [heldout_key]
        runner.train([heldout], "heldout")

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflowing bootstrap draws
        doc = _finish(runner, defn, settings, ladder, sugg, fitted, fit2, prediction, heldout, csize, store, out,
                      lr_doc, bracket_notes, command, plots, t_start)
    if summary_path:
        write_json_atomic(summary_path, json_safe(doc))
    return doc


def _finish(runner, defn, settings, ladder, sugg, fitted, fit2, prediction, heldout, csize, store, out, lr_doc,
            bracket_notes, command, plots, t_start) -> dict:
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
                "train_s_sum": sum(r["result"]["wall_s"] for r in all_records)
                + sum(r["result"]["wall_s"] for r in store.records.values() if r["role"] == "lr_tune")},
        corpus=csize, command=command, out_dir=out, damaged=store.damaged, lr_tuning=lr_doc,
        bracketing=bracket_notes)
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
