"""``planner recommend``'s table: the plan, its bands, the training estimate beside the tuned stack, the
alternatives and the optional sections (serving, data-constrained, MoE)."""

from __future__ import annotations

import math

from .text import layout_line, table


def _goal(rec) -> str:
    from ..base.units import format_usd

    if rec.objective == "target_loss":
        return f"target loss {rec.target_loss:g}"
    if rec.objective == "budget_flops":
        return f"budget {rec.budget_flops:.3g} FLOPs"
    if rec.objective == "budget_usd":
        return f"budget {format_usd(rec.budget_usd)}"
    if rec.objective == "budget_gpu_hours":
        return f"budget {rec.budget_gpu_hours:.3g} GPU-hours"
    return f"{rec.training.gpus} GPUs within {rec.deadline_days:g} days"


def _short_provenance(t) -> str:
    """The table cell of the training block's typed MFU provenance."""
    return {"explicit": "measured", "calibration": f"measured, calibration {t.mfu_record}",
            "calibration matmul": f"measured matmul, calibration {t.mfu_record}",
            "profile": "simulated from the profile"}[t.mfu_source]


def render(rec) -> str:
    from ..base.units import format_si, format_usd

    m, law = rec.model, rec.law

    def span(b, fmt) -> str:
        """'P10 .. P90' of a band; a percentile among draws that cannot reach the target reads 'unreachable'."""
        if b is None:
            return ""
        return " .. ".join(fmt(x) if math.isfinite(x) else "unreachable" for x in (b.p10, b.p90))

    lines = [f"Compute-optimal plan for {_goal(rec)}, law {law.name} "
             f"(E={law.E:.4g}, A={law.A:.4g}, B={law.B:.4g}, alpha={law.alpha:.4g}, beta={law.beta:.4g})"]
    u = rec.uncertainty
    rows = [
        ["model size N", format_si(m.params, "params"),
         span(u.optimal_params, format_si) if u else ""],
        ["training tokens D", format_si(m.tokens, "tokens"),
         span(u.optimal_tokens, format_si) if u else ""],
        ["tokens per parameter", f"{m.tokens_per_param:.1f}", ""],
        ["training compute C = 6ND", f"{rec.compute_flops:.3g} FLOPs",
         span(u.compute_flops, lambda x: f"{x:.3g}") if u else ""],
        ["predicted loss", f"{m.loss:.4f}", span(m.loss_band, lambda x: f"{x:.4f}")],
        [f"N within {100 * m.near_optimal_rel_tol:g}% of min loss",
         f"{format_si(m.params_near_optimal_low)} .. {format_si(m.params_near_optimal_high)}", ""],
    ]
    t = rec.training
    if t is not None:
        def tband(b, p10, p90, fmt):
            # the law and efficiency spread when the law has draws, else the efficiency spread alone
            return span(b, fmt) if b is not None else f"{fmt(p10)} .. {fmt(p90)}"

        rows += [
            ["GPUs", f"{t.gpus} x {t.gpu}", ""],
            ["layout", layout_line(t.layout), ""],
            ["MFU (model FLOPs)", f"{t.mfu:.1%} end to end ({_short_provenance(t)})",
             f"tuned stack {t.mfu_tuned:.1%}"],
            ["wall-clock", f"{t.wall_clock_days:.1f} days",
             tband(u.wall_clock_days if u else None, t.wall_clock_days_p10, t.wall_clock_days_p90,
                   lambda x: f"{x:.1f}")],
            ["GPU-hours", format_si(t.gpu_hours),
             tband(u.gpu_hours if u else None, t.gpu_hours_p10, t.gpu_hours_p90, format_si)],
            ["cost", f"{format_usd(t.cost_usd)} at ${t.price_usd_per_device_hour:.2f}/GPU-h",
             tband(u.cost_usd if u else None, t.cost_usd_p10, t.cost_usd_p90, format_usd)],
            ["tuned stack", f"{t.wall_clock_days_tuned:.1f} days, {format_si(t.gpu_hours_tuned)} "
                                           f"GPU-h, {format_usd(t.cost_usd_tuned)}",
             "a tuned Megatron-class stack, failures included"],
            ["energy", f"{format_si(t.energy_kwh)} kWh, {format_si(t.co2_kg)} kg CO2", ""],
        ]
    lines.append(table(rows, ["", "plan (P50)" if t is not None else "plan",
                              "P10 .. P90 (law and efficiency spread)" if u else
                              ("P10 .. P90 (efficiency spread)" if t is not None else "")]))
    if t is not None:
        lines.append(f"  GPU count: {t.gpus_source}")
        lines.append(f"  efficiency: {t.efficiency_source}")
    if u and u.probability_target_met is not None:
        lines.append(f"\n  Probability that N, D above reach the target under the law's spread: "
                     f"{100 * u.probability_target_met:.0f}% ({u.draws} bootstrap draws); that the target is "
                     f"reached within the planned compute: {100 * u.probability_within_budget:.0f}%")
    if u:
        for label, value in (("budget", u.probability_within_budget_usd),
                             ("GPU-hour budget", u.probability_within_gpu_hours),
                             ("deadline", u.probability_within_deadline)):
            if value is not None:
                lines.append(f"  Probability of staying within the {label}: {100 * value:.0f}%")
        if u.scaling_note:
            lines.append(f"  ({u.scaling_note})")
    if rec.alternatives:
        lifetime = rec.inference_tokens is not None
        served = rec.serving is not None or any(a.serving_cost_usd is not None for a in rec.alternatives)
        plan_loss = rec.alternatives[0].loss
        losses = any(abs(a.loss - plan_loss) > 1e-6 for a in rec.alternatives if a.tokens is not None)
        head = ["alternative", "N", "D", "D/N"] + (["loss"] if losses else []) + ["C FLOPs", "GPU-h", "cost"] + \
            (["serve GPUs", "serving $"] if served else []) + (["lifetime $"] if lifetime else [])
        body = []
        for a in rec.alternatives:
            if a.tokens is None:
                body.append([a.name, format_si(a.params), "-", "-"] + (["-"] if losses else []) + ["-", "-", a.note]
                            + (["", ""] if served else []) + ([""] if lifetime else []))
                continue
            row = [a.name, format_si(a.params), format_si(a.tokens), f"{a.tokens_per_param:.0f}"] + \
                ([f"{a.loss:.4f}"] if losses else []) + [
                f"{a.compute_flops:.3g}", format_si(a.gpu_hours) if a.gpu_hours is not None else "-",
                format_usd(a.cost_usd) if a.cost_usd is not None else (a.note or "-")]
            if served:
                row += [str(a.serving_devices) if a.serving_devices is not None else "-",
                        format_usd(a.serving_cost_usd) if a.serving_cost_usd is not None else "-"]
            if lifetime:
                row.append(format_usd(a.lifetime_cost_usd) if a.lifetime_cost_usd is not None else "-")
            body.append(row)
        heading = f"\nAlternatives at loss {plan_loss:.4f}" if not losses else "\nAlternatives (each reaches its loss)"
        lines.append(heading + (f" on the same {t.gpus} GPUs" if t is not None else ""))
        lines.append(table(body, head))
    if rec.serving is not None:
        lines.append(_render_serving(rec.serving))
    if rec.data_constrained is not None:
        lines.append(_render_data_constrained(rec.data_constrained))
    if rec.moe is not None:
        lines.append(_render_moe(rec.moe))
    for note in rec.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _render_serving(v) -> str:
    from ..base.units import format_si, format_usd

    f, d = v.fleet, v.fleet.demand
    rows = [
        ["demand", f"{format_si(d.tokens_per_day)} tokens/day for {v.serving_days:g} days "
                   f"({format_si(v.lifetime_tokens)} tokens)",
         f"{d.prompt_tokens:g} prompt + {d.output_tokens:g} answer tokens a query, peak x{d.peak_factor:g}"],
        ["fleet", f"{f.replicas} replicas x TP{f.tensor_parallel} = {f.devices} x {f.hardware.profile}",
         f"p99 TTFT <= {f.slo.p99_ttft_s:g} s, TPOT <= {f.slo.p99_tpot_s:g} s"],
        ["cost per million tokens", f"${f.cost_usd_per_million_tokens:.3f}",
         f"{format_usd(f.cost_usd_per_day)} a day; effective MFU {v.effective_mfu:.1%}"],
        ["serving cost", format_usd(v.serving_cost_usd), f"{format_si(v.energy_kwh)} kWh"],
    ]
    if v.lifetime_cost_usd is not None:
        rows.append(["lifetime cost", format_usd(v.lifetime_cost_usd),
                     f"training {format_usd(v.training_cost_usd)} + serving {format_usd(v.serving_cost_usd)}"])
    return f"\nServing the plan's model ({f.capacity_method})\n" + table(rows)


