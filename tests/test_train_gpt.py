"""The small GPT workload: parameter counts, shapes for a target N, a real training run on the shipped
corpus, determinism, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scaling_planner.base.errors import InputError
from scaling_planner.measure.models import MfuReport
from scaling_planner.train import DEFAULT_CORPUS, GPT, Corpus, GPTConfig, TrainResult, config_for_params, train_gpt
from scaling_planner.train.loop import lr_at


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.load()


# ---- parameter counts ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [
    dict(vocab_size=256, seq_len=64, n_layer=1, n_head=2, d_model=32),
    dict(vocab_size=256, seq_len=128, n_layer=3, n_head=4, d_model=96),
    dict(vocab_size=300, seq_len=16, n_layer=5, n_head=7, d_model=112),
])
def test_param_counts_match_the_module(shape):
    cfg = GPTConfig(**shape)
    model = GPT(cfg)
    total = sum(p.numel() for p in model.parameters())  # the tied head is one tensor, counted once
    embedding = model.wte.weight.numel() + model.wpe.weight.numel()
    assert model.head.weight is model.wte.weight
    assert cfg.params_total() == total
    assert cfg.params_nonembedding() == total - embedding
    assert cfg.params_embedding() == embedding
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert cfg.params_for_flops() - cfg.params_nonembedding() == cfg.vocab_size * cfg.d_model
    # what is multiplied per token: every Linear (head included) plus the LayerNorm weights in N
    layernorm = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters())
    assert cfg.params_for_flops() == linear + layernorm


@pytest.mark.parametrize("target", [5e4, 1e5, 3e5, 1e6, 3e6, 1e7])
def test_config_for_params_hits_the_target(target):
    cfg = config_for_params(target)
    assert abs(cfg.params_nonembedding() / target - 1) < 0.15
    assert 32 <= cfg.d_model / cfg.n_layer <= 64
    assert cfg.head_dim in (16, 32) and cfg.d_model % cfg.n_head == 0
    assert GPTConfig(**cfg.model_dump()) == cfg


def test_config_for_params_grows_with_n():
    sizes = [config_for_params(n).params_nonembedding() for n in (5e4, 2e5, 1e6, 5e6)]
    assert sizes == sorted(sizes) and sizes[-1] > 50 * sizes[0]


@pytest.mark.parametrize("bad", [0, -1e5, float("inf"), "many", 10])
def test_config_for_params_rejects(bad):
    with pytest.raises(InputError) as exc:
        config_for_params(bad)
    assert exc.value.field == "n_params"


@pytest.mark.parametrize("kwargs,field", [
    ({"d_model": 30, "n_head": 4}, "d_model"),
    ({"n_layer": 0}, "n_layer"),
    ({"vocab_size": 1}, "vocab_size"),
    ({"dropout": 1.0}, "dropout"),
    ({"widht": 3}, "widht"),
])
def test_gpt_config_rejects(kwargs, field):
    with pytest.raises(InputError) as exc:
        GPTConfig(**kwargs)
    assert exc.value.field == field


# ---- corpus ------------------------------------------------------------------------------------------

def test_shipped_corpus(corpus):
    assert corpus.name == str(DEFAULT_CORPUS)
    assert corpus.n_tokens > 1_000_000 and corpus.n_unique <= 256
    assert corpus.val.size == math.ceil(0.1 * corpus.n_tokens)
    assert np.array_equal(np.concatenate([corpus.train, corpus.val]), corpus.tokens)
    assert corpus.val.tobytes() == DEFAULT_CORPUS.read_bytes()[-corpus.val.size:]  # the last 10%
    assert 2.5 < corpus.unigram_entropy_nats("val") < math.log(256)  # English bytes: ~3.3 nats


def test_batches_are_shifted_windows_and_seeded(corpus):
    x, y = corpus.batch(4, 32, torch.Generator().manual_seed(5))
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = corpus.batch(4, 32, torch.Generator().manual_seed(5))
    x3, _ = corpus.batch(4, 32, torch.Generator().manual_seed(6))
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    val = corpus.eval_batches(2, 3, 16)
    assert len(val) == 2 and val[0][0].shape == (3, 16)
    assert val[0][0][0].numpy().astype(np.uint8).tobytes() == corpus.val[:16].tobytes()


def test_corpus_load_errors(tmp_path):
    with pytest.raises(InputError, match="no such file") as exc:
        Corpus.load(tmp_path / "missing.txt")
    assert exc.value.field == "corpus"
    with pytest.raises(InputError, match="not a file"):
        Corpus.load(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        Corpus.load(tmp_path / "empty.txt")
    (tmp_path / "small.txt").write_text("too short " * 10)
    with pytest.raises(InputError, match="need at least"):
        Corpus.load(tmp_path / "small.txt")
    (tmp_path / "ok.txt").write_text("enough text here. " * 400)
    c = Corpus.load(tmp_path / "ok.txt", val_fraction=0.25)
    assert c.val.size == math.ceil(0.25 * c.n_tokens)
    with pytest.raises(InputError) as exc:
        c.batch(2, c.val.size + 5, torch.Generator(), split="val")
    assert exc.value.field == "seq_len"


# ---- training ----------------------------------------------------------------------------------------

def test_lr_schedule():
    kw = dict(lr=1.0, warmup_steps=10, total_steps=110, min_lr_frac=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)  # half way down the cosine
    assert lr_at(110, **kw) == pytest.approx(0.1)


def test_training_learns_the_corpus(corpus):
    """~100k non-embedding parameters, 200 steps of 16 x 64 bytes: the validation loss must fall from
    ln 256 to below the byte unigram entropy (so the model uses context)."""
    cfg = config_for_params(1e5, seq_len=64)
    seen = []
    res = train_gpt(cfg, tokens=200 * 16 * 64, batch_size=16, lr=3e-3, seed=0, corpus=corpus, eval_batches=8,
                    log_every=20, threads=1, on_step=seen.append)
    assert isinstance(res, TrainResult) and isinstance(res.mfu, MfuReport)
    assert res.initial_val_loss == pytest.approx(math.log(256), abs=0.05)
    assert res.final_val_loss < res.unigram_entropy_nats < res.initial_val_loss
    assert res.unigram_entropy_nats == pytest.approx(corpus.unigram_entropy_nats("val"))
    assert res.train_losses[-1] < res.train_losses[0]
    assert res.steps == 200 and res.tokens_seen == 200 * 16 * 64 and res.train_loss_steps[-1] == 200
    assert len(res.train_losses) == 10
    assert [s["step"] for s in seen] == list(range(1, 201)) and seen[-1]["tokens_seen"] == res.tokens_seen
    assert res.params_nonembedding == cfg.params_nonembedding() and res.params_total == cfg.params_total()
    mfu = res.mfu
    assert mfu.steps == 199 and mfu.tokens == 199 * 16 * 64  # the first step is the meter's warm-up
    assert mfu.flops_per_token == cfg.flops_per_token() == res.flops_per_token
    assert mfu.achieved_flops_per_s == pytest.approx(mfu.tokens_per_s * mfu.flops_per_token)
    assert mfu.profile == "cpu" and 0 < mfu.mfu < 1.5
    assert mfu.elapsed_s <= res.train_s <= res.wall_s
    assert TrainResult.model_validate_json(res.model_dump_json()) == res


def test_same_seed_same_run_other_seed_other_run(corpus):
    cfg = GPTConfig(seq_len=32, n_layer=1, n_head=2, d_model=32)
    kw = dict(tokens=12 * 8 * 32, batch_size=8, lr=3e-3, corpus=corpus, eval_batches=2, log_every=1, threads=1)
    before = torch.get_num_threads()
    a = train_gpt(cfg, seed=3, **kw)
    b = train_gpt(cfg, seed=3, **kw)
    c = train_gpt(cfg, seed=4, **kw)
    assert torch.get_num_threads() == before  # restored
    assert a.train_losses == b.train_losses and a.final_val_loss == b.final_val_loss
    assert a.initial_val_loss == b.initial_val_loss
    assert a.train_losses != c.train_losses and a.final_val_loss != c.final_val_loss


def test_one_batch_runs_without_warmup(corpus):
    cfg = GPTConfig(seq_len=16, n_layer=1, n_head=2, d_model=32)
    res = train_gpt(cfg, tokens=4 * 16 + 5, batch_size=4, corpus=corpus, eval_batches=1)
    assert res.steps == 1 and res.tokens_seen == 64 and res.tokens_requested == 69 and res.mfu.steps == 1


def test_bf16_autocast_on_cpu_uses_the_bf16_peak(corpus):
    cfg = GPTConfig(seq_len=16, n_layer=1, n_head=2, d_model=32)
    res = train_gpt(cfg, tokens=3 * 4 * 16, batch_size=4, corpus=corpus, eval_batches=1, dtype="bf16", threads=1)
    assert res.dtype == res.mfu.dtype == "bf16"
    assert "bf16" in res.mfu.peak_source and math.isfinite(res.final_val_loss)
    fp32 = train_gpt(cfg, tokens=3 * 4 * 16, batch_size=4, corpus=corpus, eval_batches=1, threads=1)
    assert res.mfu.peak_flops_per_s > fp32.mfu.peak_flops_per_s
    assert res.final_val_loss != fp32.final_val_loss  # really computed in another precision


@pytest.mark.parametrize("kwargs,field", [
    ({"tokens": 8 * 16 - 1}, "tokens"),
    ({"tokens": 0}, "tokens"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": -1.0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"seed": -1}, "seed"),
    ({"dtype": "fp8"}, "dtype"),
    ({"dtype": "tf32"}, "dtype"),  # a CUDA matmul mode
    ({"profile": "no-such-gpu"}, "profile"),
    ({"profile": "cpu", "dtype": "bf16", "peak_flops_per_s": 0.0}, "peak_flops_per_s"),
    ({"device": "tpu"}, "device"),
    ({"eval_batches": 0}, "eval_batches"),
    ({"threads": 0}, "threads"),
    ({"corpus": "/nonexistent/corpus.txt"}, "corpus"),
    ({"config": {"d_model": 32}}, "config"),
    ({"config": GPTConfig(vocab_size=100, seq_len=16, n_layer=1, n_head=2, d_model=32)}, "config.vocab_size"),
    ({"config": GPTConfig(seq_len=4096, n_layer=1, n_head=2, d_model=32), "tokens": 8 * 4096}, "seq_len"),
])
def test_train_gpt_rejects_bad_input(corpus, kwargs, field):
    args = dict(config=GPTConfig(seq_len=16, n_layer=1, n_head=2, d_model=32), tokens=8 * 16 * 2, batch_size=8,
                corpus=corpus)
    args.update(kwargs)
    if field == "seq_len":  # a tiny corpus whose validation split is shorter than the context
        args["corpus"] = Corpus.from_text("a few words of text. " * 1000)
    with pytest.raises(InputError) as exc:
        train_gpt(**args)
    assert exc.value.field == field
