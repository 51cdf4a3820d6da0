"""Run the small-GPT training loop as a real Ray Train job sized by the pre-flight.

``train_on_ray`` builds ``ray.train.torch.TorchTrainer`` with the ``ScalingConfig`` arguments from
:class:`~scaling_planner.preflight.sizing.RayJobSize`: one rank per worker, data-parallel with
``DistributedDataParallel`` (gloo on CPU, NCCL on GPUs; ``ray.train.torch.prepare_model``), each rank
drawing its own batches (seed + rank), so the global batch is ``workers x batch_size`` sequences. Rank 0
writes its :class:`~scaling_planner.train.loop.TrainResult` into a Ray Train checkpoint; the driver reads
it back. A worker that dies fails the job (``max_failures`` retries first) and surfaces here as a
:class:`TrainingJobError` with Ray's reason, never a hang and never a half-written result.
"""

from __future__ import annotations

import json
import os
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


def train_on_ray(config: GPTConfig, *, job: RayJobSize, tokens: int, batch_size: int = 16, lr: float = 3e-3,
                 seed: int = 0, corpus: str | None = None, dtype: str = "bf16", threads_per_worker: int | None = 1,
                 profile: str | None = "cpu", peak_flops_per_s: float | None = None, peak_source: str | None = None,
                 storage_dir: str | None = None, max_failures: int = 0, eval_batches: int = 8,
                 log_every: int = 10, pid_dir: str | None = None) -> TrainResult:
    """Train ``config`` on ``tokens`` (global, split evenly across ``job.num_workers`` ranks) as a Ray Train
    job; the rank-0 result. Ray must already be initialised (``measure.ray_session``)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        raise TrainingJobError("Ray is not initialised: run inside measure.ray_session()")
    workers = job.num_workers
    cfg = {"config": config.model_dump(), "tokens_per_worker": int(tokens) // workers, "batch_size": batch_size,
           "lr": lr, "seed": seed, "corpus": corpus, "dtype": dtype, "threads": threads_per_worker,
           "profile": profile, "peak_flops_per_s": peak_flops_per_s, "peak_source": peak_source,
           "eval_batches": eval_batches, "log_every": log_every, "pid_dir": pid_dir,
           "device": "cuda" if job.use_gpu else "cpu"}
    storage = storage_dir or tempfile.mkdtemp(prefix="scaling-planner-train-")
    trainer = TorchTrainer(
        _worker_loop, train_loop_config=cfg, scaling_config=ScalingConfig(**job.scaling_config_kwargs()),
        run_config=RunConfig(storage_path=str(Path(storage).resolve()), name="small-gpt",
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)))
    try:
        result = trainer.fit()
    except Exception as exc:  # ray.train.TrainingFailedError and friends: a worker died or raised
        raise TrainingJobError(f"training on Ray failed ({workers} workers): {_reason(exc)}") from None
    if getattr(result, "error", None) is not None:
        raise TrainingJobError(f"training on Ray failed ({workers} workers): {_reason(result.error)}")
    if result.checkpoint is None:
        raise TrainingJobError("training on Ray finished without rank 0's result checkpoint")
    with result.checkpoint.as_directory() as d:
        return TrainResult(**json.loads(Path(d, RESULT_FILE).read_text()))


def _reason(exc: BaseException) -> str:
    """The most specific informative line of a Ray error: Ray Train wraps the worker's failure in a
    chain of causes (``__cause__`` or a ``cause`` attribute); the innermost line that says what died
    or failed wins."""
    chain: list[BaseException] = []
    err: BaseException | None = exc
    while err is not None and len(chain) < 5:
        chain.append(err)
        nxt = err.__cause__ or getattr(err, "cause", None)
        err = nxt if isinstance(nxt, BaseException) else None
    for err in reversed(chain):
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        text = next((ln for ln in lines if "died" in ln.lower() or "error" in ln.lower()), lines[0] if lines else "")
        if text:
            return f"{type(err).__name__}: {text[:300]}"
    return type(exc).__name__
