"""Layout-search speed: the vectorised grid against a per-candidate Python loop over the same formulas.

Run: ``.venv/bin/python benchmarks/layout_speed.py`` (one core: numpy's BLAS is not used here, and the
script pins OMP/OPENBLAS threads to 1). Prints candidates per second for both, their ratio, and the
time of the full ``planner simulate`` search for Llama 3 405B on 16,384 H100s; writes the figures to
``benchmarks/results/layout_speed.json``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from results_io import write_result  # noqa: E402

from scaling_planner.hardware.profiles import get_profile  # noqa: E402
from scaling_planner.simulate import efficiency as eff  # noqa: E402
from scaling_planner.simulate.architecture import get_arch  # noqa: E402
from scaling_planner.simulate.training.estimate import simulate_training  # noqa: E402
from scaling_planner.simulate.training.search import evaluate_grid, layout_grid  # noqa: E402


def _best_of(fn, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> dict:
    arch = get_arch("llama3-405b")
    profile = get_profile("h100-sxm")
    rates = eff.DeviceRates(profile)
    n_devices = 16384
    grid = layout_grid(arch, n_devices)
    n = grid["t"].size
    # a large grid: the 405B grid tiled to ~1M candidates, to measure the per-candidate cost
    reps = max(1, 1_000_000 // n)
    big = {k: np.tile(v, reps) for k, v in grid.items()}
    n_big = big["t"].size
    vec_s = _best_of(lambda: evaluate_grid(arch, rates, big), repeats=3)
    vec_small_s = _best_of(lambda: evaluate_grid(arch, rates, grid))
    # per-candidate loop over the very same function, on scalars
    sample = np.random.default_rng(0).choice(n, size=min(400, n), replace=False)
    rows = [{k: v[i].item() for k, v in grid.items()} for i in sample]

    def loop():
        for row in rows:
            evaluate_grid(arch, rates, row)

    loop_s = _best_of(loop, repeats=2)
    loop_rate = len(rows) / loop_s
    vec_rate = n_big / vec_s
    full_s = _best_of(lambda: simulate_training(arch, 15.6e12, profile, n_devices), repeats=3)
    out = {
        "machine": (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                    f"Python {platform.python_version()}, numpy {np.__version__}"),
        "threads": "1 (OMP/OPENBLAS/MKL_NUM_THREADS=1)",
        "model": "llama3-405b", "gpu": "h100-sxm", "gpus": n_devices,
        "grid_candidates": int(n),
        "vectorised_candidates": int(n_big),
        "vectorised_s": vec_s,
        "vectorised_candidates_per_s": vec_rate,
        "vectorised_grid_only_s": vec_small_s,
        "loop_candidates": len(rows),
        "loop_s": loop_s,
        "loop_candidates_per_s": loop_rate,
        "speedup": vec_rate / loop_rate,
        "full_search_405b_16384_h100_s": full_s,
        "target_candidates_per_s": 200_000,
        "target_full_search_s": 1.0,
    }
    print(f"vectorised : {n_big:>9,d} candidates in {vec_s:.3f} s = {vec_rate:>12,.0f} candidates/s")
    print(f"python loop: {len(rows):>9,d} candidates in {loop_s:.3f} s = {loop_rate:>12,.0f} candidates/s")
    print(f"ratio      : {vec_rate / loop_rate:,.0f}x")
    print(f"full search, Llama 3 405B on 16,384 H100 ({n:,d} candidates, plan included): {full_s * 1e3:.1f} ms "
          f"(grid evaluation alone {vec_small_s * 1e3:.1f} ms)")
    write_result("layout_speed", out)
    return out


if __name__ == "__main__":
    main()
