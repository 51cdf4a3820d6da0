"""Energy, cost and CO2 of a training run (and energy per token for serving).

    device power   P_dev = P_idle + (TDP − P_idle)·utilization
    IT energy      E_IT  = n_devices·(P_dev + P_host)·wall_clock
    facility       E     = PUE·E_IT
    CO2                  = E·grid carbon intensity
    GPU-hours            = n_devices·wall_clock;  cost = GPU-hours·price (+ E·electricity price, opt.)

This is the accounting of the published training footprints (Patterson et al. 2021, "Carbon
Emissions and Large Neural Network Training", arXiv:2104.10350, §2 and Table 4; Luccioni et al.
2022, "Estimating the Carbon Footprint of BLOOM", arXiv:2211.02001; the Llama 2 paper §2.2.1 and
Table 2; the Llama 3 / 3.1 model cards): processor-hours × power × PUE × kgCO2e/kWh. The tests
reproduce those figures. Wall-clock here is the real one, goodput losses included (the devices draw
power while they restart and recompute).

Pure numpy; vectorised over ``n_devices`` and ``wall_clock_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import InputError
from ..base.units import J_PER_KWH, SECONDS_PER_HOUR

#: Facility energy / IT energy. 1.2: the Jean Zay cluster BLOOM trained on (Luccioni et al. 2022,
#: Table 4, with GPT-3 at 1.1, Gopher 1.08, OPT 1.09; quoted, not re-read from the PDF here). Google's
#: fleet is about 1.1 (Patterson et al. 2021); users of planners ask for 1.3–1.5 for typical
#: enterprise rooms (reference/performance_models.md §7, llm-d-planner#70).
DEFAULT_PUE: float = 1.2

#: kg CO2e per kWh: 0.429, the US average grid Patterson et al. 2021 (Table 4) used for GPT-3 (1,287
#: MWh -> 552 tCO2e). Meta's Llama 2 / Llama 3 / Llama 3.1 tables imply 0.41–0.43 (location-based).
#: France, where BLOOM trained, was 0.057 (Luccioni et al. 2022); coal-heavy grids reach 0.7–0.9.
DEFAULT_GRID_KG_CO2_PER_KWH: float = 0.429

#: Power of the rest of the node per accelerator (CPUs, memory, NICs, switches, fans, storage): an
#: estimate, 240 W. The "idle" infrastructure energy Luccioni et al. 2022 add to BLOOM's GPU dynamic
#: energy is 256,646 kWh over 1,082,990 GPU-hours = 237 W per GPU. An upper bound for a full DGX
#: H100 is (10.2 kW maximum system power − 8 × 700 W) / 8 = 575 W per GPU.
DEFAULT_HOST_W_PER_DEVICE: float = 240.0

#: Fraction of the way from idle to TDP a training device draws, on average: 1.0, i.e. TDP for every
#: device-hour, the convention of every published training footprint (Llama 2 paper Table 2: "peak
#: power capacity per GPU device"; Llama 3 / 3.1 model cards: "TDP of 700W"; BLOOM: 400 W TDP).
#: Large synchronous jobs do run near the power cap (Llama 3 paper §3.3.4: tens-of-MW swings when
#: all GPUs idle together at checkpoints). An upper bound; a measured average (NVML) is better.
DEFAULT_TRAINING_UTILIZATION: float = 1.0

#: Idle draw as a fraction of TDP when ``idle_w`` is not given: 0.15, an estimate (idle SXM A100 /
#: H100 boards read roughly 50–100 W in nvidia-smi, i.e. 0.1–0.15 of 400–700 W TDP). Irrelevant at
#: the default utilization of 1.
DEFAULT_IDLE_FRACTION_OF_TDP: float = 0.15


@dataclass(frozen=True)
class EnergyCost:
    """Cost, energy and CO2 of a run. Floats, or arrays of the broadcast input shape."""

    gpu_hours: Any
    cost_usd: Any  # gpu_hours × price (+ electricity_cost_usd when an electricity price is given)
    energy_kwh: Any  # facility energy, PUE included
    it_energy_kwh: Any  # devices + hosts, before PUE
    co2_kg: Any
    device_power_w: float
    pue: float
    grid_kg_co2_per_kwh: float
    price_usd_per_device_hour: float
    host_w_per_device: float = DEFAULT_HOST_W_PER_DEVICE
    device_energy_kwh: Any = 0.0  # the accelerators alone, before PUE
    electricity_cost_usd: Any = 0.0  # 0 unless electricity_usd_per_kwh is given (owned hardware)


# -- validation --------------------------------------------------------------------------------------

def _check(value, field: str, *, lo: float = 0.0, hi: float = np.inf, lo_open: bool = False,
           integer: bool = False) -> np.ndarray:
    """``value`` as a finite float array inside the range, or InputError naming field and range."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(field, f"must be a number, got {value!r}") from None
    bad = ~np.isfinite(arr) | (arr <= lo if lo_open else arr < lo) | (arr > hi)
    if integer:
        bad = bad | (np.isfinite(arr) & (arr != np.floor(arr)))
    if np.any(bad):
        got = float(arr[bad].flat[0]) if arr.ndim else float(arr)
        lo_txt = f"> {lo:g}" if lo_open else f">= {lo:g}"
        rng = f"in [{lo:g}, {hi:g}]" if np.isfinite(hi) else lo_txt
        kind = "an integer" if integer else "a finite number"
        raise InputError(field, f"must be {kind} {rng}, got {got!r}")
    return arr


