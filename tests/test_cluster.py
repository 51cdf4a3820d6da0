"""measure.cluster against real Ray: fake GPU slots on one node, several nodes, a node killed during a
measurement, a probe timeout; stragglers and totals as pure functions.

NVML: the Ray workers are separate processes, so monkeypatching ``pynvml`` in this process would not
reach them. The fake-GPU test installs its ``pynvml`` fake in every worker through Ray's own
``runtime_env={"worker_process_setup_hook": ...}``: the only thing faked is ``pynvml``'s functions,
inside the processes that call them; Ray scheduling, the placement groups, torch (which honestly sees
no CUDA device) and ``measure.nvml`` are real. The other tests use the real NVML of this machine
(no library: ``available=False`` and the reason).

Slowness for the kill and timeout tests comes from ``probe_fn``, a wrapper around the real
``run_probes`` that sleeps on one node first (the real probes still run everywhere else).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from scaling_planner.base.errors import InputError, MeasurementError
from scaling_planner.measure.cluster import _local_cuda_index, measure_cluster
from scaling_planner.measure.models import DeviceMeasurement, NodeMeasurement, ProbeResult
from scaling_planner.measure.ray_session import check_reachable as _check_reachable
from scaling_planner.measure.summary import cluster_totals, find_stragglers

ray = pytest.importorskip("ray")

RAY_ARGS = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
H100_NVML_NAME = "NVIDIA H100 80GB HBM3"


# ---- helpers that travel to the Ray workers (closures are pickled by value) ---------------------------

def fake_nvml_hook(count: int, name: str = H100_NVML_NAME):
    """A worker_process_setup_hook that replaces pynvml's functions with a host of ``count`` GPUs."""

    def install() -> None:
        from types import SimpleNamespace

        import pynvml

        def not_supported(*_args):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

        fakes = {
            "nvmlInit": lambda: None, "nvmlShutdown": lambda: None,
            "nvmlSystemGetDriverVersion": lambda: "550.54.15", "nvmlSystemGetCudaDriverVersion": lambda: 12040,
            "nvmlDeviceGetCount": lambda: count, "nvmlDeviceGetHandleByIndex": lambda i: ("h", i),
            "nvmlDeviceGetName": lambda h: name, "nvmlDeviceGetUUID": lambda h: f"GPU-fake-{h[1]}",
            "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=85520809984, used=(h[1] + 1) << 20, free=0),
            "nvmlDeviceGetCudaComputeCapability": lambda h: (9, 0),
        }
        for call in ("nvmlDeviceGetClockInfo", "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetPowerUsage",
                     "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetTemperature",
                     "nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetNvLinkState", "nvmlDeviceGetCurrPcieLinkGeneration",
                     "nvmlDeviceGetCurrPcieLinkWidth", "nvmlGpmQueryDeviceSupport"):
            fakes[call] = not_supported
        for attr, fn in fakes.items():
            setattr(pynvml, attr, fn)

    return install


def sleep_first_on(node_id: str, sleep_s: float, marker: str | None = None):
    """A probe_fn: the real run_probes, after ``sleep_s`` on ``node_id`` (touching ``marker`` first)."""

    def probe_fn(device, **kwargs):
        import pathlib
        import time

        import ray

        from scaling_planner.measure.probes import run_probes

        if ray.get_runtime_context().get_node_id() == node_id:
            if marker:
                pathlib.Path(marker).write_text("started")
            time.sleep(sleep_s)
        return run_probes(device, **kwargs)

    return probe_fn


def raising_probe_fn():
    def probe_fn(device, **kwargs):
        raise RuntimeError(f"probe exploded on {device}")

    return probe_fn


# ---- (a) one node, four fake GPU slots --------------------------------------------------------------------

