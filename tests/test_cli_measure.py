"""``planner measure``: one real run on local Ray (JSON contract, --save), an unreachable cluster (exit 4,
one line, bounded), usage errors (exit 2, one line), and the table and progress bar from constructed
measurements."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaling_planner.cli import main
from scaling_planner.cli.measure import _Bar, render
from scaling_planner.measure.models import (
    ClusterMeasurement,
    ClusterTotals,
    DeviceMeasurement,
    NodeMeasurement,
    ProbeResult,
    Straggler,
)

ENTRY = "import sys; from scaling_planner.cli import main; sys.exit(main())"


def planner(*args: str, timeout_s: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=timeout_s,
                          env=environment)


def test_measure_quick_json_on_local_ray_saves_a_record(tmp_path: Path):
    calib = tmp_path / "calibration"
    proc = planner("measure", "--quick", "--json", "--save", "--calibration-dir", str(calib))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # exactly one JSON document: json.loads rejects trailing text
    m = ClusterMeasurement.model_validate(doc)
    assert m.totals.nodes_alive >= 1 and m.totals.devices_ok >= 1
    cpu = [d for d in m.devices() if d.device == "cpu"]
    assert cpu and cpu[0].status == "ok" and cpu[0].profile == "cpu"
    matmuls = [p for p in cpu[0].probes if p.kind == "matmul" and p.error is None]
    assert matmuls and all(p.median > 0 and p.samples for p in matmuls)
    assert any(p.kind == "memory_bandwidth" and p.median > 0 for p in cpu[0].probes)
    assert m.totals.achieved_flops_per_s and all(v > 0 for v in m.totals.achieved_flops_per_s.values())
    assert m.ray_address is None and not m.partial

    files = sorted(calib.glob("*.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert saved["profile"] == "cpu" and saved["source"] == "probe"
    best = cpu[0].best_matmul(saved["dtype"])
    assert saved["achieved_matmul_flops_per_s"] == pytest.approx(best.median)
    assert f"saved calibration record {files[0]}" in proc.stderr  # on stderr: stdout is the JSON only
    assert "Traceback" not in proc.stderr


def test_unreachable_ray_address_is_one_line_and_exit_4():
    proc = planner("measure", "--ray-address", "127.0.0.1:1", "--json", timeout_s=60)
    assert proc.returncode == 4
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("planner measure: error: cannot reach the Ray cluster at 127.0.0.1:1")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [
    ["--dtypes", "fp4"], ["--dtypes", "bf16,int3"], ["--dtypes", ","], ["--timeout", "-1"],
    ["--timeout", "soon"], ["--timeout", "0"], ["--straggler-margin", "1.5"], ["--straggler-margin", "x"],
])
def test_bad_options_are_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(["measure", *argv])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("planner measure: error: argument")
    assert argv[0] in lines[0]


def test_options_parse_dtypes_and_durations():
    from scaling_planner.cli import build_parser

    args = build_parser().parse_args(["measure", "--dtypes", "BF16, fp32,bf16", "--timeout", "2min",
                                      "--straggler-margin", "0.2"])
    assert args.dtypes == ["bf16", "fp32"] and args.timeout == 120.0 and args.straggler_margin == 0.2
    args = build_parser().parse_args(["measure"])
    assert args.dtypes is None and args.timeout == 60.0 and args.ray_address is None and not args.save


# ---- the table and the progress bar -----------------------------------------------------------------------

def _matmul(dtype: str, rate: float, peak: float) -> ProbeResult:
    return ProbeResult(kind="matmul", backend="torch-cuda", dtype=dtype, size=8192, unit="flops_per_s",
                       median=rate, samples=[rate], spread=0.0, warmup=1, repeats=1, timed_s=1.0, total_s=1.0,
                       peak=peak, fraction_of_peak=rate / peak)


def _copy(rate: float, peak: float) -> ProbeResult:
    return ProbeResult(kind="memory_bandwidth", backend="torch-cuda", dtype="uint8", size=2**28, unit="bytes_per_s",
                       median=rate, samples=[rate], spread=0.0, warmup=1, repeats=1, timed_s=1.0, total_s=1.0,
                       peak=peak, fraction_of_peak=rate / peak)


def test_render_shows_rates_fractions_totals_stragglers_and_missing():
    ok = DeviceMeasurement(node_id="aaaaaaaa1111", hostname="gpu-1", device="cuda:0", name="NVIDIA H100 80GB HBM3",
                           profile="h100-sxm", status="ok",
                           probes=[_matmul("bf16", 700e12, 989e12), _copy(2.8e12, 3.35e12)])
    slow = ok.model_copy(update={"device": "cuda:1", "probes": [_matmul("bf16", 500e12, 989e12)]})
    lost = DeviceMeasurement(node_id="bbbbbbbb2222", device="cuda:0", status="timeout",
                             error="no result within 60 s; the task was cancelled")
    m = ClusterMeasurement(
        measured_at="2026-02-01T00:00:00.000000Z", elapsed_s=61.2, partial=True, straggler_margin=0.1,
        nodes=[NodeMeasurement(node_id="aaaaaaaa1111", hostname="gpu-1", alive=True, devices=[ok, slow]),
               NodeMeasurement(node_id="bbbbbbbb2222", hostname="gpu-2", alive=False, devices=[lost],
                               error="died during the measurement")],
        totals=ClusterTotals(nodes=2, nodes_alive=1, devices=3, devices_ok=2, gpus=3,
                             achieved_flops_per_s={"bf16": 1.2e15}),
        stragglers=[Straggler(node_id="aaaaaaaa1111", device="cuda:1", dtype="bf16", achieved_flops_per_s=500e12,
                              median_flops_per_s=600e12, shortfall=1 / 6)],
        missing=["node bbbbbbbb cuda:0: timeout: no result within 60 s; the task was cancelled"])
    text = render(m)
    assert "PARTIAL" in text
    assert "700 TFLOP/s (71%)" in text and "500 TFLOP/s (51%)" in text
    assert "2.8 TB/s (84%)" in text
    assert "NVIDIA H100 80GB HBM3 / h100-sxm" in text
    assert "total bf16 matmul: 1.2 PFLOP/s" in text
    assert "node aaaaaaaa cuda:1 bf16: 500 TFLOP/s vs median 600 TFLOP/s (17% short)" in text
    assert "dead node bbbbbbbb (gpu-2): died during the measurement" in text
    assert "node bbbbbbbb cuda:0: timeout" in text
    row = next(line for line in text.splitlines() if "cuda:1" in line and "gpu-1" in line)
    assert row.rstrip().endswith("ok")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_only_on_a_terminal():
    tty = _Tty()
    bar = _Bar(tty)
    bar(0, 4, "4 probe task(s) submitted")
    bar(2, 4, "node abc cuda:1: ok")
    bar.close()
    assert "[############............] 2/4 node abc cuda:1: ok" in tty.getvalue()
    assert tty.getvalue().endswith("\r\033[K")

    pipe = io.StringIO()
    quiet = _Bar(pipe)
    quiet(1, 1, "done")
    quiet.close()
    assert pipe.getvalue() == ""


def _hold_a_cpu(address: str, env: dict, options: str = "") -> subprocess.Popen:
    """Another driver whose actor holds one CPU of the cluster (``options``: more @ray.remote arguments)
    until killed; returns once it holds it."""
    extra = f", {options}" if options else ""
    hog = subprocess.Popen([sys.executable, "-c", (
        "import ray, time\n"
        f"ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False)\n"
        f"@ray.remote(num_cpus=1{extra})\nclass Hog:\n    def ready(self): return True\n"
        "h = Hog.remote(); ray.get(h.ready.remote()); print('held', flush=True); time.sleep(600)\n")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert hog.stdout.readline().strip() == "held"
    return hog


@pytest.fixture
def one_cpu_cluster():
    """A real Ray cluster (cluster_utils) whose head has one CPU; shut down after the test."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("another test left Ray running in this process")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    yield c
    c.shutdown()


