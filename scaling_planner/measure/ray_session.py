"""One way to get a Ray session: use the one this process already has, else connect or start one.

``ray_session(address)`` is a context manager: inside it ``ray`` is initialised. It shuts down only a
session it started itself, so a flow can hold one session around several tasks (measure, size, train)
and each task's own ``ray_session()`` reuses it instead of paying Ray's start-up (3-6 s here) again.
A cluster that cannot be reached is a MeasurementError with the reason, within ``connect_timeout_s``.
No address starts a fresh local instance; ``"auto"`` attaches to one a ``ray start`` left running.
"""

from __future__ import annotations

import contextlib
import os

from ..errors import MeasurementError

LOCAL_INIT_KWARGS = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}


def _init(address: str | None, init_kwargs: dict | None, connect_timeout_s: float) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(LOCAL_INIT_KWARGS)
    kwargs.update(init_kwargs or {})
    if address:
        for key in ("num_cpus", "num_gpus", "resources", "include_dashboard", "object_store_memory"):
            kwargs.pop(key, None)  # these describe a new local node; a connection must not pass them
        os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", str(int(max(1, connect_timeout_s))))
        os.environ.setdefault("RAY_gcs_server_request_timeout_seconds", str(int(max(1, connect_timeout_s))))
    try:
        # "local" always starts a fresh instance: a bare ray.init() would attach to whatever cluster a
        # previous `ray start` (or a test's cluster_utils.Cluster) left on this machine. Use "auto" for that.
        ray.init(address=address or "local", **kwargs)
    except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError, ValueError from a bad address
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise MeasurementError(f"cannot start or reach {where}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}") from None


@contextlib.contextmanager
def ray_session(address: str | None = None, *, init_kwargs: dict | None = None, connect_timeout_s: float = 15.0):
    import ray

    started = False
    if not ray.is_initialized():
        _init(address, init_kwargs, connect_timeout_s)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
