"""Markdown and table renderings of plans, measurements and gate decisions (Prefect artifacts, logs).

Pure string formatting over the pydantic models; nothing heavy is imported. FLOPs (a count) and FLOP/s
(a rate) are kept apart in every label.
"""

from __future__ import annotations

from ..base.units import format_rate, format_si, format_usd


def _md_table(rows: list[tuple[str, str]], header=("", "")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _days(days: float) -> str:
    return f"{days:.3g} days" if days >= 1 else f"{days * 24:.3g} h ({days * 24 * 60:.3g} min)"


def _mfu_source(training) -> str:
    """A plan's TrainingChoice says where its MFU came from; a simulation's TrainingEstimate carries it
    in its efficiency provenance."""
    if hasattr(training, "mfu_provenance"):
        return training.mfu_provenance
    return "measured" if training.efficiency.measured_mfu is not None else "simulated"


def training_rows(training) -> list[tuple[str, str]]:
    """Rows common to a plan's TrainingChoice and a simulation's TrainingEstimate."""
    t = training
    rows = [("GPUs", f"{t.gpus} x {t.gpu}"),
            ("MFU", f"{t.mfu:.1%} end to end ({_mfu_source(t)}); tuned stack {t.mfu_tuned:.1%}"),
            ("step time", f"{t.step_time_s:.4g} s"),
            ("throughput", f"{format_si(t.tokens_per_s)} tokens/s"),
            ("wall-clock (P50, P10-P90)",
             f"{_days(t.wall_clock_days)} ({_days(t.wall_clock_days_p10)} - {_days(t.wall_clock_days_p90)})"),
            ("GPU-hours (P50, P10-P90)", f"{t.gpu_hours:,.4g} ({t.gpu_hours_p10:,.4g} - {t.gpu_hours_p90:,.4g})"),
            ("cost (P50, P10-P90)", f"{format_usd(t.cost_usd)} ({format_usd(t.cost_usd_p10)} - "
                                    f"{format_usd(t.cost_usd_p90)})"),
            ("tuned stack", f"{_days(t.wall_clock_days_tuned)}, {t.gpu_hours_tuned:,.4g} GPU-hours, "
                            f"{format_usd(t.cost_usd_tuned)}"),
            ("efficiency", t.efficiency_source),
            ("energy", f"{t.energy_kwh:,.4g} kWh"),
            ("CO2", f"{t.co2_kg:,.4g} kg")]
    layout = training.layout if isinstance(training.layout, dict) else training.layout.model_dump()
    rows.insert(1, ("layout", "TP {tp} x PP {pp} x DP {dp}, micro-batch {micro_batch}, recompute {recompute}"
                    .format(**layout)))
    return rows


def plan_markdown(plan) -> str:
    """A Recommendation as markdown: the model, the compute, training on the cluster, alternatives."""
    m = plan.model
    rows = [("objective", plan.objective),
            ("law", f"{plan.law.name} (E {plan.law.E:.4g}, alpha {plan.law.alpha:.4g}, beta {plan.law.beta:.4g})"),
            ("parameters N", format_si(m.params)),
            ("tokens D", format_si(m.tokens)),
            ("tokens per parameter", f"{m.tokens_per_param:.3g}"),
            ("predicted loss", f"{m.loss:.4f}" + (f" (P10-P90 {m.loss_band.p10:.4f}-{m.loss_band.p90:.4f})"
                                                  if m.loss_band else "")),
            ("training compute", f"{plan.compute_flops:.3e} FLOPs")]
    if plan.training is not None:
        rows += training_rows(plan.training)
    out = ["# Pre-flight plan", "", _md_table(rows, ("quantity", "value"))]
    if plan.alternatives:
        out += ["", "## Alternatives", "", "| alternative | N | D | cost | lifetime cost |", "|---|---|---|---|---|"]
        for a in plan.alternatives:
            out.append(f"| {a.name} | {format_si(a.params)} | {format_si(a.tokens) if a.tokens else '-'} | "
                       f"{format_usd(a.cost_usd) if a.cost_usd is not None else '-'} | "
                       f"{format_usd(a.lifetime_cost_usd) if a.lifetime_cost_usd is not None else '-'} |")
    if plan.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in plan.notes]
    return "\n".join(out) + "\n"


def simulation_markdown(result) -> str:
    """A SimulationResult (a fixed job) as markdown."""
    rows = [("parameters N", format_si(result.model.params)), ("tokens D", format_si(result.model.tokens)),
            ("shape", f"{result.model.n_layers} layers, d_model {result.model.d_model}, {result.model.n_heads} heads"),
            ("training compute", f"{result.compute_flops:.3e} FLOPs")]
    rows += training_rows(result.training)
    out = ["# Training estimate", "", _md_table(rows, ("quantity", "value"))]
    if result.training.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in result.training.notes]
    return "\n".join(out) + "\n"


def measurement_rows(m) -> list[dict]:
    """One row per device and probe of a ClusterMeasurement (a Prefect table artifact)."""
    rows = []
    for node in m.nodes:
        for dev in node.devices:
            if not dev.probes:
                rows.append({"node": node.node_id[:8], "device": dev.device, "profile": dev.profile or "",
                             "status": dev.status, "probe": "", "achieved": "", "of_peak": "",
                             "error": dev.error or ""})
            for p in dev.probes:
                unit = "FLOP/s" if p.unit == "flops_per_s" else "B/s"
                rows.append({"node": node.node_id[:8], "device": dev.device, "profile": dev.profile or "",
                             "status": dev.status, "probe": f"{p.kind} {p.dtype} ({p.backend})",
                             "achieved": format_rate(p.median, unit) if p.error is None else "",
                             "of_peak": f"{p.fraction_of_peak:.1%}" if p.fraction_of_peak else "",
                             "error": p.error or ""})
    return rows


def measurement_markdown(m) -> str:
    t = m.totals
    lines = ["# Cluster measurement", "",
             f"{t.nodes_alive}/{t.nodes} nodes alive, {t.devices_ok}/{t.devices} devices measured, {t.gpus} GPUs; "
             f"took {m.elapsed_s:.1f} s at {m.measured_at}" + (" **(partial)**" if m.partial else ""), ""]
    for dtype, rate in sorted(t.achieved_flops_per_s.items()):
        lines.append(f"- total achieved matmul {dtype}: {format_rate(rate)}")
    for s in m.stragglers:
        lines.append(f"- straggler {s.node_id[:8]}/{s.device} {s.dtype}: {s.shortfall:.0%} below the median")
    for miss in m.missing:
        lines.append(f"- missing: {miss}")
    return "\n".join(lines) + "\n"


def gate_markdown(decision) -> str:
    lines = ["# Pre-flight gate: " + ("PASSED" if decision.passed else "REJECTED"), ""]
    lines += [f"- **{v.limit}**: {v.message}" for v in decision.violations]
    if decision.checked:
        lines.append(f"- checked: {', '.join(decision.checked)}")
    for what, p in (("budget", decision.probability_over_budget), ("deadline", decision.probability_over_deadline)):
        if p is not None:
            lines.append(f"- chance of overrunning the {what}: {p:.0%}")
    lines += [f"- note: {n}" for n in decision.notes]
    return "\n".join(lines) + "\n"
