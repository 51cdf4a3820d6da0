"""Speed of the serving simulation: the event simulation against a straightforward per-token loop.

1. Event simulation of continuous batching (``serving_sim.simulate``): 100,000 Poisson requests of
   Llama 3 8B on one H100 (prompts uniform around 1024 tokens, outputs exponential around 256) at a
   moderate load; target 2 s or less. Baseline: ``simulate_per_token`` (one Python iteration per
   decode step, a loop over the running requests, the vectorised iteration model per step) on the
   first 2,000 requests of the same workload (it produces the same timestamps; the tests check it).
2. Capacity search for one configuration (Llama 3 70B, TP 4 on H100, p99 TTFT 2 s / TPOT 0.2 s,
   2,000 simulated requests per probe): ``simulated_max_qps``; target 1 s or less. Baseline: the same
   bisection with the per-token loop.

Prints the ratios and writes benchmarks/results/serving_speed.json. Run:
``.venv/bin/python benchmarks/serving_speed.py``.
"""

from __future__ import annotations

import os
import platform
import sys
import time

from results_io import write_result

from scaling_planner.hardware.profiles import get_profile
from scaling_planner.simulate.architecture import get_arch
from scaling_planner.simulate.serving import eventsim as ss
from scaling_planner.simulate.serving import iteration as sv
from scaling_planner.simulate.serving import load as ld


def best_of(fn, repeat=3):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> int:
    h100 = get_profile("h100-sxm")
    m8 = sv.build_model(get_arch("llama3-8b"), h100)
    n_fast, n_slow, qps = 100_000, 2_000, 20.0
    wl = ss.poisson_workload(qps, n_fast, 1024, 256, prompt_dist="uniform", output_dist="exponential", seed=1)
    wl_small = ss.Workload(wl.arrival_s[:n_slow], wl.prompt_tokens[:n_slow], wl.output_tokens[:n_slow])

    t_fast, res = best_of(lambda: ss.simulate(m8, wl))
    t_slow, _ = best_of(lambda: ss.simulate_per_token(m8, wl_small), repeat=1)
    t_fast_small, _ = best_of(lambda: ss.simulate(m8, wl_small))
    summ = res.summary()
    sim = {
        "requests": n_fast,
        "seconds": t_fast,
        "requests_per_s": n_fast / t_fast,
        "decode_iterations": res.iterations,
        "baseline_requests": n_slow,
        "baseline_seconds": t_slow,
        "baseline_requests_per_s": n_slow / t_slow,
        "same_workload_fast_seconds": t_fast_small,
        "ratio_requests_per_s": (n_fast / t_fast) / (n_slow / t_slow),
        "target_seconds": 2.0,
        "meets_target": t_fast <= 2.0,
        "workload": {"model": "llama3-8b", "gpu": "h100-sxm", "qps": qps, "prompt": "uniform mean 1024",
                     "output": "exponential mean 256", "mean_batch": summ["mean_batch"],
                     "p99_tpot_s": summ["tpot_s"]["p99"]},
    }

    m70 = sv.build_model(get_arch("llama3-70b"), h100, tp=4)
    bmax = m70.max_batch(1280)
    guess, _ = ld.analytic_capacity(m70, 1024, 256, bmax, 2.0, 0.2)

    def search(sim_fn):
        orig = ss.simulate
        ss.simulate = sim_fn
        try:
            return ld.simulated_max_qps(m70, 1024, 256, 2.0, 0.2, guess_qps=guess, max_batch=bmax, requests=2000)
        finally:
            ss.simulate = orig

    t_cap, (q_fast, _) = best_of(lambda: search(ss.simulate))

    def per_token(model, workload, *, max_batch, chunked_prefill=False, **_):
        return ss.simulate_per_token(model, workload, max_batch=max_batch)

    t_cap_slow, (q_slow, _) = best_of(lambda: search(per_token), repeat=1)
    cap = {
        "configuration": ("llama3-70b, TP 4 x h100-sxm, 1024+256 tokens, p99 TTFT 2 s, p99 TPOT 0.2 s, "
                          "2000 requests/probe"),
        "seconds": t_cap,
        "max_qps": q_fast,
        "analytic_max_qps": guess,
        "baseline_seconds": t_cap_slow,
        "baseline_max_qps": q_slow,
        "ratio": t_cap_slow / t_cap,
        "target_seconds": 1.0,
        "meets_target": t_cap <= 1.0,
    }
    out = {
        "event_simulation": sim,
        "capacity_search": cap,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"event simulation: {n_fast:,} requests in {t_fast:.3f} s = {n_fast / t_fast:,.0f} req/s "
          f"(target <= 2 s); per-token loop {n_slow / t_slow:,.0f} req/s; ratio {sim['ratio_requests_per_s']:.0f}x")
    print(f"capacity search: {t_cap:.3f} s (target <= 1 s), max QPS {q_fast:.3f}; per-token loop {t_cap_slow:.1f} s "
          f"(max QPS {q_slow:.3f}); ratio {cap['ratio']:.0f}x")
    write_result("serving_speed", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
