"""Each isoFLOP row must bracket its minimum: a row whose loss only rises (or only falls) with N says
where the compute-optimal model is *not*, and a law fitted to it places the optimum by extrapolation.

Hoffmann et al. 2022 (Approach 2, Fig. 3) read the optimum off a parabola through each isoFLOP
profile; that needs points on both sides of it. After a row trains, a row whose lowest loss sits at
its smallest (largest) N gets one more rung one row-step beyond that edge (the row's own log
spacing, snapped to a real shape, on ``D = C / 6N`` tokens), and so on up to ``max_extensions``
rounds. An edge that cannot move (no smaller or larger shape, a rung below ``min_steps`` steps or
above ``max_epochs`` passes over the corpus) is a warning that names the row and the reason.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .design import (
    FLOPS_PER_PARAM_TOKEN,
    CorpusSize,
    Rung,
    SweepDefinition,
    _make_rung,
    _steps_for,
    parabola_minimum,
    shape_catalogue,
    snap,
)


def edge_of_minimum(row: list[tuple[Rung, float]]) -> str | None:
    """'left' when the row's lowest loss is at its smallest N, 'right' at its largest, else None."""
    pts = sorted(row, key=lambda p: p[0].params)
    i = int(np.argmin([loss for _, loss in pts]))
    if i == 0:
        return "left"
    if i == len(pts) - 1:
        return "right"
    return None


def row_step(row: list[Rung]) -> float:
    """The row's log spacing in N (median ratio of neighbours; at least 1.3)."""
    ns = sorted({r.params for r in row})
    ratios = [b / a for a, b in itertools.pairwise(ns)]
    return max(float(np.median(ratios)) if ratios else 2.0, 1.3)


def extension(defn: SweepDefinition, corpus: CorpusSize, row: list[Rung], side: str) -> tuple[Rung | None, str]:
    """(the rung one step beyond the row's ``side`` edge, '') or (None, the reason it cannot be made)."""
    catalogue = shape_catalogue(defn.seq_len)
    ns = sorted(r.params for r in row)
    C = row[0].budget_flops
    left = side == "left"
    edge = ns[0] if left else ns[-1]
    beyond = [s for s in catalogue if (s.params < edge if left else s.params > edge)]  # sorted by N
    if not beyond:
        return None, f"no model {'smaller' if left else 'larger'} than {edge:,} params exists in the shape catalogue"
    shape = snap(edge / row_step(row) if left else edge * row_step(row), catalogue)
    if shape not in beyond:  # snapped back onto (or inside) the row: the nearest shape beyond its edge
        shape = beyond[-1] if left else beyond[0]
    steps = _steps_for(C, shape.params, defn.tokens_per_step)
    rung = _make_rung(defn, "extension", C, shape, steps)
    if steps < defn.min_steps:
        return None, (f"the model one step beyond ({shape.params:,} params) gets {steps} steps at {C:.3g} FLOPs "
                      f"(< min_steps {defn.min_steps})")
    epochs = rung.tokens / corpus.train_tokens
    if epochs > defn.max_epochs:
        return None, (f"the model one step beyond ({shape.params:,} params) needs {rung.tokens:,} tokens = "
                      f"{epochs:.2f} passes over the corpus (> max_epochs {defn.max_epochs:g})")
    return rung, ""


def unbracketed_warning(C: float, side: str, reason: str) -> str:
    where = "smallest" if side == "left" else "largest"
    return (f"the isoFLOP row at {C:.3g} FLOPs does not bracket its minimum: its lowest loss is at its {where} "
            f"model and the row cannot be extended ({reason}); the law places that row's optimum by extrapolation")


def optimum_of_row(row: list[tuple[Rung, float]]) -> dict | None:
    """The row's minimum from a parabola in log N through its lowest point and its neighbours
    (Hoffmann et al. 2022 Approach 2); None when the row does not bracket it."""
    pts = sorted(row, key=lambda p: p[0].params)
    if edge_of_minimum(pts) is not None or len(pts) < 3:
        return None
    i = int(np.argmin([loss for _, loss in pts]))
    x = np.log([p[0].params for p in pts[i - 1 : i + 2]])
    y = np.array([p[1] for p in pts[i - 1 : i + 2]])
    minimum = parabola_minimum(x, y)
    if minimum is None:
        return None
    N = math.exp(minimum[0])
    C = pts[0][0].budget_flops
    return {"budget_flops": C, "N_opt": N, "D_opt": C / (FLOPS_PER_PARAM_TOKEN * N), "loss_min": minimum[1]}


def bracket_rows(runner, ladder, csize: CorpusSize) -> tuple[list[Rung], dict]:
    """Extend each row of ``ladder`` whose minimum sits at an edge, up to ``max_extensions`` rounds, training
    the extensions with ``runner`` (the sweep's: ``defn``, ``loss(rung)``, ``lr_for(N)``, ``key``, ``store``,
    ``train``); (the extension rungs, {"warnings", "rows"}: each row's minimum when bracketed)."""
    defn = runner.defn
    rows = {C: list(row) for C, row in ladder.rows.items()}
    extensions: list[Rung] = []
    warnings: list[str] = []
    closed: set[float] = set()
    for round_ in range(defn.max_extensions + 1):
        wanted = []
        for C, row in rows.items():
            if C in closed:
                continue
            side = edge_of_minimum([(r, runner.loss(r)) for r in row])
            if side is None:
                continue
            rung, why = extension(defn, csize, row, side)
            if rung is None:
                warnings.append(unbracketed_warning(C, side, why))
                closed.add(C)
                continue
            wanted.append((C, rung.model_copy(update={"lr": float(runner.lr_for(rung.params))})))
        if not wanted:
            break
        if round_ == defn.max_extensions:
            for C, _rung in wanted:
                side = edge_of_minimum([(r, runner.loss(r)) for r in rows[C]])
                warnings.append(unbracketed_warning(C, side, f"still so after {defn.max_extensions} "
                                                             "extension round(s) (max_extensions)"))
            break
        for C, rung in wanted:
            rows[C].append(rung)
            extensions.append(rung)
        runner.store.active = runner.store.active + [runner.key(r) for _, r in wanted]
        runner.train([r for _, r in wanted], "extension")
    optima = [optimum_of_row([(r, runner.loss(r)) for r in row]) for row in rows.values()]
    return extensions, {"warnings": warnings,
                        "rows": [{"budget_flops": C, "rungs": len(row), "extended": len(row) - len(ladder.rows[C]),
                                  "bracketed": o is not None, **(o or {})}
                                 for (C, row), o in zip(rows.items(), optima, strict=True)]}
