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
    assert fp32 is not None and 1e9 < fp32.median < 1e13  # a real CPU matmul rate
    assert m.totals.achieved_flops_per_s["fp32"] == pytest.approx(fp32.median)
    assert not m.partial and m.totals.nodes_alive == 1

    # the task runs were recorded by Prefect as task runs of this flow run
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        flt = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        runs = client.read_task_runs(flow_run_filter=flt)
    assert [r.name.split("-")[0] for r in runs if r.state.is_completed()] == ["probe"]