def test_local_fake_gpu_slots_each_get_one_task_and_report_no_cuda_honestly():
    if ray.is_initialized():
        pytest.skip("another test left Ray running in this process")
    ray.init(num_cpus=1, num_gpus=4, runtime_env={"worker_process_setup_hook": fake_nvml_hook(4)}, **RAY_ARGS)
    try:
        node_id = ray.get_runtime_context().get_node_id()
        m = measure_cluster(quick=True, probe_timeout_s=60)
        assert ray.is_initialized(), "measure_cluster must not shut down a session it did not start"
    finally:
        ray.shutdown()

    assert [n.node_id for n in m.nodes] == [node_id]
    devices = m.nodes[0].devices
    # four distinct slots reached four tasks: the device label is ray.get_gpu_ids() inside each task
    assert [d.device for d in devices] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    for slot, dev in enumerate(devices):
        assert dev.node_id == node_id
        assert dev.status == "failed"
        assert f"Ray GPU slot {slot} has no CUDA device visible" in dev.error
        assert "torch.cuda.is_available() is False" in dev.error
        assert f"CUDA_VISIBLE_DEVICES='{slot}'" in dev.error
        # NVML as read inside the worker, matched by slot: name, profile, per-device memory
        assert dev.name == H100_NVML_NAME and dev.profile == "h100-sxm"
        assert dev.nvml.index == slot and dev.nvml.uuid == f"GPU-fake-{slot}"
        assert dev.nvml.memory_used_bytes == (slot + 1) << 20
        assert dev.probes == []
    assert m.partial and len(m.missing) == 4
    assert all("no CUDA device visible" in line for line in m.missing)
    assert m.totals.gpus == 4 and m.totals.devices == 4 and m.totals.devices_ok == 0
    assert m.totals.achieved_flops_per_s == {}
    assert m.stragglers == []


# ---- (b, c, d) several nodes -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("another test left Ray running in this process")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False})
    gpu_node = c.add_node(num_cpus=1, num_gpus=2)
    cpu_node = c.add_node(num_cpus=1)
    ray.init(address=c.address, **{k: v for k, v in RAY_ARGS.items() if k != "include_dashboard"})
    c.wait_for_nodes()
    ids = {"head": c.head_node.node_id, "gpu": gpu_node.node_id, "cpu": cpu_node.node_id}
    try:
        yield c, ids
    finally:
        ray.shutdown()
        c.shutdown()


def _node(m, node_id: str) -> NodeMeasurement:
    return next(n for n in m.nodes if n.node_id == node_id)


def test_several_nodes_report_per_node(cluster):
    _, ids = cluster
    m = measure_cluster(quick=True, dtypes=["fp32", "bf16"], probe_timeout_s=60)

    head = _node(m, ids["head"])
    assert head.alive and head.devices == []
    assert any(ids["head"][:8] in note and "nothing to measure" in note for note in m.notes)

    gpu = _node(m, ids["gpu"])
    assert [d.device for d in gpu.devices] == ["cuda:0", "cuda:1"]
    for dev in gpu.devices:
        assert dev.node_id == ids["gpu"] and dev.status == "failed"
        assert "no CUDA device visible" in dev.error and "NVML" in dev.error  # this host's real NVML: none
        assert dev.nvml is None and dev.name is None
    assert gpu.resources["GPU"] == 2.0

    cpu = _node(m, ids["cpu"])
    (dev,) = cpu.devices
    assert dev.node_id == ids["cpu"], "the CPU task must run on the node it was pinned to"
    assert dev.device == "cpu" and dev.profile == "cpu" and dev.status == "ok" and dev.name
    matmuls = {p.dtype: p for p in dev.probes if p.kind == "matmul" and p.error is None}
    assert set(matmuls) == {"fp32", "bf16"}
    for p in matmuls.values():
        assert p.median > 0 and p.peak and p.fraction_of_peak == pytest.approx(p.median / p.peak)
    assert any(p.kind == "memory_bandwidth" and p.error is None and p.median > 0 for p in dev.probes)

    alive = [n for n in m.nodes if n.alive]
    assert len(alive) == 3 and m.totals.nodes_alive == 3
    assert m.totals.gpus == 2 and m.totals.devices_ok == 1
    assert m.totals.achieved_flops_per_s == {d: dev.best_matmul(d).median for d in ("fp32", "bf16")}
    assert m.partial and len(m.missing) == 2
    assert all(x.startswith(f"node {ids['gpu'][:8]} cuda:") and ": failed: " in x for x in m.missing)
    assert m.load_average is not None and len(m.load_average) == 3
    assert m.measured_at.endswith("Z") and m.elapsed_s > 0


