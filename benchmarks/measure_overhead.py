"""Overhead of the matmul probe over the matmuls it times, measured in one process.

Probe: ``scaling_planner.measure.probes.matmul_probe`` (argument checks, allocation, warm-up, one
timed region per repeat, the ProbeResult). Baseline: a bare loop doing the same work in the same
process: the same matrices made the same way, the same warm-up and repeats, each product timed with
``time.perf_counter``. Probe and baseline alternate for several rounds (ABAB...) so drift in the
machine's load hits both; medians over rounds are compared.

Reported per configuration:
- time overhead = best-of-rounds probe ``total_s`` / best-of-rounds baseline wall time - 1 (target
  < 5 %; other processes only add time, so the minimum estimates each side's own cost; the ratio
  of medians is reported beside it);
- rate ratio = median of (probe median FLOP/s / baseline median FLOP/s) per round (should be ~1: the
  probe's timing does not bias the rate);
- the probe's own ``1 - timed_s / total_s`` (allocation and warm-up included, so not small by design).
One BLAS/torch thread for the comparison (see below). Also the wall time of the whole default CPU
probe set (``run_probes("cpu")``) in a fresh interpreter with default threads.

    python benchmarks/measure_overhead.py [--rounds 9] [--n 1024]

Prints the ratios and writes benchmarks/results/measure_overhead.json.
"""

from __future__ import annotations

import os

# One BLAS thread on both sides: 2-thread CPU runs are bimodal when other processes share the two cores
# (reference/stack_notes.md §6), which would swamp a few-percent difference. Must precede numpy's import.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from results_io import write_result  # noqa: E402

from scaling_planner.measure.probes import cpu_name, matmul_probe  # noqa: E402

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
TARGET_OVERHEAD_PCT = 5.0


def bare_numpy(dtype: str, n: int, warmup: int, repeats: int) -> tuple[float, list[float]]:
    """Wall seconds of the whole loop (allocation included) and each timed product's seconds."""
    t_start = time.perf_counter()
    np_dtype = {"fp32": np.float32, "fp64": np.float64}[dtype]
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np_dtype), rng.random((n, n), dtype=np_dtype)
    out = np.empty((n, n), dtype=np_dtype)
    for _ in range(warmup):
        np.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return time.perf_counter() - t_start, times


def bare_torch(dtype: str, n: int, warmup: int, repeats: int) -> tuple[float, list[float]]:
    t_start = time.perf_counter()
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, n, generator=g).to(torch_dtype), torch.rand(n, n, generator=g).to(torch_dtype)
    out = torch.empty(n, n, dtype=torch_dtype)
    with torch.inference_mode():
        for _ in range(warmup):
            torch.matmul(a, b, out=out)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.matmul(a, b, out=out)
            times.append(time.perf_counter() - t0)
    return time.perf_counter() - t_start, times


BARE = {"numpy": bare_numpy, "torch-cpu": bare_torch}


def compare(backend: str, dtype: str, n: int, warmup: int, repeats: int, rounds: int) -> dict:
    flops = 2.0 * n**3
    probe_total, bare_total, rate_ratios, probe_internal = [], [], [], []
    probe_rates, bare_rates = [], []
    for r in range(rounds):
        order = ("probe", "bare") if r % 2 == 0 else ("bare", "probe")
        for which in order:
            if which == "probe":
                result = matmul_probe(dtype, backend=backend, n=n, warmup=warmup, repeats=repeats)
                assert result.error is None, result.error
                probe_total.append(result.total_s)
                probe_rates.append(result.median)
                probe_internal.append(1 - result.timed_s / result.total_s)
            else:
                wall_s, times = BARE[backend](dtype, n, warmup, repeats)
                bare_total.append(wall_s)
                bare_rates.append(statistics.median(flops / t for t in times))
        rate_ratios.append(probe_rates[-1] / bare_rates[-1])
    # best of rounds: load from other processes only ever adds time, so the minimum is the estimate of
    # each side's own cost; the medians are kept beside it
    time_ratio = min(probe_total) / min(bare_total)
    overhead_pct = (time_ratio - 1) * 100
    return {
        "backend": backend, "dtype": dtype, "n": n, "warmup": warmup, "repeats": repeats, "rounds": rounds,
        "probe_total_s_best": min(probe_total),
        "bare_loop_s_best": min(bare_total),
        "time_ratio": time_ratio,
        "overhead_pct": overhead_pct,
        "probe_total_s_median": statistics.median(probe_total),
        "bare_loop_s_median": statistics.median(bare_total),
        "time_ratio_of_medians": statistics.median(probe_total) / statistics.median(bare_total),
        "probe_rate_flops_per_s_median": statistics.median(probe_rates),
        "bare_rate_flops_per_s_median": statistics.median(bare_rates),
        "rate_ratio_median": statistics.median(rate_ratios),
        "rate_ratios": rate_ratios,
        "probe_untimed_fraction_median": statistics.median(probe_internal),
        "probe_total_s": probe_total,
        "bare_loop_s": bare_total,
        "meets_target": overhead_pct < TARGET_OVERHEAD_PCT,
    }


