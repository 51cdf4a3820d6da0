"""Issue 16 item 2 on a real local Ray: a job that fits the cluster but not what other work leaves free is
refused by sizing with the reason (it used to be sized against the total and then wait without end), and
the gate rejects a measurement in which no device, or too few, reported a usable result."""

import pytest

from scaling_planner.base.errors import InfeasibleError
from scaling_planner.preflight.gate import GateLimits, evaluate

ray = pytest.importorskip("ray")


@pytest.fixture
def two_cpu_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def test_sizing_checks_what_is_free_not_the_total(two_cpu_ray):
    from scaling_planner.tasks import size_ray_job

    @ray.remote(num_cpus=2)
    class Hog:  # other work holding every CPU of the cluster
        def ready(self):
            return True

    free = size_ray_job.fn(1, use_gpu=False, cpus_per_worker=1.0)  # nothing held yet: sized
    assert free.num_workers == 1 and free.total_resources == {"CPU": 1.0}
    hog = Hog.remote()
    ray.get(hog.ready.remote())
    with pytest.raises(InfeasibleError, match=r"needs 1 CPU .* only 0 of the cluster's 2 are free now"):
        size_ray_job.fn(1, use_gpu=False, cpus_per_worker=1.0)
    ray.kill(hog)


@pytest.mark.parametrize(("devices", "ok", "share", "passed"), [
    (5, 0, 0.5, False),   # every probe failed: never a pass, whatever the share
    (4, 1, 0.5, False),   # a partial measurement below the share
    (4, 2, 0.5, True),
    (4, 1, 0.25, True),
    (1, 0, 0.0, False),
])
def test_gate_rejects_a_failed_measurement(devices, ok, share, passed):
    d = evaluate(None, GateLimits(min_measured_share=share), devices_measured=devices, devices_ok=ok)
    assert d.passed is passed and "measurement" in d.checked
    if not passed:
        assert d.violations[0].limit == "measurement" and f"{ok} of {devices} devices usable" in d.summary()


def test_no_measurement_is_not_a_violation():
    d = evaluate(None, GateLimits())
    assert d.passed and "measurement" not in d.checked
