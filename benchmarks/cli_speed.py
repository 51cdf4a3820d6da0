"""Cold start of ``planner recommend --target-loss 2.0`` beside ``python -c "import numpy, pydantic"``
(the two libraries it cannot start without) and ``python -c pass``, in the same run.

Run: ``.venv/bin/python benchmarks/cli_speed.py [--runs 11]``. Each command runs in a fresh
subprocess (cold interpreter, warm OS file cache), interleaved so that machine load hits both
alike; prints the medians, the ratio to the numpy + pydantic baseline and the difference (what the
planner itself costs) and writes ``benchmarks/results/cli_speed.json``. The goal (issue 15): recommend
within 1.5x of ``import numpy, pydantic``.
Also prints the import-time table of ``python -X importtime`` for the slowest modules.

Bytecode: an installed package runs from its ``.pyc`` files (pip compiles them at install; an
editable install writes them on its first run). The subprocesses therefore run without
``PYTHONDONTWRITEBYTECODE`` (which a development shell may set, and which would make every start
compile the project's sources again, ~40 ms here), so the warm-up run leaves the ``__pycache__`` a
user would have. The 1-minute load average is recorded: on the 2-core box other work running at
the same time moves every figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_io import write_result

ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO = 1.5  # recommend / (python -c "import numpy, pydantic")


MAIN = "import sys; from scaling_planner.cli import main; sys.exit(main(sys.argv[1:]))"


def _planner() -> list[str]:
    exe = Path(sys.executable).with_name("planner")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", MAIN]


def _env() -> dict:
    """The environment of the timed commands: the caller's, but allowed to write .pyc files."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=_env())
    return time.perf_counter() - t0


def _slowest_imports(n: int = 8) -> list[tuple[str, float]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", MAIN, "recommend", "--target-loss", "2.0"],
                          capture_output=True, text=True, cwd=ROOT, env=_env())
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cum, name = line.split("|")
            rows.append((name.rstrip(), int(cum) / 1e6))
    top = [(name.strip(), s) for name, s in rows if not name.startswith("  ")]  # top-level imports only
    return sorted(top, key=lambda r: -r[1])[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    recommend = _planner() + ["recommend", "--target-loss", "2.0"]
    baseline = [sys.executable, "-c", "pass"]
    libraries = [sys.executable, "-c", "import numpy, pydantic"]
    _time(recommend)  # warm the file cache and write the .pyc files
    _time(baseline)
    _time(libraries)
    load_before = os.getloadavg()[0]
    rec_s, base_s, lib_s = [], [], []
    for _ in range(args.runs):
        base_s.append(_time(baseline))
        lib_s.append(_time(libraries))
        rec_s.append(_time(recommend))
    load_after = os.getloadavg()[0]
    rec, base, lib = statistics.median(rec_s), statistics.median(base_s), statistics.median(lib_s)
    ratio = rec / lib
    print(f"python -c pass                          median {base * 1e3:6.1f} ms  (min {min(base_s) * 1e3:.1f})")
    print(f"python -c 'import numpy, pydantic'      median {lib * 1e3:6.1f} ms  (min {min(lib_s) * 1e3:.1f})")
    print(f"planner recommend --target-loss 2.0     median {rec * 1e3:6.1f} ms  (min {min(rec_s) * 1e3:.1f})")
    print(f"load average (1 min) {load_before:.2f} -> {load_after:.2f}")
    print(f"ratio recommend / (numpy + pydantic) {ratio:.2f}x; goal <= {GOAL_RATIO}x -> "
          f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}; the planner's own cost over the libraries "
          f"{(rec - lib) * 1e3:.1f} ms")
    imports = _slowest_imports()
    print("slowest top-level imports (cumulative):")
    for name, s in imports:
        print(f"  {s * 1e3:6.1f} ms  {name}")
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}",
        "runs": args.runs,
        "command": " ".join(["planner", "recommend", "--target-loss", "2.0"]),
        "python_pass_median_s": base,
        "import_numpy_pydantic_median_s": lib,
        "recommend_median_s": rec,
        "recommend_min_s": min(rec_s),
        "ratio_to_numpy_pydantic": ratio,
        "difference_to_numpy_pydantic_s": rec - lib,
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio <= GOAL_RATIO,
        "python_pass_runs_s": base_s,
        "import_numpy_pydantic_runs_s": lib_s,
        "recommend_runs_s": rec_s,
        "bytecode": "recommend runs from the .pyc files the warm-up run wrote (as an installed package does)",
        "load_average_1min": [load_before, load_after],
        "slowest_top_level_imports_s": dict(imports),
    }
    write_result("cli_speed", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
