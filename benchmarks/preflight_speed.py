"""How long the pre-flight takes cold, and how much of it is the flow's own work.

Three cold subprocesses, each with a fresh ``PREFECT_HOME`` (so Prefect's embedded server starts and
migrates its database, as on a fresh machine), interleaved over ``--rounds`` rounds:

* ``baseline``: an empty Prefect flow that only starts and stops a local Ray instance: what any
  pre-flight on Prefect + Ray pays before it does anything;
* ``preflight``: ``python flows/preflight.py`` with its defaults (measure the local Ray cluster, plan
  ``--target-loss 2.0``, gate, size), the README's main job;
* ``python -c pass``: the interpreter alone, for scale.

Prints the medians, the flow's own overhead (preflight - baseline) and the ratio, and writes
``benchmarks/results/preflight_speed.json``. Target (issue 7): the whole pre-flight under 30 s cold.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from results_io import write_result

REPO = Path(__file__).resolve().parents[1]

BASELINE = """
import os
from prefect import flow
@flow
def empty():
    import ray
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.shutdown()
empty()
"""


def _env() -> dict:
    env = dict(os.environ)
    env.update({"RAY_USAGE_STATS_ENABLED": "0", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_HOME": tempfile.mkdtemp(prefix="prefect-bench-"),
                "SCALING_PLANNER_CALIBRATION_DIR": tempfile.mkdtemp(prefix="calibration-bench-")})
    env.pop("PREFECT_API_URL", None)
    return env


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    runs: dict[str, list[float]] = {"python -c pass": [], "baseline": [], "preflight": []}
    for r in range(args.rounds):
        runs["python -c pass"].append(_time([py, "-c", "pass"]))
        runs["baseline"].append(_time([py, "-c", BASELINE]))
        runs["preflight"].append(_time([py, "flows/preflight.py"]))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()), flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    overhead = med["preflight"] - med["baseline"]
    ratio = med["preflight"] / med["baseline"]
    print(f"\nmedians over {args.rounds} rounds (cold, fresh PREFECT_HOME each):")
    for k, v in med.items():
        print(f"  {k:16s} {v:7.2f} s")
    print(f"pre-flight own work (measure + plan + gate + size) = {overhead:.2f} s; "
          f"preflight / baseline = {ratio:.2f}x; target: whole pre-flight < 30 s -> "
          f"{'met' if med['preflight'] < 30 else 'NOT met'}")
    write_result("preflight_speed", {
        "benchmark": "preflight_speed", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": args.rounds, "seconds": runs, "median_s": med, "flow_overhead_s": overhead,
        "ratio_to_baseline": ratio, "target_s": 30.0, "target_met": med["preflight"] < 30,
        "load_average": list(os.getloadavg()), "cpu_count": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
