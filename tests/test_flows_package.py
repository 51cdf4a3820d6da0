"""The flows are part of the installed package: importable as scaling_planner.flows, deployable from
prefect.yaml (each entrypoint loads with Prefect's own loader), runnable from the thin flows/*.py scripts."""

import subprocess
import sys

import pytest
import yaml
from conftest import REPO


def test_flows_import_from_the_package():
    from scaling_planner.flows import measure, preflight, scaling_sweep, train

    assert preflight.preflight.name == "preflight" and train.train.name == "train-small-gpt"
    assert measure.measure_with_ray_tasks.name and scaling_sweep.scaling_sweep.name == "scaling-sweep"


@pytest.mark.parametrize("deployment", yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"],
                         ids=lambda d: d["name"])
def test_prefect_yaml_entrypoints_load_with_prefects_loader(deployment, monkeypatch):
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(REPO)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert flow.name and callable(flow.fn)
    assert deployment["work_pool"]["name"] == "scaling-planner"


@pytest.mark.parametrize("script", ["preflight", "train", "measure", "scaling_sweep"])
def test_thin_entry_scripts_give_help(script):
    proc = subprocess.run([sys.executable, f"flows/{script}.py", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "usage:" in proc.stdout
