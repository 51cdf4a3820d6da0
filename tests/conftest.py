"""Shared test fixtures. Environment for integrations is set before anything imports them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# the clusters tests build themselves (cluster_utils.Cluster, `ray start`) run their workers at normal
# priority, as the planner's own local instance does (measure.ray_session): at Ray's default nice 15 they
# starve beside a busy loop and a probe times out
os.environ.setdefault("RAY_worker_niceness", "0")
# Prefect: a fresh home per session (its INPUTS cache lives there and would leak across runs), a
# generous server start-up timeout for a loaded 2-core CI box, and never a real server.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.pop("PREFECT_API_URL", None)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHINCHILLA_RUNS = SHARED / "data" / "chinchilla_hoffmann_runs.csv"


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``planner ARGV`` in-process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from scaling_planner.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def chinchilla_runs_path() -> Path:
    if not CHINCHILLA_RUNS.exists():
        pytest.fail(f"reference data missing: {CHINCHILLA_RUNS} (CI runs with ../shared beside the repo)")
    return CHINCHILLA_RUNS


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server + SQLite database for the session (reference/stack_notes.md §2);
    flow heartbeats off (they cost ~1 s per flow run). Only Prefect integration tests ask for it."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90), \
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture
def calibration_dir(tmp_path, monkeypatch) -> Path:
    """An empty calibration history for one test (never the user's ~/.scaling-planner)."""
    d = tmp_path / "calibration"
    monkeypatch.setenv("SCALING_PLANNER_CALIBRATION_DIR", str(d))
    return d
