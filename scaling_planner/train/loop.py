"""Train the small GPT on a corpus for a token budget; report losses, parameters, time and MFU.

AdamW (Loshchilov & Hutter 2019; betas 0.9/0.95, weight decay on matrices and embeddings only, as
GPT-3 and nanoGPT do), linear warm-up then cosine decay to ``min_lr_frac x lr`` (Radford et al.
2018; Hoffmann et al. 2022 decay over the run length, which a token budget fixes here), gradient
clipping at norm 1. Loss is the mean cross-entropy in nats/token over bytes.

On CPU the run is bitwise deterministic for a given seed and thread count: ``torch.manual_seed``
fixes the initialisation, a separate seeded ``torch.Generator`` the batch offsets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..base.errors import InputError
from ..measure.mfu import MfuMeter
from ..measure.models import MfuReport
from .data import Corpus
from .gpt import GPT, GPTConfig

DTYPES = {"fp32": None, "tf32": None, "bf16": torch.bfloat16}


class TrainResult(BaseModel):
    """What one training run did. Losses in nats/token (bytes)."""

    model_config = ConfigDict(extra="forbid")

    config: GPTConfig
    seed: int
    batch_size: int
    lr: float
    device: str
    dtype: str
    corpus: str
    corpus_tokens: int
    final_val_loss: float = Field(description="mean validation loss after training, nats/token")
    initial_val_loss: float = Field(description="the same evaluation before the first step")
    unigram_entropy_nats: float = Field(description="byte-frequency entropy of the validation split")
    train_loss_steps: list[int] = Field(description="step (1-based) at the end of each logged window")
    train_losses: list[float] = Field(description="mean training loss over each logged window")
    tokens_requested: int
    tokens_seen: int
    steps: int
    params_nonembedding: int
    params_total: int
    flops_per_token: float
    wall_s: float = Field(description="whole run: model build, evaluations and training")
    train_s: float = Field(description="the training steps only")
    threads: int | None = None
    mfu: MfuReport


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, f"must be a whole number >= {minimum}, got {value!r}")
    return value


def _check_float(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = True) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x) or x > high or x < low or (low_open and x == low):
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise InputError(name, f"must be a finite number {bound}, got {value!r}")
    return x


def lr_at(step: int, *, lr: float, warmup_steps: int, total_steps: int, min_lr_frac: float) -> float:
    """Learning rate for 0-based ``step``: linear warm-up to ``lr``, cosine decay to ``min_lr_frac lr``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return lr * (min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))


@torch.no_grad()
def evaluate(model: GPT, batches, device: torch.device, autocast) -> float:
    """Mean loss (nats/token) over ``batches``."""
    was_training = model.training
    model.eval()
    total = 0.0
    for x, y in batches:
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        total += float(loss)
    model.train(was_training)
    return total / len(batches)


