"""Shared test fixtures. Environment for integrations is set before anything imports them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHINCHILLA_RUNS = SHARED / "data" / "chinchilla_hoffmann_runs.csv"


@pytest.fixture(scope="session")
def chinchilla_runs_path() -> Path:
    if not CHINCHILLA_RUNS.exists():
        pytest.fail(f"reference data missing: {CHINCHILLA_RUNS} (CI runs with ../shared beside the repo)")
    return CHINCHILLA_RUNS
