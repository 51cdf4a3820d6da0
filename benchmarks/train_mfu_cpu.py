"""Tokens/s and MFU of the small GPT (``scaling_planner.train``) on this CPU, beside a matmul baseline.

For each thread count: a torch fp32 n=1024 matmul rate (2 warm-ups, 5 timed, median of 3; the
baseline, measured in the same process just before), then ``train_gpt`` of a ~1M non-embedding
parameter GPT (``config_for_params(1e6)``, T=128, batch 16, 60 steps, fp32) on the shipped corpus.
Prints tokens/s, achieved model FLOP/s, MFU against the *nominal* ``cpu`` profile peak, and the ratio
achieved model FLOP/s / measured matmul FLOP/s (what fraction of a big GEMM's rate the whole training
step reaches). Records ``os.getloadavg()``: other processes on the 2 cores cut these numbers a lot
(reference/stack_notes.md section 6).

Writes benchmarks/results/train_mfu_cpu.json. Run: ``.venv/bin/python benchmarks/train_mfu_cpu.py``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch
from results_io import write_result

from scaling_planner.train import Corpus, config_for_params, train_gpt


def matmul_flops_per_s(n: int = 1024, reps: int = 5, warm: int = 2) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(warm):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def main() -> None:
    corpus = Corpus.load()
    cfg = config_for_params(1e6, seq_len=128)
    batch, steps = 16, 60
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        baseline = statistics.median(matmul_flops_per_s() for _ in range(3))
        load = os.getloadavg()
        res = train_gpt(cfg, tokens=steps * batch * cfg.seq_len, batch_size=batch, lr=1e-3, seed=0,
                        corpus=corpus, eval_batches=2, threads=threads)
        m = res.mfu
        row = {
            "threads": threads, "load_average_before": list(load),
            "matmul_fp32_n1024_flops_per_s": baseline,
            "tokens_per_s": m.tokens_per_s, "achieved_model_flops_per_s": m.achieved_flops_per_s,
            "mfu_vs_nominal_cpu_peak": m.mfu, "peak_flops_per_s": m.peak_flops_per_s,
            "ratio_achieved_to_matmul": m.achieved_flops_per_s / baseline,
            "timed_steps": m.steps, "elapsed_s": m.elapsed_s, "final_val_loss": res.final_val_loss,
        }
        rows.append(row)
        print(f"threads {threads}: {m.tokens_per_s:,.0f} tokens/s, {m.achieved_flops_per_s / 1e9:.1f} GFLOP/s model, "
              f"MFU {m.mfu:.1%} of the nominal {m.peak_flops_per_s / 1e9:.0f} GFLOP/s cpu peak; matmul baseline "
              f"{baseline / 1e9:.1f} GFLOP/s -> ratio {row['ratio_achieved_to_matmul']:.2f}; load {load[0]:.2f}")
    out = {
        "benchmark": "train_mfu_cpu", "python": platform.python_version(), "torch": torch.__version__,
        "cpu": res.mfu.device_name, "config": cfg.model_dump(), "params_nonembedding": cfg.params_nonembedding(),
        "flops_per_token": cfg.flops_per_token(), "flops_convention": res.mfu.flops_convention,
        "batch_size": batch, "steps": steps, "results": rows,
    }
    write_result("train_mfu_cpu", out)


if __name__ == "__main__":
    main()
