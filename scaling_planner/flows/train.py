"""A real training flow with the pre-flight in front: measure, plan, gate, size, train, calibrate.

1. The pre-flight (``flows/preflight.py``, as a subflow) measures the Ray cluster, simulates this exact
   job (the small GPT's shape, tokens and workers) on the measured hardware with the latest calibration,
   gates it (deadline, cost, MFU floor, memory) and sizes the Ray Train job.
2. The small GPT (``scaling_planner.train``) trains with torch as a Ray Train job of that size on the
   byte-level corpus shipped with the package (``scaling_planner/train/corpus``) (CPU here, the same code on GPUs).
3. The MFU meter's measurement goes into the calibration history, so the next plan for this hardware
   uses the MFU this cluster really delivered; the flow reports predicted against measured time.

Run it: ``python flows/train.py`` (defaults: a ~0.4M-parameter model on 4M tokens, one worker).
"""

from __future__ import annotations

import os
import sys

from .common import quiet_environment, run_script

quiet_environment()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from scaling_planner.preflight.gate import GateLimits  # noqa: E402

from .preflight import PreflightRequest, PreflightResult, preflight  # noqa: E402

MINUTES_PER_DAY = 1440.0


class TrainRequest(BaseModel):
    """The training job and the limits the pre-flight enforces."""

    model_config = ConfigDict(extra="forbid")

    params: float = Field(4e5, gt=0, description="non-embedding parameters of the small GPT (shape chosen for it)")
    tokens: int = Field(4_000_000, gt=0, description="training tokens, all workers together")
    workers: int = Field(1, ge=1, description="Ray Train workers (one data-parallel rank each)")
    threads_per_worker: int = Field(2, ge=1, description="torch threads per CPU worker")
    batch_size: int = Field(16, ge=1, description="sequences per worker per step")
    seq_len: int = Field(128, ge=8, description="tokens (bytes) per sequence")
    lr: float = Field(3e-3, gt=0, description="peak learning rate (AdamW, cosine schedule to the run's tokens)")
    seed: int = Field(0, ge=0, description="random seed of the weights and the data order")
    dtype: str = Field("auto", pattern="^(auto|fp32|tf32|bf16)$",
                       description="'auto' = the profile's training precision (bf16 autocast on a GPU, fp32 on a "
                                   "CPU, where bf16 autocast is slower), as the planner plans it")
    gpu: str = Field("auto", description="hardware profile; 'auto' = what the measurement found (cpu here)")
    limits: GateLimits = Field(default_factory=lambda: GateLimits(deadline_days=20 / MINUTES_PER_DAY),
                               description="what the pre-flight gate holds the job to (default: 20 minutes)")
    ray_address: str | None = Field(None, description="Ray cluster address (HOST:PORT); none = a local Ray "
                                                      "instance")
    corpus: str | None = Field(None, description="text file; default the corpus shipped with the package")
    storage_dir: str | None = Field(None, description="Ray Train storage (checkpoints); default a temp dir")
    calibration_dir: str | None = Field(None, description="calibration history directory (default "
                                        "$SCALING_PLANNER_CALIBRATION_DIR, else ~/.scaling-planner/calibration)")
    save_calibration: bool = Field(True, description="append the measured MFU to the calibration history")
    max_failures: int = Field(0, ge=0, description="Ray Train retries after a worker dies")
    timeout_s: float = Field(1800, gt=0, description="the training job's time limit (seconds): past it the Ray job "
                                                      "is stopped and the flow run fails with the reason")
    pid_dir: str | None = Field(None, description="each worker writes its PID here (operators and tests)")


class TrainFlowResult(BaseModel):
    preflight: PreflightResult
    final_val_loss: float
    initial_val_loss: float
    tokens_seen: int
    steps: int
    params_nonembedding: int
    train_s: float
    predicted_train_s: float | None = Field(None, description="the pre-flight's failure-free time for the job")
    mfu: float | None
    tokens_per_s_per_worker: float
    calibration_record: str | None = None
    calibration_file: str | None = None


def architecture_of(config) -> dict:
    """The simulator's Architecture fields for the small GPT (GELU MLP 4d, MHA, tied embeddings)."""
    return {"name": f"small-gpt-{config.n_layer}x{config.d_model}", "n_layers": config.n_layer,
            "d_model": config.d_model, "n_heads": config.n_head, "n_kv_heads": config.n_head,
            "head_dim": config.head_dim, "ffn_hidden": 4 * config.d_model, "ffn_kind": "gelu",
            "vocab_size": config.vocab_size, "seq_len": config.seq_len, "tied_embeddings": True,
            "attention": "mha", "source": "scaling_planner.train.gpt.GPTConfig"}


@task(name="train-small-gpt", cache_policy=NO_CACHE)
def run_training(config_fields: dict, job, req: TrainRequest, dtype: str, peak_flops_per_s: float | None,
                 peak_source: str | None):
    from scaling_planner.train.gpt import GPTConfig
    from scaling_planner.train.ray_job import train_on_ray

    return train_on_ray(GPTConfig(**config_fields), job=job, tokens=req.tokens, batch_size=req.batch_size,
                        lr=req.lr, seed=req.seed, corpus=req.corpus, dtype=dtype,
                        threads_per_worker=req.threads_per_worker, profile=None,
                        peak_flops_per_s=peak_flops_per_s, peak_source=peak_source, storage_dir=req.storage_dir,
                        max_failures=req.max_failures, pid_dir=req.pid_dir, timeout_s=req.timeout_s)


