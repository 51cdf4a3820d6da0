"""planner simulate: the energy and reliability assumptions are the user's to set."""

import json

import pytest
from conftest import run_cli

from scaling_planner.cli import main

BASE = ["simulate", "--params", "7e9", "--tokens", "1e12", "--gpu", "h100-sxm", "--gpus", "64", "--json"]


def training(capsys, *extra):
    assert main(BASE + list(extra)) == 0
    return json.loads(capsys.readouterr().out)["training"]


def test_pue_and_grid_intensity_scale_energy_and_co2(capsys):
    base = training(capsys)
    greener = training(capsys, "--pue", "1.5", "--grid-co2", "0.1")
    # same run, same wall-clock: facility energy scales with PUE (default 1.2), CO2 = energy x intensity
    assert greener["energy_kwh"] == pytest.approx(base["energy_kwh"] * 1.5 / 1.2, rel=1e-9)
    assert greener["co2_kg"] == pytest.approx(greener["energy_kwh"] * 0.1, rel=1e-9)


def test_more_interruptions_lower_goodput_and_stretch_the_wall_clock(capsys):
    base = training(capsys)
    flaky = training(capsys, "--interruptions-per-gpu-hour", "1e-3")
    assert flaky["goodput"] < base["goodput"]
    assert flaky["wall_clock_days"] == pytest.approx(
        base["wall_clock_days"] * base["goodput"] / flaky["goodput"], rel=1e-9)
    slow_storage = training(capsys, "--checkpoint-write-gbps", "0.5")
    assert slow_storage["goodput"] < base["goodput"]


@pytest.mark.parametrize("flag", ["--pue", "--grid-co2", "--interruptions-per-gpu-hour", "--checkpoint-write-gbps"])
def test_bad_values_exit_2_in_one_line(capsys, flag):
    value = "0.5" if flag == "--pue" else "-1"
    try:
        code = main(BASE[:-1] + [flag, value])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("engine", ["megatron", "deepspeed"])
def test_pipeline_engine_flag_and_breakdown_adds_up(engine):
    """``--pipeline-engine`` reaches the simulator, and the time breakdown's parts sum to the step
    time (``dp_comm_hidden`` is overlapped, not added) for both engines."""
    code, out, err = run_cli("simulate", "--arch", "megatron-530b", "--tokens", "270e9", "--gpu", "a100-sxm-80gb",
                             "--gpus", "2240", "--global-batch", "1920", "--no-flash-attention",
                             "--pipeline-engine", engine, "--json")
    assert code == 0, err
    doc = json.loads(out)
    tb = doc["training"]["time_breakdown_s"]
    parts = sum(v for k, v in tb.items() if k not in ("total", "dp_comm_hidden"))
    assert parts == pytest.approx(tb["total"], rel=1e-9)
    deepspeed_note = any("DeepSpeed engine" in n for n in doc["training"]["notes"])
    assert deepspeed_note == (engine == "deepspeed")
    assert (tb["grad_accumulation"] > 0) == (engine == "deepspeed" and doc["training"]["layout"]["pp"] > 1)


def test_pipeline_engine_rejects_unknown_name():
    code, _, err = run_cli("simulate", "--params", "7e9", "--tokens", "1e11", "--gpu", "h100-sxm", "--gpus", "8",
                           "--pipeline-engine", "gpipe")
    assert code == 2 and "pipeline-engine" in err and "Traceback" not in err
