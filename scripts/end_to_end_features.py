"""Which features earn a place in the end-to-end prior: leave-one-out error of candidate additions.

    python scripts/end_to_end_features.py     # prints the table, writes benchmarks/results/end_to_end_features.json

Each candidate adds one term to the fitted log factor (least absolute deviations, leave-one-out like the prior
itself): log(published / predicted) = mu + beta x feature. A feature would earn its place by lowering the
leave-one-out median |log error| of the shipped model (mechanism 1 counted, mechanisms 2-3 as shipped) by more
than that figure's own jackknife standard error (24 runs make it noisy), without raising the error on the tier C
runs, which no fit sees (the nearest thing here to runs outside the file). The
candidates are the ones the issue names or the data suggests (what a published figure includes, model size,
cluster size, hardware generation, MoE). None passes both: see the printed verdicts.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from scaling_planner.validation import published

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "end_to_end_features.json"
# GPU-hours metered per job (model cards, Table 7, per-trillion rates); the other rows are GPUs x calendar days
METERED = {"Llama 3 8B", "Llama 3 70B", "Llama 4 Scout (17Bx16E)", "Llama 4 Maverick (17Bx128E)", "Granite 3.0 8B",
           "Granite 3.0 2B", "Granite 3.0 3B-A800M (MoE)", "Granite 3.0 1B-A400M (MoE)", "DeepSeek-V2",
           "DeepSeek LLM 67B"}


def features(c) -> dict:
    r = c.run
    return {"metered hours (vs GPUs x calendar days)": float(r.name in METERED),
            "log model size (active)": math.log(r.n_active / 1e10),
            "log GPU count": math.log(c.gpus / 512),
            "Hopper or newer": float(r.profile in ("h100-sxm", "h800-sxm", "b200")),
            "MoE": float(r.experts is not None)}


def lad_loo(y: np.ndarray, X: np.ndarray) -> float:
    def fit(yy, XX):
        b0 = np.linalg.lstsq(XX, yy, rcond=None)[0]
        return minimize(lambda b: np.sum(np.abs(yy - XX @ b)), b0, method="Nelder-Mead",
                        options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 4000}).x
    errs = []
    for i in range(y.size):
        keep = np.arange(y.size) != i
        errs.append(abs(y[i] - X[i] @ fit(y[keep], X[keep])))
    return float(np.median(errs))


def lad_fit(y: np.ndarray, X: np.ndarray) -> np.ndarray:
    b0 = np.linalg.lstsq(X, y, rcond=None)[0]
    return minimize(lambda b: np.sum(np.abs(y - X @ b)), b0, method="Nelder-Mead",
                    options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 4000}).x


def main() -> int:
    def residuals(cs):
        return np.log(np.array([c.run.gpu_hours for c in cs]) / np.array([c.hours[published.STACK] for c in cs]))

    cs = [c for c in published.curves() if c.run.role == published.SCORED]
    held = [c for c in published.curves() if c.run.role.startswith("tier C")]
    y, yh = residuals(cs), residuals(held)
    out = {}
    for name in [None, *features(cs[0])]:
        cols = [] if name is None else [name]
        X = np.column_stack([np.ones(y.size)] + [[features(c)[k] for c in cs] for k in cols])
        Xh = np.column_stack([np.ones(yh.size)] + [[features(c)[k] for c in held] for k in cols])
        beta = lad_fit(y, X)
        out["shipped model (constant factor)" if name is None else f"+ {name}"] = {
            "loo_median_abs_log_error": lad_loo(y, X),
            "tier_c_median_abs_log_error": float(np.median(np.abs(yh - Xh @ beta))), "coefficients": beta.tolist()}
    base = out["shipped model (constant factor)"]
    loo_abs = np.abs(published.leave_one_out().log_error)
    jack = [np.median(np.delete(loo_abs, i)) for i in range(loo_abs.size)]
    noise = float(np.std(jack) * math.sqrt(loo_abs.size - 1))
    base["jackknife_standard_error"] = noise
    print(f"jackknife standard error of the shipped model's leave-one-out median: {noise:.3f}")
    width = max(map(len, out))
    for k, v in out.items():
        if k.startswith("shipped"):
            verdict = ""
        elif v["loo_median_abs_log_error"] >= base["loo_median_abs_log_error"]:
            verdict = "  no leave-one-out gain: left out"
        elif v["loo_median_abs_log_error"] > base["loo_median_abs_log_error"] - noise:
            verdict = "  a gain within the noise: left out"
        elif v["tier_c_median_abs_log_error"] > base["tier_c_median_abs_log_error"]:
            verdict = "  lowers leave-one-out but raises the tier C error: left out"
        else:
            verdict = "  earns its place"
        print(f"{k.ljust(width)}  LOO median |log error| {v['loo_median_abs_log_error']:.3f}, tier C "
              f"{v['tier_c_median_abs_log_error']:.3f}{verdict}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
