"""``planner recommend`` of this tree against a baseline commit, interleaved in one run; and ``planner validate``.

Run: ``.venv/bin/python benchmarks/recommend_vs_baseline.py [--baseline 18f9cbd] [--runs 11]``. The baseline is
checked out with ``git worktree`` into a temporary folder and both trees run with the same interpreter
(``python -c`` with the tree on ``PYTHONPATH``), alternating, each command a cold subprocess; prints the
medians and the ratio (this tree / baseline) and writes ``benchmarks/results/recommend_vs_baseline.json``.
Issue 14's goal: the end-to-end estimate makes ``recommend --target-loss 2.0`` no slower (ratio <= ~1, within
the run-to-run noise printed beside it), and ``planner validate`` runs in under 60 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_result

ROOT = Path(__file__).resolve().parents[1]
MAIN = "import sys; from scaling_planner.cli import main; sys.exit(main(sys.argv[1:]))"


def _run(tree: Path, argv: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", MAIN, *argv], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd=tree, env=env)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="18f9cbd", help="git commit to compare with (default: before issue 14)")
    ap.add_argument("--runs", type=int, default=11)
    a = ap.parse_args()
    argv = ["recommend", "--target-loss", "2.0"]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), a.baseline], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for tree in (ROOT, base):  # warm-up: write .pyc files, fill the OS cache
                _run(tree, argv)
            now, before = [], []
            for _ in range(a.runs):
                now.append(_run(ROOT, argv))
                before.append(_run(base, argv))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", MAIN, "validate", "--json"], check=True, stdout=subprocess.DEVNULL,
                   cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    validate_s = time.perf_counter() - t0
    med_now, med_before = statistics.median(now), statistics.median(before)
    spread = (statistics.quantiles(now, n=4)[2] - statistics.quantiles(now, n=4)[0]) / med_now
    print(f"planner recommend --target-loss 2.0: this tree {med_now * 1e3:.0f} ms, baseline {a.baseline} "
          f"{med_before * 1e3:.0f} ms (medians of {a.runs}); ratio {med_now / med_before:.3f} "
          f"(interquartile spread of this tree {spread:.1%})")
    print(f"planner validate --json: {validate_s:.1f} s (goal < 60 s); load average {os.getloadavg()[0]:.2f}")
    write_result("recommend_vs_baseline", {
        "baseline": a.baseline, "runs": a.runs, "recommend_s_median": med_now, "baseline_s_median": med_before,
        "ratio": med_now / med_before, "interquartile_spread": spread, "validate_s": validate_s,
        "load_average_1min": os.getloadavg()[0], "recommend_s": now, "baseline_s": before})
    return 0


if __name__ == "__main__":
    sys.exit(main())
