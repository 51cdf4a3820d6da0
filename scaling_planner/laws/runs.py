"""The runs a law is fitted to: parameters N, tokens D and final loss, read from a CSV (columns named
as in Hoffmann et al. 2022 and Epoch's replication, with common aliases) or given as arrays."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..base.errors import InputError


@dataclass
class Runs:
    """Training runs: parameters N, tokens D, final loss; ``rows`` are the CSV line numbers."""

    N: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    rows: np.ndarray
    source: str = ""
    dropped_rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.N.size)

    def drop_highest(self, k: int) -> Runs:
        """Epoch's outlier rule: drop the k highest-loss runs (``losses < sorted(losses)[-k]``)."""
        if k < 0:
            raise InputError("drop_highest", f"must be >= 0, got {k}")
        if k == 0:
            return self
        if k >= len(self):
            raise InputError("drop_highest", f"{k} would drop all {len(self)} runs")
        keep = self.loss < np.sort(self.loss)[-k]
        return Runs(
            self.N[keep], self.D[keep], self.loss[keep], self.rows[keep], self.source,
            self.dropped_rows + [int(r) for r in self.rows[~keep]],
        )


_COLUMN_ALIASES = {
    "N": ("n", "params", "parameters", "model_size", "model size"),
    "D": ("d", "tokens", "data", "training_tokens"),
    "loss": ("loss", "final_loss", "val_loss", "validation_loss"),
}


def load_runs(path: str | Path) -> Runs:
    """Read runs from a CSV with a header holding N, D and loss columns (aliases: params, tokens).

    Every problem is reported as one line naming the file, the row (line number) and the column.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # a spreadsheet's CSV may start with a BOM
    except FileNotFoundError:
        raise InputError("runs", f"no such file: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("runs", f"cannot read {p}: {exc}") from None
    try:
        return _parse_runs(p, csv.reader(text.splitlines()))
    except csv.Error as exc:  # a field over the csv module's size limit, a stray NUL (older Pythons)
        raise InputError("runs", f"{p} is not a CSV of runs: {exc}") from None


def _parse_runs(p: Path, reader) -> Runs:
    header = next(reader, None)
    if not header:
        raise InputError("runs", f"{p} is empty; expected a header with columns N, D, loss")
    names = [h.strip().lower() for h in header]
    index = {}
    for key, aliases in _COLUMN_ALIASES.items():
        found = [i for i, h in enumerate(names) if h in aliases]
        if not found:
            raise InputError(
                "runs", f"{p}: missing column {key!r} (need N, D, loss; found {', '.join(header) or 'none'})"
            )
        index[key] = found[0]
    values: dict[str, list[float]] = {"N": [], "D": [], "loss": []}
    rows: list[int] = []
    for line_no, record in enumerate(reader, start=2):
        if not record or all(not c.strip() for c in record):
            continue
        for key, col in index.items():
            raw = record[col].strip() if col < len(record) else ""
            column = header[col].strip()
            try:
                v = float(raw)
            except ValueError:
                raise InputError("runs", f"{p} row {line_no}, column {column}: {raw!r} is not a number") from None
            if not math.isfinite(v):
                raise InputError("runs", f"{p} row {line_no}, column {column}: {raw!r} is not finite")
            if v <= 0:
                raise InputError("runs", f"{p} row {line_no}, column {column}: must be > 0, got {raw}")
            values[key].append(v)
        rows.append(line_no)
    return Runs(
        N=np.asarray(values["N"]), D=np.asarray(values["D"]), loss=np.asarray(values["loss"]),
        rows=np.asarray(rows, dtype=int), source=str(p),
    )


def runs_from_arrays(N, D, loss, source: str = "arrays") -> Runs:
    """Runs from arrays, validated like a CSV (rows numbered from 1)."""
    arrays = [np.asarray(v, dtype=float).ravel() for v in (N, D, loss)]
    if len({a.size for a in arrays}) != 1:
        raise InputError("runs", f"N, D and loss must have the same length, got {[a.size for a in arrays]}")
    for name, a in zip(("N", "D", "loss"), arrays, strict=True):
        bad = np.flatnonzero(~np.isfinite(a) | (a <= 0))
        if bad.size:
            raise InputError("runs", f"row {bad[0] + 1}, column {name}: must be finite and > 0, got {a[bad[0]]!r}")
    return Runs(*arrays, rows=np.arange(1, arrays[0].size + 1), source=source)
