"""The pre-flight's pure steps (preflight/orchestration.py): its request is the planner's request plus
the pre-flight's own fields, and the gate checks the MFU of the record the plan itself uses."""

import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.calibration.store import CalibrationRecord
from scaling_planner.planning.request import PlanRequest
from scaling_planner.preflight.orchestration import PreflightRequest, gate_mfu


def _training(rid: str, created_at: str, dtype: str, mfu: float) -> CalibrationRecord:
    return CalibrationRecord(id=rid, created_at=created_at, profile="h100-sxm", source="training", dtype=dtype,
                             devices=8, mfu=mfu)


def test_gate_checks_the_record_the_plan_uses_not_the_first_one():
    """Bug (issue 15): the gate took the first training record with an MFU, whatever its dtype or value,
    while the plan uses the newest bf16 record with MFU <= 1; min_mfu could pass on a record the plan
    rejected."""
    records = [_training("a", "2026-01-01T00:00:00Z", "fp32", 0.90),      # another precision
               _training("b", "2026-01-02T00:00:00Z", "bf16", 0.31),      # the one the plan uses
               _training("c", "2026-01-03T00:00:00Z", "bf16", 1.30)]      # MFU above 1: rejected
    mfu, source = gate_mfu(records, "h100-sxm")
    assert mfu == pytest.approx(0.31) and "b" in source
    plan = PlanRequest.validated(target_loss=2.0, calibration=records)
    from scaling_planner.laws.presets import get_law
    from scaling_planner.planning.recommend import recommend

    rec = recommend(get_law("besiroglu2024"), plan)
    assert rec.calibration.training_record == "b" and rec.calibration.mfu == pytest.approx(mfu)
    assert gate_mfu([records[0], records[2]], "h100-sxm") == (None, None)
    assert gate_mfu([], "h100-sxm") == (None, None)


def test_the_preflight_request_is_the_planners_request_plus_its_own():
    own = set(PreflightRequest.model_fields) - set(PlanRequest.model_fields)
    assert set(PlanRequest.model_fields) <= set(PreflightRequest.model_fields)
    assert {"params", "tokens", "limits", "measure", "ray_address"} <= own
    req = PreflightRequest(budget_gpu_hours=5e5, experts=8, near_optimal_rel_tol=0.01, measure=False)
    plan = req.plan_request(gpu="a100-sxm-80gb", calibration=None)
    assert (plan.objective, plan.budget_gpu_hours, plan.experts, plan.near_optimal_rel_tol, plan.gpu) == \
        ("budget_gpu_hours", 5e5, 8, 0.01, "a100-sxm-80gb")


def test_the_preflight_request_defaults_and_rules():
    assert PreflightRequest().target_loss == 2.0
    assert PreflightRequest(params=1e9, tokens=2e10).target_loss is None  # a fixed job has no objective
    assert PreflightRequest(deadline_days=3, target_loss=2.2).limits.deadline_days == 3  # the plan's deadline gates
    with pytest.raises(ValueError, match="both params and tokens"):
        PreflightRequest(params=1e9)
    with pytest.raises(InputError, match="objective"):
        PreflightRequest.validated(target_loss=2.0, params=1e9, tokens=1e10)


def test_an_option_added_to_the_request_reaches_every_entry_point():
    """One field of PlanRequest is a recommend() keyword, a `planner recommend` flag, a field of the
    pre-flight form and a flag of the pre-flight script: --near-optimal-tol was added in that one place."""
    import argparse

    from scaling_planner.cli import build_parser
    from scaling_planner.cli.options import add_model_arguments, build_request

    args = build_parser().parse_args(["recommend", "--target-loss", "2.0", "--near-optimal-tol", "0.02"])
    from scaling_planner.cli.recommend import plan_from_arguments

    wide = plan_from_arguments(args)
    narrow = plan_from_arguments(build_parser().parse_args(["recommend", "--target-loss", "2.0"]))
    assert wide.model.near_optimal_rel_tol == 0.02 and narrow.model.near_optimal_rel_tol == 0.005
    assert wide.model.params_near_optimal_low < narrow.model.params_near_optimal_low
    ap = argparse.ArgumentParser()
    add_model_arguments(ap, PreflightRequest, every_field=True)
    req = build_request(PreflightRequest, ap.parse_args(["--near-optimal-tol", "0.02", "--no-measure"]),
                        every_field=True)
    assert req.near_optimal_rel_tol == 0.02 and req.measure is False and req.target_loss == 2.0
    with pytest.raises(InputError, match="--near-optimal-tol"):
        build_request(PreflightRequest, ap.parse_args(["--near-optimal-tol", "2"]), every_field=True)