def test_json_stays_one_object_when_a_node_dies_during_the_measurement(one_cpu_cluster):
    """Issue 16 item 4: a node killed while `planner measure --json` runs makes Ray print its raylet-death
    banner (about 46 lines) on the driver's stdout, before the JSON. stdout must carry exactly one JSON
    object whatever Ray prints; the banner goes to stderr."""
    import time

    c = one_cpu_cluster
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    hog = None
    try:
        victim = c.add_node(num_cpus=1, resources={"victim": 1})
        c.wait_for_nodes()
        # other work holds the victim's CPU, so its probe is still waiting when the node dies
        hog = _hold_a_cpu(c.address, env, "resources={'victim': 1}")
        proc = subprocess.Popen([sys.executable, "-c", ENTRY, "measure", "--json", "--ray-address", c.address,
                                 "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        time.sleep(6)  # the driver is connected and measuring
        c.remove_node(victim, allow_graceful=False)
        out, err = proc.communicate(timeout=300)
        assert "Traceback" not in err
    finally:
        if hog is not None:
            hog.kill()
    doc = json.loads(out)  # the whole of stdout is one JSON object
    assert proc.returncode == 0 and doc["totals"]["devices_ok"] >= 1
    dead = [n for n in doc["nodes"] if n["node_id"] == victim.node_id]
    assert dead and dead[0]["alive"] is False
    assert "Raylet is terminated" not in out


def test_losing_the_head_gives_one_line_exit_4_and_the_partial_result_within_the_timeout(one_cpu_cluster):
    """Issue 16 item 5: when the Ray head (GCS) died during `planner measure --json`, Ray ended the process
    after 72 s with exit 1 and nothing on stdout. The CLI measures in a child process now: one line on
    stderr, exit 4, the partial measurement as JSON, within the measurement's own bound."""
    import time

    c = one_cpu_cluster
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    hog = None
    try:
        c.wait_for_nodes()
        # other work holds the only CPU, so the probe waits: the head dies while the measurement runs
        hog = _hold_a_cpu(c.address, env)
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", ENTRY, "measure", "--json", "--ray-address", c.address,
                                 "--timeout", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        time.sleep(6)
        c.head_node.kill_gcs_server()
        out, err = proc.communicate(timeout=400)
        elapsed = time.monotonic() - t0
    finally:
        if hog is not None:
            hog.kill()
    from scaling_planner.measure.isolated import STARTUP_MARGIN_S
    from scaling_planner.measure.ray_session import CONNECT_TIMEOUT_S

    assert proc.returncode == 4
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "lost the Ray cluster during the measurement" in lines[0] and "Traceback" not in err
    doc = json.loads(out)  # the partial result, one JSON object
    assert doc["partial"] is True and doc["totals"]["nodes"] == 1 and doc["totals"]["devices_ok"] == 0
    assert elapsed < CONNECT_TIMEOUT_S + 30 + STARTUP_MARGIN_S