@task(name="record-mfu", cache_policy=NO_CACHE)
def record_mfu(report, profile: str, calibration_dir: str | None, details: dict):
    """Append the measured MFU to the calibration history (atomic; never a half-written file)."""
    from scaling_planner.calibration.store import append, record_from_mfu

    rec = record_from_mfu(report, profile=profile, details=details)
    return rec, str(append(rec, calibration_dir))


def training_dtype(dtype: str, profile_name: str) -> str:
    """The dtype the job trains in: ``dtype``, or for 'auto' the profile's training precision (the one the
    pre-flight planned and the calibration record will be read at)."""
    if dtype != "auto":
        return dtype
    from scaling_planner.hardware.profiles import load_profile

    return load_profile(profile_name).training_precision


def device_peak(profile_name: str, dtype: str, use_gpu: bool, threads: int) -> tuple[float | None, str | None]:
    """Dense peak of one worker's device: a GPU's from its profile; a CPU worker's as its share of the box
    (the ``cpu`` profile describes the whole machine as one device)."""
    from scaling_planner.base.errors import InputError
    from scaling_planner.hardware.profiles import load_profile

    profile = load_profile(profile_name)
    try:
        peak = profile.peak_flops_per_s("bf16" if dtype == "bf16" else "fp32")
    except InputError:  # a dtype the profile has no peak for: report throughput without MFU
        return None, None
    if use_gpu:
        return peak, f"{profile.name} dense {dtype} peak"
    cores = os.cpu_count() or 1
    share = min(1.0, threads / cores)
    return peak * share, f"{profile.name} {dtype} peak x {threads}/{cores} cores (one worker's share)"


@flow(name="train-small-gpt", log_prints=True)
def train(request: TrainRequest | None = None) -> TrainFlowResult:
    """Pre-flight, then train on Ray, then record the measured MFU. Fails (with the reason) when the gate
    rejects the job or the training job fails."""
    from scaling_planner.measure.ray_session import ray_session
    from scaling_planner.train.gpt import config_for_params

    req = request or TrainRequest()
    logger = get_run_logger()
    config = config_for_params(req.params, seq_len=req.seq_len)
    with ray_session(req.ray_address):
        pre = preflight(PreflightRequest(
            params=float(config.params_total()), tokens=float(req.tokens), arch=architecture_of(config),
            gpu=req.gpu, gpus=req.workers, limits=req.limits, ray_address=req.ray_address,
            calibration_dir=req.calibration_dir, cpus_per_worker=float(req.threads_per_worker)))
        if pre.job is None:
            raise RuntimeError(f"the pre-flight did not size a job on this cluster: {pre.job_note}")
        dtype = training_dtype(req.dtype, pre.gpu)
        peak, peak_source = device_peak(pre.gpu, dtype, pre.job.use_gpu, req.threads_per_worker)
        # stopped past req.timeout_s
        result = run_training(config.model_dump(), pre.job, req, dtype, peak, peak_source)
    rec_id = rec_file = None
    if req.save_calibration and result.mfu.mfu is not None:
        rec, rec_file = record_mfu(result.mfu, pre.gpu, req.calibration_dir,
                                   {"workers": req.workers, "threads_per_worker": req.threads_per_worker,
                                    "params_nonembedding": result.params_nonembedding, "tokens": result.tokens_seen,
                                    "peak_source": peak_source})
        rec_id = rec.id
    training = pre.training() or {}
    predicted = training.get("ideal_time_s")
    out = TrainFlowResult(
        preflight=pre, final_val_loss=result.final_val_loss, initial_val_loss=result.initial_val_loss,
        tokens_seen=result.tokens_seen, steps=result.steps, params_nonembedding=result.params_nonembedding,
        train_s=result.train_s, predicted_train_s=predicted, mfu=result.mfu.mfu,
        tokens_per_s_per_worker=result.mfu.tokens_per_s, calibration_record=rec_id, calibration_file=rec_file)
    _publish(out, result)
    for line in summary_lines(out):
        logger.info(line)
    return out


def summary_lines(out: TrainFlowResult) -> list[str]:
    lines = [f"trained {out.params_nonembedding:,} non-embedding params on {out.tokens_seen:,} tokens in "
             f"{out.steps} steps: val loss {out.initial_val_loss:.3f} -> {out.final_val_loss:.3f} nats/byte",
             f"measured {out.tokens_per_s_per_worker:,.0f} tokens/s per worker"
             + (f", MFU {out.mfu:.1%}" if out.mfu is not None else "") + f"; training took {out.train_s:.1f} s"]
    if out.predicted_train_s:
        lines.append(f"pre-flight predicted {out.predicted_train_s:.1f} s "
                     f"(measured / predicted = {out.train_s / out.predicted_train_s:.2f})")
    if out.calibration_record:
        lines.append(f"calibration record {out.calibration_record} written: {out.calibration_file}")
    return lines


def _publish(out: TrainFlowResult, result) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(key="training-run", description="what the training run measured",
                             markdown="# Training run\n\n" + "\n".join(f"- {ln}" for ln in summary_lines(out)))
    create_table_artifact(key="training-loss", description="mean training loss per logged window",
                          table=[{"step": s, "train_loss": round(v, 4)}
                                 for s, v in zip(result.train_loss_steps, result.train_losses, strict=True)])


def main(argv: list[str] | None = None) -> int:
    from scaling_planner.cli import OneLineParser
    from scaling_planner.cli.options import add_model_arguments, build_request

    ap = OneLineParser(prog="python flows/train.py", description=__doc__.splitlines()[0])
    add_model_arguments(ap, TrainRequest, every_field=True)  # one flag per field of the request
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_script("train", lambda: build_request(TrainRequest, a, every_field=True), train, summary_lines)


if __name__ == "__main__":
    sys.exit(main())