def test_probe_timeout_is_reported_and_does_not_wait_for_the_probe(cluster):
    _, ids = cluster
    sleep_s = 300.0
    m = measure_cluster(quick=True, dtypes=["fp32"], probe_timeout_s=4,
                        probe_fn=sleep_first_on(ids["cpu"], sleep_s))
    (dev,) = _node(m, ids["cpu"]).devices
    assert dev.status == "timeout" and "no result within 4 s" in dev.error
    assert dev.device == "cpu" and dev.node_id == ids["cpu"]
    assert m.partial and any(x.startswith(f"node {ids['cpu'][:8]} cpu: timeout") for x in m.missing)
    assert _node(m, ids["cpu"]).alive
    assert m.elapsed_s < sleep_s  # the call returned at its deadline, not when the sleeping probe would have


def test_a_probe_that_raises_is_a_failed_device_with_its_identity(cluster):
    _, ids = cluster
    m = measure_cluster(quick=True, probe_timeout_s=60, probe_fn=raising_probe_fn())
    (dev,) = _node(m, ids["cpu"]).devices
    assert dev.status == "failed" and dev.error == "RuntimeError: probe exploded on cpu"
    assert dev.node_id == ids["cpu"] and dev.hostname and dev.name


@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
def test_node_killed_during_measurement_gives_a_partial_result(cluster, tmp_path: Path, graceful: bool):
    """SIGTERM: the raylet tells the GCS it is going. SIGKILL: the task fails with NodeDiedError well before
    the GCS health check marks the node dead; Ray's error alone must mark it dead."""
    c, ids = cluster
    victim = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    marker = tmp_path / "victim-started"
    events = []

    def progress(done: int, total: int, label: str) -> None:
        events.append(label)
        if label.startswith(f"node {ids['cpu'][:8]} cpu"):  # the survivor reported: now kill the victim
            deadline = time.monotonic() + 60
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert marker.exists(), "the victim's probe never started"
            c.remove_node(victim, allow_graceful=graceful)

    sleep_s = 300.0
    m = measure_cluster(quick=True, dtypes=["fp32"], probe_timeout_s=120, progress=progress,
                        probe_fn=sleep_first_on(victim.node_id, sleep_s, str(marker)))

    dead = _node(m, victim.node_id)
    assert dead.alive is False and dead.error == "died during the measurement"
    (lost,) = dead.devices
    assert lost.status == "failed" and lost.device == "cpu"
    assert lost.error.startswith("NodeDiedError: ") or "died during the measurement" in lost.error
    assert m.partial and any(x.startswith(f"node {victim.node_id[:8]} cpu: failed") for x in m.missing)
    # what finished is kept
    (kept,) = _node(m, ids["cpu"]).devices
    assert kept.status == "ok" and kept.best_matmul("fp32").median > 0
    assert m.totals.devices_ok == 1 and m.totals.achieved_flops_per_s["fp32"] == kept.best_matmul("fp32").median
    assert m.elapsed_s < sleep_s
    assert events[0].endswith("submitted") and len(events) == 1 + m.totals.devices

    if not graceful:
        return  # the GCS may still list a SIGKILLed node alive for a while (health-check period)
    # the next measurement lists the dead node, does not try to measure it, and does not count it missing
    again = measure_cluster(quick=True, dtypes=["fp32"], probe_timeout_s=60)
    gone = _node(again, victim.node_id)
    assert gone.alive is False and gone.devices == [] and gone.error.startswith("dead before the measurement")
    assert not any(victim.node_id[:8] in x for x in again.missing)
    assert any(victim.node_id[:8] in note and "already dead" in note for note in again.notes)
    assert again.totals.nodes_alive == 3 and again.totals.nodes == 3 + sum(not n.alive for n in again.nodes)


# ---- arguments and connection (no Ray needed) -------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "field"), [
    ({"dtypes": ["fp4"]}, "dtypes"), ({"dtypes": []}, "dtypes"), ({"probe_timeout_s": 0}, "probe_timeout_s"),
    ({"probe_timeout_s": float("nan")}, "probe_timeout_s"), ({"straggler_margin": 1.0}, "straggler_margin"),
    ({"straggler_margin": -0.1}, "straggler_margin"),
])
def test_bad_arguments_raise_input_error_before_ray_starts(kwargs, field):
    was = ray.is_initialized()
    with pytest.raises(InputError) as info:
        measure_cluster(**kwargs)
    assert info.value.field == field
    assert ray.is_initialized() == was


