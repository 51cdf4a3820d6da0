"""Byte-level tokenisation of a text corpus, a deterministic train/validation split, batches.

Tokens are the UTF-8 bytes of the text (vocabulary 256, no tokenizer to train or ship). The last
``val_fraction`` of the bytes is the validation split. Training batches are windows at random
offsets drawn from a seeded ``torch.Generator``; validation batches are evenly spaced windows over the
validation split, the same for every run and seed, so runs of a sweep are scored on the same text.

Two corpora ship with the package (``scaling_planner/train/corpus/``, see its README):
``python_docs.txt`` (2.0 MB, the default here) and ``docs_large.txt.xz`` (23.8 MB of text, the sweep's
default, :data:`LARGE_CORPUS`). A path ending in ``.xz`` is decompressed when read.
"""

from __future__ import annotations

import lzma
import math
from pathlib import Path

import numpy as np
import torch

from ..base.errors import InputError

VOCAB_SIZE = 256
DEFAULT_CORPUS = Path(__file__).resolve().parent / "corpus" / "python_docs.txt"
LARGE_CORPUS = Path(__file__).resolve().parent / "corpus" / "docs_large.txt.xz"
MIN_TOKENS = 4096


class Corpus:
    """A byte-tokenised text with a train and a validation split (``uint8`` numpy arrays)."""

    vocab_size = VOCAB_SIZE

    def __init__(self, tokens: np.ndarray, *, name: str = "corpus", val_fraction: float = 0.1,
                 min_tokens: int = MIN_TOKENS):
        if not 0 < val_fraction < 1:
            raise InputError("val_fraction", f"must be in (0, 1), got {val_fraction!r}")
        tokens = np.ascontiguousarray(tokens, dtype=np.uint8)
        if tokens.size == 0:
            raise InputError("corpus", f"{name} is empty")
        if tokens.size < min_tokens:
            raise InputError("corpus", f"{name} has {tokens.size} tokens (bytes); need at least {min_tokens}")
        self.name = name
        self.val_fraction = float(val_fraction)
        self.tokens = tokens
        cut = tokens.size - max(1, math.ceil(tokens.size * val_fraction))
        self.train = tokens[:cut]
        self.val = tokens[cut:]

    @classmethod
    def load(cls, path: str | Path | None = None, *, val_fraction: float = 0.1,
             min_tokens: int = MIN_TOKENS) -> Corpus:
        """Read a text file (default: the shipped corpus; ``.xz``: decompressed) as bytes.

        Raises :class:`InputError` (field ``corpus``) when the file is missing, not a file, unreadable,
        empty or shorter than ``min_tokens`` bytes.
        """
        p = Path(DEFAULT_CORPUS if path is None else path).expanduser()
        if not p.exists():
            hint = " (the shipped corpus is package data of scaling_planner.train)" if path is None else ""
            raise InputError("corpus", f"no such file: {p}{hint}")
        if not p.is_file():
            raise InputError("corpus", f"not a file: {p}")
        try:
            data = p.read_bytes()
            if p.suffix == ".xz":
                data = lzma.decompress(data)
        except OSError as exc:
            raise InputError("corpus", f"cannot read {p}: {exc.strerror or exc}") from None
        except lzma.LZMAError as exc:
            raise InputError("corpus", f"cannot decompress {p}: {exc}") from None
        return cls(np.frombuffer(data, dtype=np.uint8), name=str(p), val_fraction=val_fraction,
                   min_tokens=min_tokens)

    @classmethod
    def from_text(cls, text: str, **kwargs) -> Corpus:
        return cls(encode(text), **kwargs)

    # ---- statistics ---------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return int(self.tokens.size)

    @property
    def n_unique(self) -> int:
        """Distinct byte values in the whole corpus."""
        return int(np.count_nonzero(np.bincount(self.tokens, minlength=VOCAB_SIZE)))

    def unigram_entropy_nats(self, split: str = "val") -> float:
        """Entropy of the byte frequencies of ``split`` in nats/token: the loss of the best model
        that ignores context (a trained model must beat it)."""
        counts = np.bincount(self._split(split), minlength=VOCAB_SIZE).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())

    # ---- batches ------------------------------------------------------------------------------
    def _split(self, split: str) -> np.ndarray:
        if split == "train":
            return self.train
        if split == "val":
            return self.val
        raise InputError("split", f"must be 'train' or 'val', got {split!r}")

    def _check_window(self, split: str, seq_len: int) -> np.ndarray:
        data = self._split(split)
        if data.size < seq_len + 1:
            raise InputError("seq_len", f"{seq_len} + 1 tokens do not fit in the {split} split "
                                        f"({data.size} tokens) of {self.name}")
        return data

    @staticmethod
    def _windows(data: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
        w = torch.from_numpy(data[idx].astype(np.int64))
        return w[:, :-1], w[:, 1:]

    def batch(self, batch_size: int, seq_len: int, generator: torch.Generator,
              split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` int64 tensors ``[batch_size, seq_len]`` at random offsets; ``y`` is ``x`` shifted by one."""
        data = self._check_window(split, seq_len)
        starts = torch.randint(0, data.size - seq_len, (batch_size,), generator=generator).numpy()
        return self._windows(data, starts, seq_len)

    def eval_batches(self, n_batches: int, batch_size: int, seq_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``n_batches`` validation batches of evenly spaced windows (independent of any seed)."""
        data = self._check_window("val", seq_len)
        n = n_batches * batch_size
        starts = np.linspace(0, data.size - seq_len - 1, n).round().astype(np.int64)
        return [self._windows(data, starts[i * batch_size:(i + 1) * batch_size], seq_len)
                for i in range(n_batches)]


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes as ``uint8`` tokens."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(tokens) -> str:
    """Tokens back to text (invalid UTF-8 sequences replaced)."""
    return bytes(np.asarray(tokens, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")
