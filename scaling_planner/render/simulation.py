"""``planner simulate``'s table: P50, band and tuned stack side by side, the steady-state step, its time and
memory breakdowns, the next best layouts and why the others were rejected."""

from __future__ import annotations

from .text import layout_line, table


def render(r) -> str:
    """The text ``planner simulate`` prints for a SimulationResult."""
    from ..base.units import SECONDS_PER_DAY, format_si, format_usd

    out = []

    m, t, s = r.model, r.training, r.search
    out.append(f"Training {m.name}: {format_si(m.params)} params ({format_si(m.active_params)} active), "
               f"{format_si(m.tokens)} tokens, {r.compute_flops:.3g} FLOPs (model, Megatron count)")
    experts = f", {m.n_experts} experts top-{m.top_k}" if m.n_experts > 1 else ""
    out.append(f"  shape: {m.n_layers} layers, d {m.d_model}, {m.n_heads} heads ({m.n_kv_heads} KV), "
               f"FFN {m.ffn_hidden} {m.ffn_kind}, vocab {m.vocab_size}, seq {m.seq_len}{experts}")
    out.append(f"\nBest layout on {t.gpus} x {t.gpu} ({t.precision}): {layout_line(t.layout)}, "
               f"global batch {t.layout.global_batch} seqs ({format_si(t.layout.global_batch_tokens)} tokens)")
    rows = [
        ["wall-clock", f"{t.wall_clock_days:.1f} days",
         f"{t.wall_clock_days_p10:.1f} .. {t.wall_clock_days_p90:.1f} days", f"{t.wall_clock_days_tuned:.1f} days"],
        ["GPU-hours", format_si(t.gpu_hours), f"{format_si(t.gpu_hours_p10)} .. {format_si(t.gpu_hours_p90)}",
         format_si(t.gpu_hours_tuned)],
        ["cost", format_usd(t.cost_usd), f"{format_usd(t.cost_usd_p10)} .. {format_usd(t.cost_usd_p90)}",
         format_usd(t.cost_usd_tuned)],
        ["MFU (model FLOPs)", f"{t.mfu:.1%} end to end", "", f"{t.mfu_tuned:.1%}"],
    ]
    out.append(table(rows, ["", "P50", "P10 .. P90", "tuned stack"]))
    rows = [
        ["step time", f"{t.step_time_s:.3f} s (steady state, MFU {t.mfu_steady_state:.1%}, "
                      f"HFU {t.hfu:.1%})"],
        ["throughput", f"{format_si(t.tokens_per_s)} tokens/s"],
        ["ideal time", f"{t.ideal_time_s / SECONDS_PER_DAY:.1f} days"], ["goodput", f"{t.goodput:.1%}"],
        ["end-to-end factor", f"x{t.end_to_end_factor:.2f}"],
        ["price", f"${t.price_usd_per_device_hour:.2f}/GPU-h ({t.price_source})"],
        ["energy", f"{format_si(t.energy_kwh)} kWh, {format_si(t.co2_kg)} kg CO2"],
        ["efficiency", t.efficiency_source],
        ["matmul", f"fraction {t.efficiency.achievable_matmul_fraction:.2f} "
                   f"({t.efficiency.achievable_matmul_source})"],
    ]
    width = max(len(k) for k, _ in rows)
    out.append("\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows))
    tb = t.time_breakdown_s.model_dump()
    out.append("\nTime per step (s)")
    out.append(table([[k, f"{v:.3f}", "hidden" if k == "dp_comm_hidden" else f"{v / tb['total']:.1%}"]
                 for k, v in tb.items()], ["part", "seconds", "share"]))
    mb = t.memory_gib.model_dump()
    out.append("\nMemory per GPU (GiB, most-loaded stage)")
    out.append(table([[k, f"{v:.2f}"] for k, v in mb.items()], ["part", "GiB"]))
    if s.next_best:
        out.append("\nNext best layouts")
        out.append(table([[layout_line(x.layout), f"{x.step_time_s:.3f}", f"{x.mfu:.1%}", f"{x.memory_gib:.1f}"]
                     for x in s.next_best], ["layout", "step s", "MFU", "GiB"]))
    out.append(f"\nSearch: {s.candidates} candidates, {s.feasible} feasible, in {s.search_s * 1e3:.0f} ms; rejected: "
          + (", ".join(f"{k} {v}" for k, v in s.rejected.items()) or "none"))
    for rj in s.closest_rejected:
        out.append(f"  closest {rj.reason}: {layout_line(rj.layout)}: {rj.detail}")
    for note in t.notes:
        out.append(f"  note: {note}")
    return "\n".join(out)
