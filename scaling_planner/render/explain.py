"""``planner recommend --explain``: the plan's arithmetic, one step a line, with the numbers put in
(FLOPs a count, FLOP/s a rate), read from the plan's typed sections."""

from __future__ import annotations

from ..base.units import SECONDS_PER_DAY


def explain_lines(plan) -> list[str]:
    """The arithmetic of a :class:`~scaling_planner.planning.plan.Recommendation`."""
    """The plan's arithmetic, one step a line, with its numbers (FLOPs a count, FLOP/s a rate)."""
    m, t = plan.model, plan.training
    lines = [
        f"C = 6·N·D = 6 × {m.params:.6e} params × {m.tokens:.6e} tokens = {plan.compute_flops:.6e} FLOPs "
        "(law-level training compute, a count)",
    ]
    if plan.objective == "target_loss":
        lines.insert(0, f"target loss {plan.target_loss:g}: minimal compute C(L) = 6·[(A·G^-α + B·G^β)/(L − E)]"
                        f"^((α+β)/(αβ)) with E={plan.law.E:.4g}, A={plan.law.A:.4g}, B={plan.law.B:.4g}, "
                        f"α={plan.law.alpha:.4g}, β={plan.law.beta:.4g}; N, D from Hoffmann Eq. 4")
    if t is None:
        return lines
    e = t.energy_assumptions
    lines += [
        f"model FLOPs (simulator, Megatron count for the {t.shape.split(' (')[0]} shape) = {t.model_flops:.6e} FLOPs "
        f"({t.model_flops / plan.compute_flops:.4f} × 6·N·D)",
        f"ideal time = model FLOPs / (GPUs × peak FLOP/s × steady-state MFU) = {t.model_flops:.6e} FLOPs / "
        f"({t.gpus} × {t.peak_flops_per_s:.6e} FLOP/s × {t.mfu_steady_state:.6f}) = {t.ideal_time_s:.6e} s  "
        f"(MFU {t.mfu_provenance})",
        f"wall-clock (P50) = ideal time / goodput × end-to-end factor = {t.ideal_time_s:.6e} s / {t.goodput:.6f} × "
        f"{t.end_to_end_factor:.6f} = {t.wall_clock_days * SECONDS_PER_DAY:.6e} s = {t.wall_clock_days:.6f} days  "
        f"({t.efficiency_source})",
        f"efficiency band: P10 = P50 × {t.wall_clock_days_p10 / t.wall_clock_days:.6f}, P90 = P50 × "
        f"{t.wall_clock_days_p90 / t.wall_clock_days:.6f} (wall-clock, GPU-hours and cost alike): "
        f"{t.wall_clock_days_p10:.6f} .. {t.wall_clock_days_p90:.6f} days",
        f"expected MFU end to end = model FLOPs / (GPU-hours × 3600 s × peak FLOP/s) = {t.model_flops:.6e} / "
        f"({t.gpu_hours:.6e} × 3600 × {t.peak_flops_per_s:.6e}) = {t.mfu:.6f}",
        f"GPU-hours = GPUs × wall-clock hours = {t.gpus} × {t.wall_clock_days * 24:.6f} h = {t.gpu_hours:.6e} GPU-h",
        f"cost = GPU-hours × price = {t.gpu_hours:.6e} GPU-h × ${t.price_usd_per_device_hour:.4f}/GPU-h = "
        f"${t.cost_usd:.6e}  (price: {t.price_source})",
        f"energy = GPU-hours × (device W + host W) × PUE / 1000 = {t.gpu_hours:.6e} × ({e.device_power_w:.6g} + "
        f"{e.host_w_per_device:.6g}) W × {e.pue:.6g} / 1000 = {t.energy_kwh:.6e} kWh",
        f"CO2 = energy × grid intensity = {t.energy_kwh:.6e} kWh × {e.grid_kg_co2_per_kwh:.6g} kg/kWh = "
        f"{t.co2_kg:.6e} kg",
    ]
    v = plan.serving
    if v is not None:
        f = v.fleet
        lines += [
            f"serving fleet = {f.replicas} replicas × TP{f.tensor_parallel} = {f.devices} devices for "
            f"{f.demand.tokens_per_day:.6e} tokens/day at peak ×{f.demand.peak_factor:g} ({f.capacity_method})",
            f"serving cost = devices × price × 24 h × days = {f.devices} × ${t.price_usd_per_device_hour:.4f}/GPU-h "
            f"× 24 h × {v.serving_days:g} = ${v.serving_cost_usd:.6e}",
            f"lifetime cost = training + serving = ${t.cost_usd:.6e} + ${v.serving_cost_usd:.6e} = "
            f"${v.lifetime_cost_usd:.6e}",
        ]
    return lines