def _render_moe(m) -> str:
    from ..base.units import format_si, format_usd

    rows = [
        ["experts, top-k", f"{m.experts}, {m.top_k}" + (" (top-k chosen by the law)" if m.granularity_chosen else ""),
         f"E = {m.expansion_rate:g}, G = {m.granularity:g}"],
        ["total parameters (non-embedding)", format_si(m.params_non_embedding), "all experts"],
        ["active parameters (non-embedding)", format_si(m.active_params_non_embedding), "per token"],
        ["training tokens", format_si(m.tokens), f"{m.tokens / m.active_params_non_embedding:.1f} per active param"],
        ["loss (Krajewski)", f"{m.loss:.4f}", f"dense at the same compute {m.dense_loss:.4f}"],
    ]
    if m.compute_multiplier is not None:
        rows.append(["dense compute for the same loss", f"{m.dense_compute_for_same_loss:.3g} FLOPs",
                     f"{m.compute_multiplier:.2f}x the plan's"])
    t = m.training
    if t is not None:
        rows += [["simulated shape", t.shape, f"{format_si(t.params)} params, {format_si(t.active_params)} active "
                                                "(embeddings included)"],
                 ["simulated training", f"{t.gpus} x {layout_line(t.layout)}", f"MFU {t.mfu:.1%}"],
                 ["wall-clock, GPU-hours, cost", f"{t.wall_clock_days:.1f} days, {format_si(t.gpu_hours)}, "
                                                 f"{format_usd(t.cost_usd)}", ""]]
    else:
        rows.append(["simulated training", "not simulated (see notes)", ""])
    head = f"\nMixture of experts (Krajewski 2024, at the plan's {m.compute_flops:.3g} FLOPs)"
    return head + "\n" + table(rows)


