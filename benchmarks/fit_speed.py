"""Speed of the fitter against the published procedure, measured in one process.

Ours: the full 4500-start Hoffmann grid (all starts in one batched BFGS) and a 4000-replicate
bootstrap (all replicates at once), on the 240 Chinchilla runs Epoch keep.
Baseline: Epoch's procedure (Besiroglu et al. 2024, data_analysis.ipynb): one scipy L-BFGS-B per
grid start with finite-difference gradients, and one scipy BFGS per bootstrap replicate with an
exact gradient from Hoffmann's values; timed on an evenly spaced sample and extrapolated.

    python benchmarks/fit_speed.py [--sample 30]

Prints the ratios and writes benchmarks/results/fit_speed.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from results_io import write_result
from scipy.optimize import minimize
from scipy.special import logsumexp

from scaling_planner.laws.fit import bootstrap, fit_law, hoffmann_grid
from scaling_planner.laws.runs import load_runs

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "chinchilla_hoffmann_runs.csv"
HOFFMANN_TEX = np.array([0.5267228, 6.0073404, 6.0179186, 0.33917084, 0.2849083])


def published_objective(theta, logN, logD, logL, weights, delta=1e-3):
    """Epoch's objective for one parameter vector: summed Huber on log L - LSE(a - αlogN, b - βlogD, e)."""
    e, a, b, alpha, beta = theta
    pred = logsumexp(np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)]), axis=0)
    r = logL - pred
    huber = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    return float(np.sum(weights * huber))


def published_gradient(theta, logN, logD, logL, weights, delta=1e-3):
    e, a, b, alpha, beta = theta
    t = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])
    pred = logsumexp(t, axis=0)
    p = np.exp(t - pred)
    psi = np.clip(logL - pred, -delta, delta) * weights
    return np.array([-(psi * p[2]).sum(), -(psi * p[0]).sum(), -(psi * p[1]).sum(),
                     (psi * p[0] * logN).sum(), (psi * p[1] * logD).sum()])


def timed(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=30, help="starts / replicates timed for the baseline")
    parser.add_argument("--replicates", type=int, default=4000)
    args = parser.parse_args(argv)

    runs = load_runs(DATA).drop_highest(5)
    logN, logD, logL = np.log(runs.N), np.log(runs.D), np.log(runs.loss)
    ones = np.ones(len(runs))

    grid_s, fit = timed(lambda: fit_law(runs))
    boot_s, _booted = timed(lambda: bootstrap(runs, fit_law(runs), args.replicates, seed=42), repeats=1)
    boot_s -= grid_s  # the call above includes one grid fit

    grid = hoffmann_grid()
    sample = grid[np.linspace(0, len(grid) - 1, args.sample).astype(int)]
    t = time.perf_counter()
    best = np.inf
    for x0 in sample:
        res = minimize(published_objective, x0, args=(logN, logD, logL, ones), method="L-BFGS-B")
        if res.success:
            best = min(best, res.fun)
    per_start_s = (time.perf_counter() - t) / len(sample)
    baseline_grid_s = per_start_s * len(grid)

    rng = np.random.default_rng(42)
    n = len(runs)
    t = time.perf_counter()
    for _ in range(args.sample):
        w = rng.multinomial(n, np.full(n, 1 / n)).astype(float)
        minimize(published_objective, HOFFMANN_TEX, args=(logN, logD, logL, w), jac=published_gradient,
                 method="BFGS")
    per_rep_s = (time.perf_counter() - t) / args.sample
    baseline_boot_s = per_rep_s * args.replicates

    result = {
        "data": "240 Chinchilla runs (Epoch outlier rule)",
        "fit": {k: round(v, 6) for k, v in fit.params.items()},
        "objective": fit.objective,
        "grid_starts": len(grid),
        "ours_grid_s": round(grid_s, 3),
        "baseline_grid_s_extrapolated": round(baseline_grid_s, 1),
        "baseline_per_start_s": round(per_start_s, 4),
        "grid_speedup": round(baseline_grid_s / grid_s, 1),
        "bootstrap_replicates": args.replicates,
        "ours_bootstrap_s": round(boot_s, 3),
        "baseline_bootstrap_s_extrapolated": round(baseline_boot_s, 1),
        "baseline_per_replicate_s": round(per_rep_s, 4),
        "bootstrap_speedup": round(baseline_boot_s / boot_s, 1),
        "baseline_sample": args.sample,
        "targets": {"grid_s": 2.0, "bootstrap_s": 10.0},
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "python": platform.python_version(),
                    "numpy": np.__version__},
        "command": "python benchmarks/fit_speed.py",
    }
    print(f"full 4500-start grid: ours {grid_s:.2f} s, published procedure ~{baseline_grid_s:.0f} s "
          f"(extrapolated from {args.sample} starts): {baseline_grid_s / grid_s:.0f}x")
    print(f"{args.replicates}-replicate bootstrap: ours {boot_s:.2f} s, published procedure ~{baseline_boot_s:.0f} s "
          f"(extrapolated from {args.sample} replicates): {baseline_boot_s / boot_s:.0f}x")
    write_result("fit_speed", result)
    return result


if __name__ == "__main__":
    main()
