"""The training flow end to end on CPU: pre-flight, a real Ray Train job, MFU into the calibration history,
and the next plan using it; a worker killed mid-training fails the flow clearly and writes nothing."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from scaling_planner.calibration.store import history
from scaling_planner.flows.preflight import PreflightRequest, preflight
from scaling_planner.flows.train import TrainRequest, architecture_of, train
from scaling_planner.preflight.gate import GateLimits

TINY = {"params": 5e4, "seq_len": 64, "batch_size": 8, "threads_per_worker": 1}


@pytest.mark.slow
def test_training_flow_records_mfu_and_the_next_plan_uses_it(prefect_harness, calibration_dir, tmp_path):
    req = TrainRequest(**TINY, tokens=8 * 64 * 40, storage_dir=str(tmp_path / "ray"))
    state = train(req, return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert out.steps == 40 and out.tokens_seen == 8 * 64 * 40
    assert out.final_val_loss < out.initial_val_loss - 1.0  # it learned (ln 256 = 5.55 at the start)
    assert out.preflight.gate.passed and out.preflight.job.num_workers == 1
    assert out.preflight.job.use_gpu is False and out.preflight.gpu == "cpu"
    # the measured MFU is in the history, as one complete record
    records, problems = history(calibration_dir, profile="cpu", source="training")
    assert not problems and [r.id for r in records] == [out.calibration_record]
    assert records[0].mfu == pytest.approx(out.mfu) and 0 < out.mfu < 1
    assert records[0].dtype == "fp32"  # 'auto': the cpu profile's training precision, the one the plan reads
    # the next pre-flight for this job plans with it instead of the profile's prior
    from scaling_planner.train.gpt import config_for_params

    cfg = config_for_params(5e4, seq_len=64)
    nxt = preflight(PreflightRequest(params=float(cfg.params_total()), tokens=float(req.tokens),
                                     arch=architecture_of(cfg), gpu="cpu", gpus=1, measure=False, size_job=False))
    assert any(out.calibration_record in c for c in nxt.calibration)
    # the measured MFU sets the next plan's steady state (the end-to-end MFU adds failures and checkpoints)
    assert nxt.plan["training"]["mfu_steady_state"] == pytest.approx(out.mfu)
    assert nxt.plan["training"]["efficiency_source"].startswith("measured")


@pytest.mark.slow
def test_gate_rejects_before_any_training(prefect_harness, calibration_dir, tmp_path):
    # a 1-second deadline for 4M tokens on a CPU: the pre-flight must stop it, with the excess
    req = TrainRequest(**TINY, tokens=4_000_000, limits=GateLimits(deadline_days=1 / 86400),
                       storage_dir=str(tmp_path / "ray"))
    state = train(req, return_state=True)
    assert state.is_failed() and "deadline_days" in state.message and "exceeds" in state.message
    assert not (tmp_path / "ray").exists()  # no Ray Train job was started
    assert history(calibration_dir)[0] == []


@pytest.mark.slow
def test_killed_worker_fails_clearly_and_writes_no_calibration(prefect_harness, calibration_dir, tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    req = TrainRequest(**TINY, workers=2, tokens=2 * 8 * 64 * 100_000, pid_dir=str(pid_dir),
                       storage_dir=str(tmp_path / "ray"), limits=GateLimits())

    def kill_rank_1():
        deadline = time.monotonic() + 240
        pid_file = pid_dir / "rank1.pid"
        while time.monotonic() < deadline and not pid_file.exists():
            time.sleep(0.2)
        time.sleep(2.0)  # let it train a few steps
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_rank_1, daemon=True)
    killer.start()
    state = train(req, return_state=True)
    killer.join(timeout=5)
    assert state.is_failed()
    assert "training on Ray failed (2 workers)" in state.message
    # the root cause, not just "WorkerGroupError: Training failed due to worker errors:" (issue 16 item 3)
    assert "worker rank" in state.message and "Training failed due to worker errors:" not in state.message
    records, problems = history(calibration_dir)
    assert records == [] and problems == []
    assert not calibration_dir.exists() or not any(calibration_dir.iterdir())  # not even a temporary file


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0): read its state
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_time_limit_stops_the_job_and_the_flow_fails_with_the_reason(prefect_harness, calibration_dir, tmp_path):
    """Issue 16 item 1: TrainRequest(timeout_s=...) ran on for minutes because a Prefect task timeout cannot
    interrupt a thread blocked in Ray; now the Ray job is stopped at the limit, its worker dies, the flow run
    fails saying so, and no calibration record is written."""
    import glob
    import tempfile

    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "scaling-planner-train-*")))
    # 60 s: beside two busy loops a Ray Train worker took more than 20 s to start and write its PID
    req = TrainRequest(**TINY, tokens=8 * 64 * 10_000_000, timeout_s=60, pid_dir=str(pid_dir), limits=GateLimits())
    t0 = time.monotonic()
    state = train(req, return_state=True)
    elapsed = time.monotonic() - t0
    assert state.is_failed() and "time limit of 60 s" in state.message and "stopped" in state.message
    assert elapsed < 60 + 150  # the limit, plus the pre-flight and Ray's start: not the job's hours
    pid = int((pid_dir / "rank0.pid").read_text())
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(pid), "the training worker outlived the time limit"
    assert history(calibration_dir)[0] == []
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "scaling-planner-train-*")))
    assert after <= before  # issue 16 item 3: the job's own storage directory is removed