def test_unreachable_address_is_a_one_line_measurement_error():
    with pytest.raises(MeasurementError) as info:
        _check_reachable("127.0.0.1:1", timeout_s=5)
    assert "127.0.0.1:1" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(MeasurementError, match="expected HOST:PORT"):
        _check_reachable("nonsense", timeout_s=1)
    _check_reachable("auto", timeout_s=1)  # left to Ray


def test_local_cuda_index_follows_cuda_visible_devices():
    assert _local_cuda_index(2, None) == 2
    assert _local_cuda_index(2, "2") == 0
    assert _local_cuda_index(6, "4,5,6,7") == 2


# ---- (e) stragglers and totals from constructed measurements ----------------------------------------------

def _matmul(dtype: str, rate: float, n: int = 1024, error: str | None = None) -> ProbeResult:
    return ProbeResult(kind="matmul", backend="torch-cuda", dtype=dtype, size=n, unit="flops_per_s",
                       median=rate, samples=[rate], spread=0.0, warmup=1, repeats=1, timed_s=1.0, total_s=1.0,
                       error=error)


def _dev(node: str, index: int, rates: dict[str, float], profile: str = "h100-sxm", status: str = "ok",
         extra: list[ProbeResult] = ()) -> DeviceMeasurement:
    return DeviceMeasurement(node_id=node, device=f"cuda:{index}", profile=profile, status=status,
                             probes=[_matmul(d, r) for d, r in rates.items()] + list(extra))


def test_stragglers_are_devices_below_their_peers_median_by_more_than_the_margin():
    bf16 = [700e12, 710e12, 690e12, 705e12, 600e12, 560e12]
    devices = [_dev("n1" if i < 3 else "n2", i % 3, {"bf16": r, "fp32": 50e12}) for i, r in enumerate(bf16)]
    median = statistics.median(bf16)  # 697.5e12
    found = find_stragglers(devices, margin=0.10)
    # 600 is 14% below, 560 is 20% below; 690 is 1% below; fp32 is identical everywhere
    assert [(s.node_id, s.device, s.dtype) for s in found] == [("n2", "cuda:1", "bf16"), ("n2", "cuda:2", "bf16")]
    for s in found:
        assert s.median_flops_per_s == pytest.approx(median)
        assert s.shortfall == pytest.approx(1 - s.achieved_flops_per_s / median)
    # a wider margin keeps only the slowest; a zero margin flags everything below the median
    assert [s.achieved_flops_per_s for s in find_stragglers(devices, margin=0.15)] == [560e12]
    assert len(find_stragglers(devices, margin=0.0)) == 3


def test_stragglers_use_best_probe_per_dtype_and_compare_only_peers_that_are_ok():
    fast_small = _matmul("bf16", 100e12, n=1024)
    devices = [
        _dev("a", 0, {"bf16": 700e12}),
        _dev("a", 1, {"bf16": 700e12}),
        _dev("b", 0, {"bf16": 650e12}, extra=[fast_small]),  # best of its two bf16 probes is 650
        _dev("b", 1, {"bf16": 10e12}, status="failed"),      # not ok: ignored
        _dev("c", 0, {"bf16": 0.2e12}, profile="cpu"),       # another profile: its own group of one
        _dev("c", 1, {"bf16": 900e12}, extra=[_matmul("bf16", 1e15, error="timed out")]),
    ]
    found = find_stragglers(devices, margin=0.05)
    assert [(s.node_id, s.device) for s in found] == [("b", "cuda:0")]
    assert found[0].median_flops_per_s == pytest.approx(700e12)  # median of 700, 700, 650, 900


def test_totals_sum_best_matmul_of_ok_devices_per_dtype():
    nodes = [
        NodeMeasurement(node_id="a", alive=True, resources={"GPU": 2.0},
                        devices=[_dev("a", 0, {"bf16": 700e12, "fp32": 50e12}), _dev("a", 1, {"bf16": 690e12})]),
        NodeMeasurement(node_id="b", alive=True, resources={"GPU": 1.0},
                        devices=[_dev("b", 0, {"bf16": 650e12}, status="timeout")]),
        NodeMeasurement(node_id="c", alive=False, resources={"GPU": 8.0}),
    ]
    t = cluster_totals(nodes)
    assert t.nodes == 3 and t.nodes_alive == 2 and t.devices == 3 and t.devices_ok == 2 and t.gpus == 3
    assert t.achieved_flops_per_s == {"bf16": pytest.approx(1390e12), "fp32": pytest.approx(50e12)}
