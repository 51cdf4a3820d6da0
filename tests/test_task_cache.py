"""The planning tasks' cache (scaling_planner.tasks, real Prefect under prefect_test_harness): keyed on the
content of every file a task reads, not on its path. Rewriting a law file, a runs CSV, a hardware profile
or the calibration history in place under the same path runs the task again with the new content;
the same files twice still hit the cache ("Cached")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from prefect import flow

import scaling_planner
from scaling_planner import tasks
from scaling_planner.calibration import store as cal
from scaling_planner.laws.chinchilla import ChinchillaLaw
from scaling_planner.planning.recommend import recommend
from scaling_planner.planning.request import PlanRequest

pytestmark = pytest.mark.usefixtures("prefect_harness")

REQUEST = PlanRequest(target_loss=2.2, gpu="h100-sxm", gpus=64, alternatives=False)
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
HARDER = {**HOFFMANN, "E": 1.85}  # a higher irreducible loss: more compute for the same target


@flow(name="cache-test-plan")
def plan_twice(request: PlanRequest, law_file: str) -> list[tuple[str, float]]:
    states = [tasks.recommend_plan(request, law_file=law_file, return_state=True) for _ in range(2)]
    return [(s.name, s.result().compute_flops) for s in states]


@flow(name="cache-test-fit")
def fit_twice(runs_csv: str) -> list[tuple[str, dict]]:
    states = [tasks.fit_scaling_law(runs_csv, return_state=True) for _ in range(2)]
    return [(s.name, {k: s.result()[k] for k in ("E", "A", "B", "alpha", "beta")}) for s in states]


@flow(name="cache-test-simulate")
def simulate_twice(gpu: str, calibration: list | None = None) -> list[tuple[str, float, float]]:
    states = [tasks.simulate_training(7e9, 1.4e11, gpu, 64, calibration=calibration, return_state=True)
              for _ in range(2)]
    return [(s.name, s.result().training.cost_usd, s.result().training.mfu) for s in states]


def _write_law(path: Path, params: dict) -> None:
    path.write_text(json.dumps({**params, "name": "fitted"}))


def _law_plan_flops(params: dict) -> float:
    law = ChinchillaLaw(name="fitted", source="test", **params)
    return recommend(law, REQUEST).compute_flops


def test_a_law_file_rewritten_in_place_is_planned_again(tmp_path: Path):
    """Bug: the cache keyed on the path string, so the rewritten file returned the old plan."""
    law_file = tmp_path / "fit.json"
    _write_law(law_file, HOFFMANN)
    (first, cached) = plan_twice(REQUEST, str(law_file))
    assert (first[0], cached[0]) == ("Completed", "Cached")
    assert first[1] == cached[1] == pytest.approx(_law_plan_flops(HOFFMANN), rel=1e-12)

    _write_law(law_file, HARDER)  # same path, new parameters
    (again, again_cached) = plan_twice(REQUEST, str(law_file))
    assert again[0] == "Completed" and again_cached[0] == "Cached"
    assert again[1] == pytest.approx(_law_plan_flops(HARDER), rel=1e-12)
    assert again[1] > 1.5 * first[1]

    _write_law(law_file, HOFFMANN)  # the first content again: its cached plan is valid again
    assert plan_twice(REQUEST, str(law_file))[0] == ("Cached", first[1])


def test_rows_appended_to_the_runs_csv_are_fitted_again(tmp_path: Path):
    lines = (REPO / "examples" / "runs.csv").read_text().splitlines()
    runs = tmp_path / "runs.csv"
    runs.write_text("\n".join(lines[:60]) + "\n")
    (first, cached) = fit_twice(str(runs))
    assert (first[0], cached[0]) == ("Completed", "Cached") and first[1] == cached[1]

    with runs.open("a") as fh:  # more runs, same file
        fh.write("\n".join(lines[60:]) + "\n")
    (again, again_cached) = fit_twice(str(runs))
    assert (again[0], again_cached[0]) == ("Completed", "Cached")
    direct = tasks.fit_scaling_law.fn(str(runs))
    assert again[1] == pytest.approx({k: direct[k] for k in again[1]}, rel=1e-9)
    assert again[1]["E"] != pytest.approx(first[1]["E"], rel=1e-3)


def test_a_hardware_profile_rewritten_in_place_is_simulated_again(tmp_path: Path, monkeypatch):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (REPO / "hardware_profiles" / "h100-sxm.yaml").read_text()
    assert "usd_per_hour: 4.916" in text
    yaml_file = profiles / "h100-sxm.yaml"  # a user profile overriding the built-in of the same name
    yaml_file.write_text(text)
    monkeypatch.setenv("SCALING_PLANNER_PROFILES", str(profiles))
    (first, cached) = simulate_twice("h100-sxm")
    assert (first[0], cached[0]) == ("Completed", "Cached")

    yaml_file.write_text(text.replace("usd_per_hour: 4.916", "usd_per_hour: 9.832"))  # twice the price
    (again, _) = simulate_twice("h100-sxm")
    assert again[0] == "Completed"
    assert again[1] == pytest.approx(2 * first[1], rel=1e-9)


def test_calibration_records_and_history_are_part_of_the_key(tmp_path: Path):
    rec = cal.new_record(profile="h100-sxm", source="training", dtype="bf16", devices=8, mfu=0.30)
    (first, cached) = simulate_twice("h100-sxm", [rec])
    assert (first[0], cached[0]) == ("Completed", "Cached")
    changed = rec.model_copy(update={"mfu": 0.15})  # same id, other content
    (again, _) = simulate_twice("h100-sxm", [changed])
    assert again[0] == "Completed" and again[2] < first[2]

    # calibration='latest': a record appended to the history directory is a new key
    history = tmp_path / "history"
    cal.append(rec, history)
    request = REQUEST.model_copy(update={"calibration": "latest", "calibration_dir": str(history)})
    law_file = tmp_path / "fit.json"
    _write_law(law_file, HOFFMANN)
    (plan_first, plan_cached) = plan_twice(request, str(law_file))
    assert (plan_first[0], plan_cached[0]) == ("Completed", "Cached")
    cal.append(cal.new_record(profile="h100-sxm", source="training", dtype="bf16", devices=8, mfu=0.10), history)
    (plan_again, _) = plan_twice(request, str(law_file))
    assert plan_again[0] == "Completed"


def test_the_package_version_is_part_of_the_key(tmp_path: Path, monkeypatch):
    law_file = tmp_path / "fit.json"
    _write_law(law_file, HOFFMANN)
    assert [s for s, _ in plan_twice(REQUEST, str(law_file))] == ["Completed", "Cached"]
    monkeypatch.setattr(scaling_planner, "__version__", scaling_planner.__version__ + ".post1")
    assert [s for s, _ in plan_twice(REQUEST, str(law_file))] == ["Completed", "Cached"]
