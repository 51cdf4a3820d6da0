"""A CPU trains, measures and is planned in fp32 (issue 16 item 9, "the CPU calibration trap"): the
``cpu`` profile's training precision is fp32, ``measure --save`` records the fp32 probe, a plan on the
``cpu`` profile reads that rate as fp32 and leaves a bf16 probe out (a CPU without bf16 matrix units
measured 0.82 GFLOP/s, 0.1 % of the bf16 peak, and the plan took it for the device), and fp32 moves
twice the bytes of 16-bit training and keeps 16 B of states per parameter instead of 18."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.calibration.store import append, new_record
from scaling_planner.hardware.profiles import load_profile
from scaling_planner.laws.presets import get_law
from scaling_planner.planning.recommend import recommend
from scaling_planner.simulate import efficiency as eff
from scaling_planner.simulate.architecture import shape_for_params
from scaling_planner.simulate.memory import model_state_bytes, stage_param_counts
from scaling_planner.simulate.training.estimate import simulate_training
from scaling_planner.simulate.training.step import layer_times

LAW = get_law("besiroglu2024")
ENTRY = "import sys; from scaling_planner.cli import main; sys.exit(main())"


def probe(rate_flops_per_s: float, dtype: str, profile: str = "cpu"):
    return new_record(profile=profile, source="probe", dtype=dtype, devices=1,
                      achieved_matmul_flops_per_s=rate_flops_per_s)


def test_a_cpu_trains_in_fp32_and_accelerators_in_bf16():
    assert load_profile("cpu").training_precision == "fp32"
    assert {load_profile(g).training_precision for g in ("h100-sxm", "a100-sxm-80gb", "mi300x", "tpu-v5p")} == {"bf16"}
    assert eff.measured_dtype("fp32") == "fp32" and eff.measured_dtype("fp8") == "bf16"


def test_fp32_keeps_16_bytes_of_states_per_parameter_and_mixed_precision_18():
    arch = shape_for_params(1e8)
    params = sum(float(x) for x in stage_param_counts(arch, 1, 1, 1))

    def per_param(width):
        states = model_state_bytes(arch, 1, 1, 1, 1, 0, width)
        return sum(float(v) for v in states.values()) / params

    # Korthikanti et al. 2022 Fig. 1: 18 B/param for mixed-precision Adam; fp32 Adam: 4 + 4 + 8
    assert per_param(2.0) == pytest.approx(18.0)
    assert per_param(4.0) == pytest.approx(16.0)


def test_fp32_moves_twice_the_bytes_of_16_bit_training():
    cpu = load_profile("cpu")
    fp32, bf16 = eff.DeviceRates(cpu, "fp32"), eff.DeviceRates(cpu, "bf16")
    assert (fp32.element_bytes, bf16.element_bytes) == (4.0, 2.0)
    arch = shape_for_params(2e7)
    a = layer_times(arch, fp32, arch.seq_len, 4, 1, 1, False)
    b = layer_times(arch, bf16, arch.seq_len, 4, 1, 1, False)
    # elementwise kernels are bandwidth-bound on either: twice the bytes, twice the time (less launches)
    ratio = float(a["elementwise"]) / float(b["elementwise"])
    assert 1.9 < ratio <= 2.0
    # the linear layers are compute-bound at each precision's own peak
    assert float(a["gemm"]) / float(b["gemm"]) == pytest.approx(cpu.peak_flops_per_s("bf16")
                                                                / cpu.peak_flops_per_s("fp32"), rel=0.05)


def test_a_cpu_simulation_runs_at_fp32_and_names_it():
    r = simulate_training(shape_for_params(4e5), 4e6, load_profile("cpu"), 1, precision="fp32", top=0)
    assert r.training.precision == "fp32"
    assert r.training.peak_flops_per_s == pytest.approx(load_profile("cpu").peak_flops_per_s("fp32"))
    assert 0 < r.training.mfu < 1


def test_a_cpu_plan_reads_the_fp32_probe_and_leaves_the_bf16_one_out(tmp_path):
    ask = {"budget_flops": 1e18, "gpu": "cpu", "gpus": 1}
    fp32 = probe(0.185e12, "fp32")
    bf16 = probe(0.82e9, "bf16")  # the trap: 0.1 % of the bf16 peak of a CPU without bf16 matrix units
    plan = recommend(LAW, calibration=[fp32, bf16], **ask)
    assert plan.calibration.probe_record == fp32.id
    assert plan.calibration.matmul_flops_per_s == pytest.approx(0.185e12)
    assert any(bf16.id in n and "fp32" in n for n in plan.calibration.notes)
    assert plan.training.precision == "fp32"
    # the matmul fraction is the fp32 rate over the fp32 peak: the run's MFU stays that side of it
    fraction = 0.185e12 / load_profile("cpu").peak_flops_per_s("fp32")
    assert 0.2 * fraction < plan.training.mfu_steady_state <= fraction
    # only a bf16 probe, with --calibrated: an error that says what a CPU plan reads
    append(bf16, tmp_path)
    with pytest.raises(InputError, match="fp32 probe records"):
        recommend(LAW, calibration="latest", calibration_dir=tmp_path, **ask)


def test_gpu_plans_keep_reading_a_bf16_probe():
    plan = recommend(LAW, calibration=[probe(700e12, "bf16", "h100-sxm")], budget_flops=1e22, gpu="h100-sxm", gpus=64)
    assert plan.training.precision == "bf16" and plan.calibration.matmul_flops_per_s == pytest.approx(700e12)


@pytest.mark.slow
def test_readme_order_measure_then_calibrated_cpu_plan(tmp_path):
    """README: ``planner measure --save`` then ``planner recommend --gpu cpu --calibrated``: the record is
    the fp32 probe and the plan's MFU is a plausible share of what the probe measured."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "SCALING_PLANNER_CALIBRATION_DIR": str(tmp_path)}

    def planner(*args):
        return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=240,
                              env=env)

    m = planner("measure", "--quick", "--save")
    assert m.returncode == 0, m.stderr
    saved = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert [(s["profile"], s["dtype"]) for s in saved] == [("cpu", "fp32")]
    r = planner("recommend", "--budget-flops", "1e18", "--gpu", "cpu", "--gpus", "1", "--calibrated", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    t = plan["training"]
    assert t["precision"] == "fp32" and t["mfu_record"] == saved[0]["id"]
    measured_fraction = saved[0]["achieved_matmul_flops_per_s"] / load_profile("cpu").peak_flops_per_s("fp32")
    assert 0.2 * measured_fraction < t["mfu_steady_state"] <= measured_fraction
