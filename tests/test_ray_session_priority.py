"""The planner's own local Ray runs its workers at the priority of the command that started it, not at
Ray's default nice 15, which beside a busy loop left a probe a few percent of a core and a 60 s timeout
(issue 16 item 12: the suite and the commands must work with other work running beside them)."""

from __future__ import annotations

import os
import subprocess
import sys

DRIVER = """
import os
from scaling_planner.measure.ray_session import ray_session
with ray_session() as ray:
    print(os.nice(0), ray.get(ray.remote(lambda: os.nice(0)).remote()))
"""


def test_local_ray_workers_run_at_the_drivers_priority():
    env = {k: v for k, v in os.environ.items() if k != "RAY_worker_niceness"}  # Ray's own default
    proc = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=240,
                          env={**env, "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    driver, worker = map(int, proc.stdout.split()[-2:])
    assert worker == driver
