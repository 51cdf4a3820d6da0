"""Event simulation of continuous batching: exactness against a per-token loop, Little's law,
zero-load latencies equal to the per-iteration model, chunked prefill, analytic agreement."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_planner.base.errors import InfeasibleError, InputError
from scaling_planner.hardware.profiles import get_profile
from scaling_planner.simulate.architecture import get_arch
from scaling_planner.simulate.serving.eventsim import _Costs, simulate, simulate_per_token
from scaling_planner.simulate.serving.iteration import build_model
from scaling_planner.simulate.serving.workload import poisson_workload, trace_workload


@pytest.fixture(scope="module")
def m8b():
    return build_model(get_arch("llama3-8b"), get_profile("h100-sxm"))


@pytest.fixture(scope="module")
def mixtral():
    return build_model(get_arch("mixtral-8x7b"), get_profile("h100-sxm"), tp=2)


@pytest.mark.parametrize("name", ["m8b", "mixtral"])
def test_scalar_costs_equal_vectorised_model(name, request):
    m = request.getfixturevalue(name)
    c = _Costs(m)
    rng = np.random.default_rng(0)
    for _ in range(50):
        nd, npre = int(rng.integers(0, 300)), float(rng.integers(0, 4000))
        kv = float(rng.integers(0, 500_000)) if nd else 0.0
        pairs = float(rng.integers(0, 4_000_000))
        if nd + npre == 0:
            continue
        want = float(m.iteration_time_s(nd, kv, npre, pairs))
        assert c.iteration(nd + npre, kv, kv + pairs) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("qps", [1.0, 8.0, 40.0])
def test_event_simulation_equals_per_token_loop(m8b, qps):
    # Same scheduler, same workload: the closed-form runs of decode steps must reproduce the
    # step-by-step loop to rounding (1e-9 s over thousands of steps).
    wl = poisson_workload(qps, 400, 900, 120, prompt_dist="uniform", output_dist="exponential", seed=3)
    fast = simulate(m8b, wl, max_batch=64)
    slow = simulate_per_token(m8b, wl, max_batch=64)
    np.testing.assert_allclose(fast.first_token_s, slow.first_token_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.finish_s, slow.finish_s, rtol=0, atol=1e-9)
    assert fast.iterations == slow.iterations


def test_kv_block_budget_limits_batch_and_matches_loop(m8b):
    # 60 blocks of 16 tokens and 512-token sequences (32 blocks each): one sequence at a time, so
    # each request is admitted only once the previous one has finished
    wl = poisson_workload(50.0, 60, 400, 112, seed=1)
    fast = simulate(m8b, wl, kv_blocks=60)
    assert np.all(fast.admit_s[1:] >= fast.finish_s[:-1])
    assert np.all(fast.queue_s[1:] > 0)
    with pytest.raises(InfeasibleError, match="KV blocks"):
        simulate(m8b, wl, kv_blocks=20)


@pytest.mark.parametrize("chunked", [False, True])
def test_littles_law(m8b, chunked):
    # L (time average of the number in system, integrated by the event loop) = lambda x W (from the
    # per-request timestamps). Exact when every request completes: the two sides are computed
    # independently, so this checks the bookkeeping of arrivals, admissions and departures.
    wl = poisson_workload(12.0, 5000, 1024, 256, prompt_dist="uniform", output_dist="exponential", seed=7)
    s = simulate(m8b, wl, chunked_prefill=chunked).summary()
    assert s["little_L"] == pytest.approx(s["little_lambda_W"], rel=1e-9)
    assert s["little_L"] > 5  # a loaded system, not a trivial one


def test_zero_load_latencies_equal_the_iteration_model(m8b):
    # one request at a time (arrivals 100 s apart): TTFT = prefill, TPOT = mean decode step
    wl = trace_workload([0.0, 100.0, 200.0], [1000, 1000, 1000], [101, 101, 101])
    r = simulate(m8b, wl)
    np.testing.assert_allclose(r.ttft_s, float(m8b.prefill_time_s(1000)), rtol=1e-12)
    steps = m8b.decode_step_time_s(1, 1000 + np.arange(1, 101))
    np.testing.assert_allclose(r.tpot_s, float(np.mean(steps)), rtol=1e-9)
    assert np.all(r.queue_s == 0)


def test_chunked_prefill_keeps_decodes_flowing(m8b):
    # Sarathi-Serve: mixing prompt chunks into decode iterations removes the decode stalls, so the
    # tail time-per-output-token drops at the same load.
    wl = poisson_workload(20.0, 4000, 2048, 256, output_dist="exponential", seed=11)
    plain = simulate(m8b, wl).summary()
    chunked = simulate(m8b, wl, chunked_prefill=True, chunk_tokens=512).summary()
    assert chunked["tpot_s"]["p99"] < 0.7 * plain["tpot_s"]["p99"]


def test_load_raises_latency_and_batch(m8b):
    out = []
    for qps in (2.0, 10.0, 25.0):
        wl = poisson_workload(qps, 3000, 1024, 256, seed=5)
        out.append(simulate(m8b, wl).summary())
    assert out[0]["mean_batch"] < out[1]["mean_batch"] < out[2]["mean_batch"]
    assert out[0]["tpot_s"]["p50"] < out[1]["tpot_s"]["p50"] < out[2]["tpot_s"]["p50"]


def test_workload_validation():
    with pytest.raises(InputError):
        poisson_workload(0.0, 10, 100, 10)
    with pytest.raises(InputError):
        poisson_workload(1.0, 10, 100, 10, output_dist="zipf")
    with pytest.raises(InputError):
        trace_workload([0.0, 1.0], [10, 0], [5, 5])
