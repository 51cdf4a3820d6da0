"""The measurement path as Prefect tasks on Ray (prefect-ray's RayTaskRunner), for real: slow (each Ray
worker imports Prefect and reports to the test server), but it runs in CI."""

from __future__ import annotations

import pytest

from scaling_planner.flows.measure import measure_with_ray_tasks, ray_task_runner


@pytest.mark.slow
def test_probes_run_as_prefect_tasks_on_ray(prefect_harness):
    flow = measure_with_ray_tasks.with_options(task_runner=ray_task_runner(init_kwargs={"num_cpus": 2}))
    state = flow(quick=True, dtypes=["fp32"], return_state=True)
    assert state.is_completed(), state.message
    m = state.result()
    devices = m.devices()
    assert len(devices) == 1 and devices[0].device == "cpu" and devices[0].status == "ok"
    fp32 = devices[0].best_matmul("fp32")
    assert fp32 is not None and 0 < fp32.median < 1e13  # a real CPU matmul rate (no speed floor: it may be busy)
    assert m.totals.achieved_flops_per_s["fp32"] == pytest.approx(fp32.median)
    assert not m.partial and m.totals.nodes_alive == 1

    # the task runs were recorded by Prefect as task runs of this flow run
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    # the Ray worker reports its task run asynchronously; the flow waits for the reports before it returns
    # (and Ray shuts down), so they are on the server now, final (issue 16 items 6 and 12: under load they
    # were lost with the killed worker and the run stayed RUNNING)
    flt = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=flt)
    assert [r.name.split("-")[0] for r in runs if r.state and r.state.is_completed()] == ["probe"]


@pytest.mark.slow
def test_the_script_measures_its_own_local_ray_on_the_embedded_server_not_a_cluster_it_finds(tmp_path):
    """Issue 16 item 6: with no address, `flows/measure.py` started prefect-ray's runner with a bare
    ray.init(), which attaches to any Ray cluster running on the machine (and died with it). It must start
    its own local instance, run on Prefect's embedded server (no PREFECT_API_URL), and print one JSON
    object on stdout."""
    import json
    import os
    import subprocess
    import sys

    ray = pytest.importorskip("ray")
    from conftest import REPO
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("another test left Ray running in this process")
    other = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        other.add_node(num_cpus=1)
        other.add_node(num_cpus=1)
        other.wait_for_nodes()  # someone else's three-node cluster, registered as this machine's current one
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        env.update(PREFECT_HOME=str(tmp_path / "prefect"), RAY_USAGE_STATS_ENABLED="0")
        proc = subprocess.run([sys.executable, "flows/measure.py"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
    finally:
        other.shutdown()
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["totals"]["nodes"] == 1 and doc["totals"]["devices_ok"] == 1  # its own instance, measured
    assert not doc["partial"]
