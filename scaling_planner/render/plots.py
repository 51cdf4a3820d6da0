"""Figures of a plan (``planner plot``): the loss-compute frontier, isoFLOP curves, the cost of the
alternatives. PNG files, drawn with matplotlib's Agg canvas (no display, no pyplot global state).

matplotlib is optional (``pip install 'scaling-planner[plot]'``) and imported inside the functions,
so importing this module costs nothing; without it :func:`write_plots` raises one InputError.

* **Frontier**: L*(C) = E + (A·G^-α + B·G^β)·(C/6)^(-αβ/(α+β)) (Hoffmann 2022 Eq. 4 substituted
  into Eq. 2; Besiroglu 2024), with the P10–P90 band of the law's bootstrap draws where it has
  draws; the plan and the alternatives at their (6·N·D, L(N, D)).
* **IsoFLOP curves**: L(N, C/(6N)) against N at several budgets around the plan's (Hoffmann 2022
  Fig. 3 / Approach 2), each curve's minimum (Eq. 4's N_opt) marked.
* **Costs**: training cost of each alternative, stacked with its serving (or assumed-MFU inference)
  cost over the stated lifetime demand when one is given.
* **MoE** (only when the plan has a MoE section): Krajewski 2024's compute-optimal loss of the
  plan's experts/top-k (Eq. 9-10, E and G fixed) against their dense row (Table 1) over compute,
  the plan's budget marked and the dense compute for the MoE's loss. Both curves are the paper's
  C4 setup, so they are drawn on their own axes, not on the frontier of the plan's law.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from ..base.errors import InputError
from ..base.units import format_si, format_usd
from ..planning.data_regime import data_regime_of_plan

FIGSIZE_IN = (8.0, 5.4)
WIDE_FIGSIZE_IN = (10.0, 5.4)  # room for a legend beside the axes
DPI = 130
ISOFLOP_DECADES = (-1.0, -0.5, 0.0, 0.5, 1.0)  # budgets C·10^k around the plan's
ISOFLOP_SPAN = 40.0  # each curve spans N_opt/40 .. 40·N_opt
FRONTIER_DECADES = 2.5  # the frontier spans C·10^-2.5 .. C·10^2.5 (and every alternative)
ALT_MARKERS = {"compute-optimal": "*", "over-trained 2x smaller": "s", "over-trained 10x smaller": "D",
               "inference-optimal": "^", "chinchilla allocation (ignores the cap)": "v"}
LOG_COST_RATIO = 20.0
FILES = ("frontier.png", "isoflops.png", "costs.png")
MOE_FILE = "moe.png"
MOE_DECADES = 2.0  # the MoE figure spans C·10^-2 .. C·10^2
MOE_POINTS = 41


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise InputError("plot", "needs matplotlib: pip install 'scaling-planner[plot]'") from None
    return Figure, FuncFormatter


def check_out_dir(out, *, create: bool = False) -> Path:
    """The output directory; InputError (one line) when it is a file, lies under a file, or cannot be
    written. Without ``create`` nothing is made (checked before planning, so a failed plan leaves no
    empty folder behind); with it the folder is created."""
    d = Path(out).expanduser()
    if d.exists() and not d.is_dir():
        raise InputError("out", f"{d} is a file, not a directory")
    if not create and not d.exists():
        parent = next((p for p in d.parents if p.exists()), Path("."))
        if not parent.is_dir():
            raise InputError("out", f"cannot create {d}: {parent} is a file")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError("out", f"cannot write to {parent}: permission denied")
        return d
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError("out", f"cannot write to {d}: {exc.strerror or exc}") from None
    return d


def _save(fig, path: Path) -> Path:
    """Write the figure via a temporary file and os.replace: never half a PNG."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> what a plain open() would have made
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError("out", f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _usd(x: float, _pos=None) -> str:
    return format_usd(x)


def _si(x: float) -> str:
    return format_si(x)


def _subtitle(plan) -> str:
    t = plan.training
    return f"law {plan.law.name}" + (f", trained on {t.gpus} x {t.gpu}" if t is not None else "")


# -- (a) the loss-compute frontier -------------------------------------------------------------------

def frontier_figure(plan, law):
    """Compute-optimal loss vs training FLOPs, the law's P10–P90 band, the plan and its alternatives."""
    import numpy as np

    from ..laws.chinchilla import frontier_loss

    Figure, _ = _matplotlib()
    C = plan.compute_flops
    alts = [a for a in plan.alternatives if a.compute_flops is not None]
    lo = min([C * 10**-FRONTIER_DECADES] + [a.compute_flops / 3 for a in alts])
    hi = max([C * 10**FRONTIER_DECADES] + [a.compute_flops * 3 for a in alts])
    grid = np.logspace(math.log10(lo), math.log10(hi), 200)
    fig = Figure(figsize=FIGSIZE_IN, layout="constrained")
    ax = fig.add_subplot()
    regime = data_regime_of_plan(plan, law)
    ax.plot(grid, frontier_loss(law, grid), color="C0", lw=2,
            label=f"compute-optimal loss L*(C), {law.name}" + (", fresh data" if regime.repeats_data else ""))
    if law.samples is not None and len(law.samples) >= 2:
        draws = frontier_loss(law.draws(), grid[:, None])
        p10, p90 = np.nanpercentile(draws, [10, 90], axis=1)
        ax.fill_between(grid, p10, p90, color="C0", alpha=0.2, lw=0,
                        label=f"P10–P90 over {len(law.samples)} bootstrap draws")
    if regime.repeats_data:
        ax.plot(grid, regime.optimum_loss_curve(grid), color="C3", lw=1.6, ls="--",
                label=f"optimal loss with {_si(regime.U)} unique tokens (Muennighoff 2023)")
    plan_loss = plan.model.loss  # L(N, D), or L(N, D, U) under the cap
    ax.plot([C], [plan_loss], marker="*", ms=17, color="gold", mec="black", ls="none", zorder=5,
            label=f"plan: N={_si(plan.model.params)}, D={_si(plan.model.tokens)}, C={C:.3g} FLOPs")
    for i, a in enumerate(x for x in alts if x.name != "compute-optimal"):
        ax.plot([a.compute_flops], [a.loss], marker=ALT_MARKERS.get(a.name, "o"), ms=9, ls="none",
                color=f"C{i + 1}", mec="black", zorder=6,  # above the plan's star when they nearly coincide
                label=f"{a.name}: N={_si(a.params)}, D={_si(a.tokens)}")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6·N·D (FLOPs)")
    ax.set_ylabel("predicted final loss (nats/token)")
    ax.set_title(f"Loss–compute frontier ({_subtitle(plan)})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return fig


# -- (b) isoFLOP curves ----------------------------------------------------------------------------------

def isoflop_figure(plan, law):
    """Loss vs N at budgets C·10^k (k in ISOFLOP_DECADES), each minimum marked; the plan's N starred."""
    import numpy as np

    Figure, _ = _matplotlib()
    fig = Figure(figsize=WIDE_FIGSIZE_IN, layout="constrained")
    ax = fig.add_subplot()
    C0 = plan.compute_flops
    budgets = [C0 * 10**k for k in ISOFLOP_DECADES]
    regime = data_regime_of_plan(plan, law)
    lows, highs = [], []
    for i, C in enumerate(budgets):
        n_opt = float(regime.optimal_params_curve(C))
        N = np.logspace(math.log10(n_opt / ISOFLOP_SPAN), math.log10(n_opt * ISOFLOP_SPAN), 300)
        L = regime.isoflop_loss(C, N)
        is_plan = math.isclose(C, C0, rel_tol=1e-9)
        color = "C0" if is_plan else f"C{i + 1}"
        ax.plot(N, L, color=color, lw=2.4 if is_plan else 1.4,
                label=f"C = {C:.2g} FLOPs" + (" (the plan's)" if is_plan else ""))
        l_opt = float(regime.isoflop_loss(C, n_opt))
        ax.plot([n_opt], [l_opt], marker="o", ms=6, color=color, mec="black", ls="none", zorder=4)
        lows.append(l_opt)
        highs.append(float(regime.isoflop_loss(C, n_opt * 10)))  # a decade above the optimum
    ax.plot([plan.model.params], [float(regime.isoflop_loss(C0, plan.model.params))], marker="*", ms=17,
            color="gold", mec="black", ls="none", zorder=5, label=f"plan: N = {_si(plan.model.params)} params")
    ax.plot([], [], marker="o", color="gray", mec="black", ls="none",
            label="each budget's optimum" + regime.optimum_label)
    span = max(highs) - min(lows)
    if not span > 1e-9 * max(1.0, abs(max(highs))):  # flat curves (a data-starved regime): a visible band
        span = 0.1 * max(1.0, abs(max(highs)))
    ax.set_ylim(min(lows) - 0.08 * span, max(highs) + 0.05 * span)
    ax.set_xscale("log")
    ax.set_xlabel("model size N (parameters)")
    ax.set_ylabel("predicted final loss (nats/token)")
    cap = f", {_si(regime.U)} unique tokens, Muennighoff 2023" if regime.repeats_data else ""
    ax.set_title(f"IsoFLOP curves: loss vs model size at fixed compute\n({_subtitle(plan)}{cap})", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


# -- (c) cost of the alternatives -------------------------------------------------------------------------

def _inference_cost(a):
    serving = getattr(a, "serving_cost_usd", None)
    return (serving, "serving (simulated fleet)") if serving is not None else \
        (a.inference_cost_usd, "inference (assumed MFU)")


def cost_figure(plan):
    """Stacked bars: training cost and lifetime inference/serving cost of each alternative."""
    Figure, FuncFormatter = _matplotlib()
    fig = Figure(figsize=FIGSIZE_IN, layout="constrained")
    ax = fig.add_subplot()
    rows = [a for a in plan.alternatives if a.cost_usd is not None]
    skipped = [a for a in plan.alternatives if a.cost_usd is None]
    names = [a.name.replace(" (", "\n(").replace("over-trained ", "over-trained\n") for a in rows]
    same_loss = all(abs(a.loss - rows[0].loss) <= 1e-6 for a in rows) if rows else True
    if not same_loss:
        names = [f"{n}\nloss {a.loss:.4f}" for n, a in zip(names, rows, strict=True)]
    train = [a.cost_usd for a in rows]
    infer = [_inference_cost(a)[0] for a in rows]
    x = list(range(len(rows)))
    totals = [t + (v or 0.0) for t, v in zip(train, infer, strict=True)]
    # a log axis when the bars span more than LOG_COST_RATIO (an over-trained model can cost 1000x more)
    log = bool(totals) and max(totals) > LOG_COST_RATIO * min(totals)
    floor = min(train) / 3.0 if log else 0.0
    ax.bar(x, [t - floor for t in train], bottom=floor, color="C0", width=0.6,
           label="training (P50 end to end, P10-P90 whiskers)")
    t = plan.training
    f90 = 1.0
    if t is not None and t.cost_usd > 0:  # each alternative's training cost carries the estimate's band
        f10, f90 = t.cost_usd_p10 / t.cost_usd, t.cost_usd_p90 / t.cost_usd
        ax.errorbar(x, train, yerr=[[c * (1 - f10) for c in train], [c * (f90 - 1) for c in train]], fmt="none",
                    ecolor="0.2", elinewidth=1.2, capsize=4)
    has_inf = any(v is not None for v in infer)
    if has_inf:
        kind = next(_inference_cost(a)[1] for a, v in zip(rows, infer, strict=True) if v is not None)
        ax.bar(x, [v or 0.0 for v in infer], bottom=train, color="C1", width=0.6, label=kind)
    for xi, total in zip(x, totals, strict=True):
        ax.annotate(_usd(total), (xi, total), ha="center", va="bottom", fontsize=9, xytext=(0, 2),
                    textcoords="offset points")
    ax.set_xticks(x, names, fontsize=9)
    top = max([*totals, *(c * f90 for c in train)]) if totals else 0.0  # the whiskers stay inside
    if log:
        ax.set_yscale("log")
        ax.set_ylim(floor, top * 6.0)  # headroom for the legend above the bars
    elif totals:
        ax.set_ylim(0, top * 1.2)
    ax.yaxis.set_major_formatter(FuncFormatter(_usd))
    ax.set_ylabel("cost (USD" + (", log scale)" if log else ")"))
    demand = getattr(plan, "serving", None)
    if has_inf and demand is not None:
        what = (f"Lifetime cost of the alternatives: training + serving {_si(demand.fleet.demand.tokens_per_day)} "
                f"tokens/day "
                f"for {demand.serving_days:g} days")
    elif has_inf:
        what = f"Lifetime cost of the alternatives: training + inference of {_si(plan.inference_tokens)} tokens"
    else:
        what = "Training cost of the alternatives (no inference demand given)"
    loss_words = "every alternative reaches the same loss" if same_loss else "the loss each reaches is under its bar"
    ax.set_title(f"{what}\n({_subtitle(plan)}; {loss_words})", fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    xlabel = "alternative"
    if skipped:
        xlabel += "\nnot shown: " + "; ".join(f"{a.name} ({a.note})" for a in skipped)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.legend(fontsize=9, loc="upper center", ncols=2)
    return fig


# -- (d) MoE against dense, in Krajewski 2024's setup ---------------------------------------------------

def moe_curves(moe, grid):
    """(dense L*(C), MoE L*(C)) over ``grid`` (FLOPs) for the plan's MoE section: Krajewski 2024's
    dense row and their compute-optimal fine-grained MoE at the section's E and G."""
    import numpy as np

    from ..laws import moe as moe_law
    from ..laws.chinchilla import frontier_loss

    dense = frontier_loss(moe_law.dense_law(), grid)
    mixture = np.array([moe_law.compute_optimal(float(c), expansion_rate=moe.expansion_rate,
                                                granularities=[moe.granularity]).loss for c in grid])
    return dense, mixture


def moe_figure(plan):
    """Loss vs compute of the plan's MoE and of the dense model, both Krajewski 2024 (module docstring)."""
    import numpy as np

    moe = plan.moe
    Figure, _ = _matplotlib()
    fig = Figure(figsize=FIGSIZE_IN, layout="constrained")
    ax = fig.add_subplot()
    C = moe.compute_flops
    grid = np.logspace(math.log10(C) - MOE_DECADES, math.log10(C) + MOE_DECADES, MOE_POINTS)
    dense, mixture = moe_curves(moe, grid)
    ax.plot(grid, dense, color="C0", lw=2, label="dense, compute-optimal (Krajewski 2024 Table 1, dense row)")
    ax.plot(grid, mixture, color="C3", lw=2,
            label=f"MoE {moe.experts} experts top-{moe.top_k} (E = {moe.expansion_rate:g}, G = {moe.granularity:g}), "
                  "compute-optimal")
    ax.plot([C], [moe.loss], marker="*", ms=17, color="gold", mec="black", ls="none", zorder=5,
            label=f"plan's budget: MoE N = {_si(moe.params_non_embedding)} total, "
                  f"{_si(moe.active_params_non_embedding)} active, D = {_si(moe.tokens)}")
    ax.plot([C], [moe.dense_loss], marker="o", ms=8, color="C0", mec="black", ls="none", zorder=5,
            label=f"dense at the same budget: loss {moe.dense_loss:.3f}")
    if moe.dense_compute_for_same_loss is not None:
        ax.annotate("", xy=(moe.dense_compute_for_same_loss, moe.loss), xytext=(C, moe.loss),
                    arrowprops={"arrowstyle": "->", "ls": "--", "color": "gray"})
        ax.plot([moe.dense_compute_for_same_loss], [moe.loss], marker="o", ms=6, color="white", mec="C0",
                ls="none", zorder=5,
                label=f"dense needs {moe.compute_multiplier:.2g}x the compute for the MoE's loss")
    ax.set_xscale("log")
    ax.set_xlabel("training compute (FLOPs; MoE: Krajewski's cost per token, dense: 6·N·D)")
    ax.set_ylabel("predicted final loss (nats/token, Krajewski's C4 setup)")
    ax.set_title(f"Mixture of experts against dense ({_subtitle(plan)})\n"
                 "both curves from Krajewski et al. 2024 (arXiv:2402.07871); not the plan's law", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def write_plots(plan, law, out) -> list[str]:
    """Write frontier.png, isoflops.png and costs.png of ``plan`` (and moe.png when it has a MoE
    section) into directory ``out``; their paths."""
    _matplotlib()
    d = check_out_dir(out, create=True)
    figs = [(frontier_figure(plan, law), FILES[0]), (isoflop_figure(plan, law), FILES[1]),
            (cost_figure(plan), FILES[2])]
    if getattr(plan, "moe", None) is not None:
        figs.append((moe_figure(plan), MOE_FILE))
    return [str(_save(fig, d / name)) for fig, name in figs]