def train_gpt(config: GPTConfig, *, tokens: int, batch_size: int = 16, lr: float = 3e-3, seed: int = 0,
              corpus: Corpus | str | Path | None = None, device: str = "cpu", dtype: str = "fp32",
              eval_batches: int = 8, log_every: int = 10, on_step: Callable[[dict], None] | None = None,
              threads: int | None = None, warmup_frac: float = 0.1, min_lr_frac: float = 0.1,
              weight_decay: float = 0.1, grad_clip: float = 1.0, profile: Any = None,
              peak_flops_per_s: float | None = None, peak_source: str | None = None,
              nvml_index: int | None = None, data_seed: int | None = None,
              wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None) -> TrainResult:
    """Train ``GPT(config)`` for ``tokens // (batch_size * seq_len)`` optimizer steps.

    ``corpus``: a :class:`Corpus`, a path, or None for the shipped corpus. ``dtype``: ``fp32``,
    ``tf32`` (CUDA matmuls in TF32) or ``bf16`` (autocast). ``on_step(info)`` is called after each step
    with ``{"step", "steps", "tokens_seen", "loss", "lr", "elapsed_s"}`` (its time falls inside the
    meter's window, so keep it cheap: log, do not evaluate). ``threads`` sets
    ``torch.set_num_threads`` for the run (restored afterwards). ``profile`` / ``peak_flops_per_s``
    / ``peak_source`` / ``nvml_index`` go to :class:`~scaling_planner.measure.mfu.MfuMeter`, which
    times every step after the first. Data-parallel use (``train.ray_job``): ``data_seed`` seeds the
    batch sampler apart from the initialisation (one per rank), ``wrap_model`` wraps the built model
    (``ray.train.torch.prepare_model`` -> DistributedDataParallel). Bad arguments raise
    :class:`InputError` naming the field.
    """
    t_run = time.perf_counter()
    if not isinstance(config, GPTConfig):
        raise InputError("config", f"must be a GPTConfig, got {type(config).__name__}")
    batch_size = _check_int("batch_size", batch_size, 1)
    tokens = _check_int("tokens", tokens, 1)
    seed = _check_int("seed", seed, 0)
    data_seed = seed if data_seed is None else _check_int("data_seed", data_seed, 0)
    eval_batches = _check_int("eval_batches", eval_batches, 1)
    log_every = _check_int("log_every", log_every, 1)
    if threads is not None:
        threads = _check_int("threads", threads, 1)
    lr = _check_float("lr", lr, low=0.0, high=10.0)
    warmup_frac = _check_float("warmup_frac", warmup_frac, low=0.0, high=1.0, low_open=False)
    min_lr_frac = _check_float("min_lr_frac", min_lr_frac, low=0.0, high=1.0, low_open=False)
    weight_decay = _check_float("weight_decay", weight_decay, low=0.0, low_open=False)
    grad_clip = _check_float("grad_clip", grad_clip, low=0.0)
    if dtype not in DTYPES:
        raise InputError("dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}")
    tokens_per_step = batch_size * config.seq_len
    if tokens < tokens_per_step:
        raise InputError("tokens", f"{tokens} is less than one batch ({batch_size} x {config.seq_len} = "
                                   f"{tokens_per_step} tokens)")
    steps = tokens // tokens_per_step
    if not isinstance(corpus, Corpus):
        corpus = Corpus.load(corpus)
    if config.vocab_size < corpus.vocab_size:
        raise InputError("config.vocab_size", f"must be >= {corpus.vocab_size} for a byte-level corpus, "
                                              f"got {config.vocab_size}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError("device", f"not a torch device: {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device", f"{device} asked for but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise InputError("device", f"must be cpu or cuda[:i], got {device!r}")
    if dtype == "tf32" and dev.type != "cuda":
        raise InputError("dtype", "tf32 is a CUDA matmul mode; use fp32 or bf16 on cpu")
    val = corpus.eval_batches(eval_batches, batch_size, config.seq_len)  # InputError when T does not fit
    corpus.batch(1, config.seq_len, torch.Generator().manual_seed(0))  # same check for the train split
    # built before the model so a bad profile/dtype/peak fails fast; ``with meter`` restarts its clock
    meter = MfuMeter(config.flops_per_token(), device=str(dev), dtype=dtype, profile=profile,
                     peak_flops_per_s=peak_flops_per_s, peak_source=peak_source, nvml_index=nvml_index,
                     warmup_steps=1 if steps > 1 else 0)

    previous_threads = torch.get_num_threads()
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32 if dev.type == "cuda" else None
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        return _run(config, corpus, val, dev, dtype, steps, tokens, tokens_per_step, batch_size, lr, seed,
                    log_every, on_step, warmup_frac, min_lr_frac, weight_decay, grad_clip, meter, threads, t_run,
                    data_seed=data_seed, wrap_model=wrap_model)
    finally:
        torch.set_num_threads(previous_threads)
        if previous_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = previous_tf32


def _run(config, corpus, val, dev, dtype, steps, tokens, tokens_per_step, batch_size, lr, seed, log_every,
         on_step, warmup_frac, min_lr_frac, weight_decay, grad_clip, meter, threads, t_run, *, data_seed,
         wrap_model) -> TrainResult:
    torch.manual_seed(seed)
    model = GPT(config).to(dev)
    if wrap_model is not None:
        model = wrap_model(model)
    opt = _optimizer(model, lr, weight_decay)
    gen = torch.Generator().manual_seed(data_seed)
    amp = DTYPES[dtype]

    def autocast():
        return torch.autocast(dev.type, dtype=amp, enabled=amp is not None)

    initial_val = evaluate(model, val, dev, autocast)
    warmup_steps = max(1, round(warmup_frac * steps)) if warmup_frac > 0 else 0
    log_steps: list[int] = []
    log_losses: list[float] = []
    window: list[float] = []
    model.train()
    t0 = time.perf_counter()
    with meter:
        for step in range(steps):
            step_lr = lr_at(step, lr=lr, warmup_steps=warmup_steps, total_steps=steps, min_lr_frac=min_lr_frac)
            for group in opt.param_groups:
                group["lr"] = step_lr
            x, y = corpus.batch(batch_size, config.seq_len, gen)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with autocast():
                _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            loss_value = loss.detach().item()  # syncs the device, so the meter sees finished work
            meter.step(tokens_per_step)
            window.append(loss_value)
            if (step + 1) % log_every == 0 or step + 1 == steps:
                log_steps.append(step + 1)
                log_losses.append(sum(window) / len(window))
                window = []
            if on_step is not None:
                on_step({"step": step + 1, "steps": steps, "tokens_seen": (step + 1) * tokens_per_step,
                         "loss": loss_value, "lr": step_lr, "elapsed_s": time.perf_counter() - t0})
    train_s = time.perf_counter() - t0
    report = meter.report()
    final_val = evaluate(model, val, dev, autocast)
    return TrainResult(
        config=config, seed=seed, batch_size=batch_size, lr=lr, device=str(dev), dtype=dtype,
        corpus=corpus.name, corpus_tokens=corpus.n_tokens, final_val_loss=final_val,
        initial_val_loss=initial_val, unigram_entropy_nats=corpus.unigram_entropy_nats("val"),
        train_loss_steps=log_steps, train_losses=log_losses, tokens_requested=tokens,
        tokens_seen=steps * tokens_per_step, steps=steps, params_nonembedding=config.params_nonembedding(),
        params_total=config.params_total(), flops_per_token=config.flops_per_token(),
        wall_s=time.perf_counter() - t_run, train_s=train_s, threads=threads, mfu=report)
