"""Plain text for the terminal: aligned tables and the one-line layout every table shows."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NUMERIC_CELL = re.compile(r"^[-+$~]?[\d.,]+(?:e[-+]?\d+)?\s*[%A-Za-z/]{0,8}$|^-$|^$")


def table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None, indent: str = "  ") -> str:
    """A plain aligned text table: the first column and text columns left-aligned, numbers right-aligned."""
    body = [[str(c) for c in r] for r in rows]
    cells = ([[str(h) for h in header]] if header else []) + body
    if not cells:
        return ""
    ncols = max(map(len, cells))
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(ncols)]
    numeric = [i > 0 and all(_NUMERIC_CELL.match(row[i]) for row in body if i < len(row)) for i in range(ncols)]
    lines = []
    for k, row in enumerate(cells):
        parts = [c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append((indent + "  ".join(parts)).rstrip())
        if header and k == 0:
            lines.append((indent + "  ".join("-" * w for w in widths)).rstrip())
    return "\n".join(lines)


def layout_line(lay) -> str:
    """A :class:`~scaling_planner.simulate.results.Layout` in one line: ``TP2 PP2 v4 DP32 mb1x32 none ZeRO-2 SP``."""
    ep = f" EP{lay.ep}" if lay.ep > 1 else ""
    il = f" v{lay.interleave}" if lay.interleave > 1 else ""
    rc = lay.recompute if lay.recompute != "partial" else f"partial {lay.recompute_fraction:.0%}"
    return (f"TP{lay.tp} PP{lay.pp}{il} DP{lay.dp}{ep} mb{lay.micro_batch}x{lay.micro_batches} "
            f"{rc} ZeRO-{lay.zero_stage}{' SP' if lay.sequence_parallel else ''}")