def _render_data_constrained(dc) -> str:
    from ..base.units import format_si

    e = dc.next_epoch
    rows = [
        ["epochs D/U", f"{dc.epochs:.2f}", f"{dc.chinchilla_epochs:.2f}"],
        ["N, D", f"{format_si(dc.params)}, {format_si(dc.tokens)}",
         f"{format_si(dc.chinchilla_params)}, {format_si(dc.chinchilla_tokens)}"],
        ["loss with repeated data", f"{dc.loss:.4f}", f"{dc.chinchilla_loss:.4f}"],
        ["loss if all tokens were fresh", f"{dc.unlimited_data_loss:.4f}", f"{dc.chinchilla_unlimited_data_loss:.4f}"],
        ["effective data D'", format_si(dc.effective_tokens), ""],
        ["effective parameters N'", format_si(dc.effective_params), ""],
        ["worth of the next repeated token", f"{dc.repeated_token_value:.3f} of a fresh one", ""],
        ["one more epoch", f"loss -{e.loss_decrease:.4f} for +{e.extra_flops:.3g} FLOPs", ""],
    ]
    head = f"\nData-constrained (Muennighoff 2023): {format_si(dc.unique_tokens)} unique tokens" + \
        ("" if dc.binding else " (the cap does not bind)") + \
        f"; R_D*={dc.R_D_star:.4g}, R_N*={dc.R_N_star:.4g} ({dc.decay_source.split(' (')[0]}); no compute goes " \
        f"below loss " \
        f"{dc.loss_floor:.4f}"
    return head + "\n" + table(rows, ["", "plan (optimal under the cap)", "Chinchilla allocation, same C"])