DEFAULT_SET_SCRIPT = """
import json, time
t0 = time.perf_counter()
from scaling_planner.measure.probes import run_probes
probes = run_probes("cpu", profile="cpu")
print(json.dumps({"seconds": time.perf_counter() - t0, "probes": [p.model_dump() for p in probes]}))
"""


def default_set_in_fresh_process() -> tuple[float, list[dict]]:
    """Wall time of ``run_probes("cpu")`` as a node would run it: a fresh interpreter, torch imported
    inside, the machine's default threads (the single-thread setting above is not inherited)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                             "MKL_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", DEFAULT_SET_SCRIPT], capture_output=True, text=True, check=True,
                          env=env, cwd=HERE.parent)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["seconds"], out["probes"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--n", type=int, default=1024, help="matrix size (the probe's CPU default)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    # imports and first-call costs out of the way for both sides
    matmul_probe("fp32", backend="torch-cpu", n=64, repeats=1)
    matmul_probe("fp32", backend="numpy", n=64, repeats=1)
    configs = [compare(backend, dtype, args.n, args.warmup, args.repeats, args.rounds)
               for backend, dtype in (("numpy", "fp32"), ("torch-cpu", "fp32"), ("torch-cpu", "bf16"))]
    default_set_s, default_set = default_set_in_fresh_process()
    load_after = os.getloadavg()

    result = {
        "what": "matmul_probe total time vs a bare perf_counter loop of the same matmuls, same process",
        "configs": configs,
        "target_overhead_pct": TARGET_OVERHEAD_PCT,
        "meets_target": all(c["meets_target"] for c in configs),
        "threads": "1 (OMP/OPENBLAS/MKL_NUM_THREADS=1, torch.set_num_threads(1)) for the comparison",
        "default_cpu_probe_set_s": default_set_s,
        "default_cpu_probe_set_note": "fresh interpreter, default threads, torch import included",
        "default_cpu_probe_set": [{k: p[k] for k in ("backend", "dtype", "size", "median", "unit", "spread",
                                                     "fraction_of_peak", "threads", "error")} for p in default_set],
        "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "load_average_before": load_before,
                    "load_average_after": load_after, "python": platform.python_version(),
                    "numpy": np.__version__, "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "command": "python benchmarks/measure_overhead.py",
    }
    for c in configs:
        print(f"{c['backend']:>9} {c['dtype']} n={c['n']}: probe {c['probe_total_s_best'] * 1e3:.1f} ms, "
              f"bare loop {c['bare_loop_s_best'] * 1e3:.1f} ms (best of {c['rounds']}) -> ratio "
              f"{c['time_ratio']:.3f}, overhead {c['overhead_pct']:+.1f}% (target < {TARGET_OVERHEAD_PCT:g}%); "
              f"ratio of medians {c['time_ratio_of_medians']:.3f}; rate probe/bare "
              f"{c['rate_ratio_median']:.3f} ({c['probe_rate_flops_per_s_median'] / 1e9:.0f} vs "
              f"{c['bare_rate_flops_per_s_median'] / 1e9:.0f} GFLOP/s)")
    print(f"default CPU probe set (run_probes('cpu'), {len(default_set)} probes, fresh process, torch import "
          f"included): {default_set_s:.2f} s")
    print(f"load average before {load_before}, after {load_after}")
    write_result("measure_overhead", result)
    return result


if __name__ == "__main__":
    main()