def _out(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


# -- the formulas ------------------------------------------------------------------------------------

def device_power_w(tdp_w, utilization, idle_w=None):
    """Average accelerator power ``P_idle + (TDP − P_idle)·utilization`` (linear power model).

    ``utilization`` is the fraction of the idle-to-TDP range drawn on average, in [0, 1];
    ``idle_w`` defaults to ``DEFAULT_IDLE_FRACTION_OF_TDP × TDP``. Linear interpolation between idle
    and peak is the usual server power model (Fan, Weber & Barroso 2007, "Power provisioning for a
    warehouse-sized computer", Eq. 1, P = P_idle + (P_busy − P_idle)·u).
    """
    tdp = _check(tdp_w, "tdp_w", lo_open=True)
    u = _check(utilization, "utilization", hi=1.0)
    idle = DEFAULT_IDLE_FRACTION_OF_TDP * tdp if idle_w is None else _check(idle_w, "idle_w")
    if np.any(idle > tdp):
        raise InputError("idle_w", f"must be in [0, tdp_w = {float(np.max(tdp)):g}], got {idle_w!r}")
    return _out(idle + (tdp - idle) * u)


def gpu_hours(n_devices, wall_clock_s):
    """Device-hours billed: ``n_devices × wall_clock_s / 3600``."""
    return _out(np.asarray(n_devices, dtype=float) * np.asarray(wall_clock_s, dtype=float) / SECONDS_PER_HOUR)


def energy_kwh(power_w, duration_s):
    """Energy in kWh of ``power_w`` drawn for ``duration_s``: W·s / 3.6e6."""
    return _out(np.asarray(power_w, dtype=float) * np.asarray(duration_s, dtype=float) / J_PER_KWH)


def facility_energy_kwh(it_energy_kwh, pue):
    """Facility energy = PUE × IT energy (The Green Grid's PUE; ISO/IEC 30134-2)."""
    return _out(np.asarray(pue, dtype=float) * np.asarray(it_energy_kwh, dtype=float))


def co2_kg(energy_kwh, grid_kg_co2_per_kwh):
    """Operational (location-based) emissions: energy × grid carbon intensity (Patterson 2021, §2)."""
    return _out(np.asarray(energy_kwh, dtype=float) * np.asarray(grid_kg_co2_per_kwh, dtype=float))


def energy_per_token_j(power_w, tokens_per_s, *, pue: float = 1.0):
    """Joules per token of a server drawing ``power_w`` while producing ``tokens_per_s``: P·PUE / rate.

    For serving: pass the replica's total power (devices + host) and its sustained throughput.
    Multiply by 1e6 / 3.6e6 for kWh per million tokens; see :func:`tokens_per_kwh`.
    """
    p = _check(power_w, "power_w")
    rate = _check(tokens_per_s, "tokens_per_s", lo_open=True)
    pue_ = _check(pue, "pue", lo=1.0)
    return _out(p * pue_ / rate)


def tokens_per_kwh(power_w, tokens_per_s, *, pue: float = 1.0):
    """Tokens per kWh of facility energy: 3.6e6 / :func:`energy_per_token_j` (tokens/W ranking)."""
    return _out(J_PER_KWH / np.asarray(energy_per_token_j(power_w, tokens_per_s, pue=pue)))


def training_energy_cost(
    n_devices: int,
    wall_clock_s: float,
    tdp_w: float,
    price_usd_per_device_hour: float,
    *,
    utilization: float = DEFAULT_TRAINING_UTILIZATION,
    idle_w: float | None = None,
    pue: float = DEFAULT_PUE,
    host_w_per_device: float = DEFAULT_HOST_W_PER_DEVICE,
    grid_kg_co2_per_kwh: float = DEFAULT_GRID_KG_CO2_PER_KWH,
    electricity_usd_per_kwh: float = 0.0,
) -> EnergyCost:
    """GPU-hours, cost, energy and CO2 of ``n_devices`` running for ``wall_clock_s``.

    ``price_usd_per_device_hour`` is a rental price, power included; for owned hardware pass the
    amortised price and ``electricity_usd_per_kwh`` to add the facility energy bill. Vectorised over
    ``n_devices`` and ``wall_clock_s``.
    """
    n = _check(n_devices, "n_devices", lo=1.0, integer=True)
    wall = _check(wall_clock_s, "wall_clock_s")
    price = _check(price_usd_per_device_hour, "price_usd_per_device_hour")
    pue_ = float(_check(pue, "pue", lo=1.0))
    host = float(_check(host_w_per_device, "host_w_per_device"))
    grid = float(_check(grid_kg_co2_per_kwh, "grid_kg_co2_per_kwh"))
    elec = float(_check(electricity_usd_per_kwh, "electricity_usd_per_kwh"))
    p_dev = float(device_power_w(tdp_w, utilization, idle_w))

    n, wall = np.broadcast_arrays(n, wall)
    hours = np.asarray(gpu_hours(n, wall))
    dev_kwh = np.asarray(energy_kwh(n * p_dev, wall))
    it_kwh = np.asarray(energy_kwh(n * (p_dev + host), wall))
    fac_kwh = np.asarray(facility_energy_kwh(it_kwh, pue_))
    elec_usd = fac_kwh * elec
    return EnergyCost(
        gpu_hours=_out(hours),
        cost_usd=_out(hours * price + elec_usd),
        energy_kwh=_out(fac_kwh),
        it_energy_kwh=_out(it_kwh),
        co2_kg=_out(co2_kg(fac_kwh, grid)),
        device_power_w=p_dev,
        pue=pue_,
        grid_kg_co2_per_kwh=grid,
        price_usd_per_device_hour=float(price),
        host_w_per_device=host,
        device_energy_kwh=_out(dev_kwh),
        electricity_cost_usd=_out(elec_usd),
    )


__all__ = [
    "DEFAULT_GRID_KG_CO2_PER_KWH",
    "DEFAULT_HOST_W_PER_DEVICE",
    "DEFAULT_IDLE_FRACTION_OF_TDP",
    "DEFAULT_PUE",
    "DEFAULT_TRAINING_UTILIZATION",
    "EnergyCost",
    "co2_kg",
    "device_power_w",
    "energy_kwh",
    "energy_per_token_j",
    "facility_energy_kwh",
    "gpu_hours",
    "tokens_per_kwh",
    "training_energy_cost",
]
