"""One way to get a Ray session: use the one this process already has, else connect or start one.

:func:`connect` and the context manager :func:`ray_session` share one rule:

* Ray already initialised in this process: use it (a flow holds one session around several tasks:
  measure, size, train; each task's own ``ray_session()`` then reuses it instead of paying Ray's
  start-up, 3-6 s here, again);
* an address: a TCP check of ``host:port`` first (``ray.init`` retries an unreachable GCS for
  minutes), then ``ray.init`` in a thread bounded by ``connect_timeout_s``; ``"auto"`` attaches to a
  cluster a ``ray start`` left on this machine;
* no address: a fresh local instance (``address="local"``: a bare ``ray.init()`` would attach to any
  cluster a previous ``ray start`` or a test's ``cluster_utils.Cluster`` left running), started so that
  it makes no connection off the machine (:func:`no_cloud_metadata_requests`).

Every failure is a :class:`~scaling_planner.base.errors.MeasurementError` with a one-line reason. Only a
session started here is shut down here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

from ..base.errors import MeasurementError

CONNECT_TIMEOUT_S = 30.0
"""Bound on connecting to a remote cluster (a TCP check first, then ``ray.init`` in a bounded wait)."""
LOCAL_INIT_KWARGS = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
NEW_NODE_KWARGS = ("num_cpus", "num_gpus", "resources", "include_dashboard", "object_store_memory",
                   "_system_config", "dashboard_host", "dashboard_port")
"""``ray.init`` arguments that describe a new local node; a connection to a cluster must not pass them."""
DEAD_PROXY = "http://127.0.0.1:9"
"""A proxy address where nothing listens (the discard port on loopback): a request sent through it is
refused on this machine."""
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY")


def first_line(text: object, limit: int = 300) -> str:
    lines = str(text).strip().splitlines()
    line = lines[0].strip() if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_reachable(address: str, timeout_s: float) -> None:
    """A TCP connection to ``host:port`` (``ray://host:port`` defaults to 10001); ``auto``/``local`` pass."""
    text = address.strip()
    if text in ("auto", "local"):
        return
    port_default = None
    if text.startswith("ray://"):
        text, port_default = text[len("ray://"):], 10001
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(port_default) if port_default else ""
    if not host or not port_text.isdigit():
        raise MeasurementError(f"cannot reach the Ray cluster at {address}: expected HOST:PORT "
                               "(e.g. 10.0.0.1:6379), ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout_s):
            pass
    except TimeoutError:
        raise MeasurementError(f"cannot reach the Ray cluster at {address}: no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise MeasurementError(f"cannot reach the Ray cluster at {address}: "
                               f"{exc.strerror or type(exc).__name__}") from None


def connect(address: str | None = None, init_kwargs: dict | None = None,
            connect_timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[bool, float]:
    """Make sure Ray is initialised (module docstring). Returns (started here, seconds it took)."""
    try:
        import ray
    except ImportError:
        raise MeasurementError("Ray is not installed: pip install 'scaling-planner[measure]'") from None
    if ray.is_initialized():
        return False, 0.0
    t0 = time.perf_counter()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # DESIGN.md: nothing goes to the network
    kwargs = {**LOCAL_INIT_KWARGS, **(init_kwargs or {})}
    if not address:
        # Ray runs its workers at nice 15 by default: beside other busy work on the machine a probe or a
        # training step then gets a few percent of a core (a measurement of the leftovers, or a timeout).
        # The planner's own instance runs them at the priority of the command that started it.
        kwargs["_system_config"] = {"worker_niceness": 0, **(kwargs.get("_system_config") or {})}
        try:
            with no_cloud_metadata_requests(kwargs):
                ray.init(address="local", **kwargs)
        except Exception as exc:
            raise MeasurementError(f"cannot start a local Ray instance: {type(exc).__name__}: "
                                   f"{first_line(exc) or 'no detail'}") from None
        return True, time.perf_counter() - t0
    for key in NEW_NODE_KWARGS:
        kwargs.pop(key, None)
    check_reachable(address, min(connect_timeout_s, 10.0))
    outcome: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            ray.init(address=address, **kwargs)
            outcome["error"] = None
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=init, name="ray-connect", daemon=True)
    worker.start()
    worker.join(connect_timeout_s)
    if worker.is_alive():
        raise MeasurementError(f"cannot reach the Ray cluster at {address}: the port answers but Ray did not "
                               f"connect within {connect_timeout_s:g} s (is it a Ray GCS port?)")
    if outcome.get("error") is not None:
        exc = outcome["error"]
        raise MeasurementError(f"cannot reach the Ray cluster at {address}: {type(exc).__name__}: "
                               f"{first_line(exc) or 'no detail'}")
    return True, time.perf_counter() - t0


@contextlib.contextmanager
def no_cloud_metadata_requests(init_kwargs: dict):
    """Around ``ray.init`` of a new local instance: no request to a cloud's metadata service.

    Ray 2.60's dashboard head always loads its usage-stats module (``include_dashboard=False`` loads
    only that one), which asks 169.254.169.254 (Azure, AWS) and metadata.google.internal (GCP) which
    cloud it runs on whenever ``~/ray_bootstrap_config.yaml`` is absent, whether usage stats are
    enabled or not, and Ray has no switch for it. Those requests go through ``requests``, which honours
    the proxy variables: while Ray's processes start they see :data:`DEAD_PROXY` (refused on loopback,
    nothing leaves the machine) with this machine's own addresses exempt (``no_proxy``); Ray's gRPC
    ignores proxies (``grpc.enable_http_proxy`` 0). The job's workers get the caller's own proxy
    variables back through the job's ``runtime_env`` (an empty value is no proxy), and this process's
    environment is restored when ``ray.init`` returns."""
    saved = {k: os.environ.get(k) for k in PROXY_VARS}
    local = ["localhost", "127.0.0.1", "::1"]
    with contextlib.suppress(OSError):
        local.append(socket.gethostbyname(socket.gethostname()))
    with contextlib.suppress(Exception):  # the address Ray picks: only an addition to the exemptions
        from ray.util import get_node_ip_address

        local.append(get_node_ip_address())
    runtime_env = dict(init_kwargs.get("runtime_env") or {})
    runtime_env["env_vars"] = {**{k: (v or "") for k, v in saved.items()}, **(runtime_env.get("env_vars") or {})}
    init_kwargs["runtime_env"] = runtime_env
    os.environ.update({k: DEAD_PROXY for k in PROXY_VARS if "no_" not in k.lower()})
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = ",".join(dict.fromkeys(local))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def ray_session(address: str | None = None, *, init_kwargs: dict | None = None,
                connect_timeout_s: float = CONNECT_TIMEOUT_S):
    """``with ray_session(addr) as ray:`` Ray is initialised inside; shut down after only if started here."""
    import ray

    started, _ = connect(address, init_kwargs, connect_timeout_s)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
