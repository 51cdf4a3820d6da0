"""Run the small-GPT training loop as a real Ray Train job sized by the pre-flight.

``train_on_ray`` builds ``ray.train.torch.TorchTrainer`` with the ``ScalingConfig`` arguments from
:class:`~scaling_planner.preflight.sizing.RayJobSize`: one rank per worker, data-parallel with
``DistributedDataParallel`` (gloo on CPU, NCCL on GPUs; ``ray.train.torch.prepare_model``), each rank
drawing its own batches (seed + rank), so the global batch is ``workers x batch_size`` sequences. Rank 0
writes its :class:`~scaling_planner.train.loop.TrainResult` into a Ray Train checkpoint; the driver reads
it back. A worker that dies fails the job (``max_failures`` retries first) and surfaces here as a
:class:`TrainingJobError` with the worker's own error, never a hang and never a half-written result.

The time limit is enforced where the job is waited on: ``trainer.fit()`` runs inside a Ray task that
this driver owns, so when the limit passes, cancelling that task (``ray.cancel(force=True)``) kills the
process and, with it, every actor it owns (Ray fate-shares actors with their owner: the Train
controller and its worker group). A Prefect task timeout cannot do this: it cannot interrupt a thread
blocked in ``ray.get``. The job's storage directory, when this module made it, is removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..base.errors import PlannerError
from ..preflight.sizing import RayJobSize
from .gpt import GPTConfig
from .loop import TrainResult

RESULT_FILE = "train_result.json"


class TrainingJobError(PlannerError):
    """The Ray training job failed (a worker died, the job timed out); the message says why (exit 4)."""

    exit_code = 4


def _worker_loop(cfg: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    from ray.train.torch import prepare_model

    from .loop import train_gpt

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if cfg.get("pid_dir"):
        Path(cfg["pid_dir"], f"rank{rank}.pid").write_text(str(os.getpid()))
    result = train_gpt(
        GPTConfig(**cfg["config"]), tokens=cfg["tokens_per_worker"], batch_size=cfg["batch_size"], lr=cfg["lr"],
        seed=cfg["seed"], data_seed=cfg["seed"] + 1000 * rank, corpus=cfg["corpus"], dtype=cfg["dtype"],
        threads=cfg["threads"], profile=cfg["profile"], peak_flops_per_s=cfg["peak_flops_per_s"],
        peak_source=cfg["peak_source"], eval_batches=cfg["eval_batches"], log_every=cfg["log_every"],
        wrap_model=prepare_model if world > 1 else None, device=cfg["device"])
    with tempfile.TemporaryDirectory() as d:
        checkpoint = None
        if rank == 0:
            Path(d, RESULT_FILE).write_text(result.model_dump_json())
            checkpoint = ray.train.Checkpoint.from_directory(d)
        ray.train.report({"final_val_loss": result.final_val_loss, "rank": rank}, checkpoint=checkpoint)


def _fit(cfg: dict, scaling: dict, storage: str, max_failures: int) -> str:
    """Runs as a Ray task: the Ray Train job, then rank 0's result as JSON (read before the task ends,
    so the driver may remove the storage directory)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        _worker_loop, train_loop_config=cfg, scaling_config=ScalingConfig(**scaling),
        run_config=RunConfig(storage_path=storage, name="small-gpt",
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)))
    result = trainer.fit()
    if getattr(result, "error", None) is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError("training finished without rank 0's result checkpoint")
    with result.checkpoint.as_directory() as d:
        return Path(d, RESULT_FILE).read_text()


