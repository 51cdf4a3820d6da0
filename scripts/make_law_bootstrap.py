"""Regenerate scaling_planner/laws/data/besiroglu2024_bootstrap.npz.

Besiroglu et al. 2024's bootstrap (Epoch, data_analysis.ipynb cells 15 and 21): 4000 resamples
with replacement of the 240 Chinchilla runs left after dropping the 5 highest-loss points, each
refitted with the summed Huber (delta 1e-3) objective. Here each replicate is fitted by
scaling-planner's own fitter (all replicates at once); the draws ship with the besiroglu2024
preset so plans can carry the law's uncertainty. Run from the repository root:

    python scripts/make_law_bootstrap.py [../shared/data/chinchilla_hoffmann_runs.csv]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from scaling_planner.laws.fit import bootstrap, fit_law, interval
from scaling_planner.laws.runs import load_runs

REPLICATES = 4000
SEED = 42


def main(csv_path: str = "../shared/data/chinchilla_hoffmann_runs.csv") -> None:
    runs = load_runs(csv_path).drop_highest(5)
    fit = bootstrap(runs, fit_law(runs), REPLICATES, seed=SEED)
    out = Path(__file__).resolve().parents[1] / "scaling_planner" / "laws" / "data" / "besiroglu2024_bootstrap.npz"
    np.savez_compressed(out, samples=fit.samples.astype(np.float64), seed=SEED, replicates=REPLICATES)
    for i, name in enumerate(("E", "A", "B", "alpha", "beta")):
        s = interval(fit.samples[:, i])
        print(f"{name:6s} median {s['median']:.5g}  se {s['se']:.4g}  95% [{s['low']:.5g}, {s['high']:.5g}]")
    print(f"wrote {out} ({fit.samples.shape[0]} draws, {fit.bootstrap_failed} failed)")


if __name__ == "__main__":
    main(*sys.argv[1:])