def train_on_ray(config: GPTConfig, *, job: RayJobSize, tokens: int, batch_size: int = 16, lr: float = 3e-3,
                 seed: int = 0, corpus: str | None = None, dtype: str = "bf16", threads_per_worker: int | None = 1,
                 profile: str | None = "cpu", peak_flops_per_s: float | None = None, peak_source: str | None = None,
                 storage_dir: str | None = None, max_failures: int = 0, eval_batches: int = 8,
                 log_every: int = 10, pid_dir: str | None = None, timeout_s: float | None = None) -> TrainResult:
    """Train ``config`` on ``tokens`` (global, split evenly across ``job.num_workers`` ranks) as a Ray Train
    job; the rank-0 result. Ray must already be initialised (``measure.ray_session``). Past ``timeout_s``
    the job is stopped (module docstring) and TrainingJobError says so, with what the cluster had free
    when the job could not be scheduled."""
    import ray

    if not ray.is_initialized():
        raise TrainingJobError("Ray is not initialised: run inside measure.ray_session()")
    if timeout_s is not None and not timeout_s > 0:
        raise TrainingJobError(f"timeout_s must be > 0, got {timeout_s!r}")
    workers = job.num_workers
    cfg = {"config": config.model_dump(), "tokens_per_worker": int(tokens) // workers, "batch_size": batch_size,
           "lr": lr, "seed": seed, "corpus": corpus, "dtype": dtype, "threads": threads_per_worker,
           "profile": profile, "peak_flops_per_s": peak_flops_per_s, "peak_source": peak_source,
           "eval_batches": eval_batches, "log_every": log_every, "pid_dir": pid_dir,
           "device": "cuda" if job.use_gpu else "cpu"}
    owned = storage_dir is None
    storage = str(Path(storage_dir or tempfile.mkdtemp(prefix="scaling-planner-train-")).resolve())
    try:
        fit = ray.remote(num_cpus=0, max_retries=0)(_fit)
        ref = fit.remote(cfg, job.scaling_config_kwargs(), storage, max_failures)
        done, _ = ray.wait([ref], timeout=timeout_s)
        if not done:
            ray.cancel(ref, force=True)
            raise TrainingJobError(f"training on Ray exceeded its time limit of {timeout_s:g} s ({workers} workers) "
                                   f"and was stopped{_unscheduled(ray, job)}")
        try:
            text = ray.get(ref)
        except Exception as exc:  # the job's failure (a worker died or raised), as a Ray task error
            raise TrainingJobError(f"training on Ray failed ({workers} workers): {_reason(exc)}") from None
    finally:
        if owned:
            shutil.rmtree(storage, ignore_errors=True)
    return TrainResult(**json.loads(text))


def _unscheduled(ray, job: RayJobSize) -> str:
    """'': the job had what it asked for; else why it never started (what is free against what it needs)."""
    free = ray.available_resources()
    short = [f"{need:g} {key} (free: {free.get(key, 0.0):g})" for key, need in job.total_resources.items()
             if need > free.get(key, 0.0) + 1e-9 and not key.startswith("accelerator_type")]
    return "; it may never have started: it needs " + ", ".join(short) if short else ""


def _reason(exc: BaseException) -> str:
    """The root cause of a Ray Train failure: the first failed worker's own error (Train v2's
    ``WorkerGroupError.worker_failures``), else the innermost informative line of the chain of causes
    (``__cause__`` or a ``cause`` attribute, as a Ray task error wraps the task's exception)."""
    chain: list[BaseException] = []
    err: BaseException | None = exc
    while err is not None and len(chain) < 6:
        chain.append(err)
        nxt = err.__cause__ or getattr(err, "cause", None)
        err = nxt if isinstance(nxt, BaseException) else None
    for err in chain:
        failures = getattr(err, "worker_failures", None)
        if failures:
            rank, failure = sorted(failures.items())[0]
            return f"worker rank {rank}: {_line(failure)}" + (f" ({len(failures)} workers failed)"
                                                               if len(failures) > 1 else "")
    for err in reversed(chain):
        text = _line(err)
        if text:
            return text
    return type(exc).__name__


def _line(err: BaseException) -> str:
    """``Type: line`` with the line of ``err``'s message that says what died or failed."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.strip().startswith("Traceback")]
    lines = [ln for ln in lines if not ln.startswith("File ") and not ln.startswith("^")]
    text = next((ln for ln in lines if any(w in ln.lower() for w in ("died", "killed", "error", "exit"))),
                lines[-1] if lines else "")
    return f"{type(err).__name__}: {text[:300]}" if text else ""
