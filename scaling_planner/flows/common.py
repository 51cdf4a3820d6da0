"""What the flow scripts share when run from a shell (``python flows/<name>.py``).

* :func:`quiet_environment`: no usage stats or telemetry, nothing sent anywhere (DESIGN.md);
* :func:`one_line_errors`: a planner error (a rejected gate, bad input, a failed measurement) is one
  line for a user at a terminal, not Prefect's logged traceback; bugs keep their tracebacks;
* :func:`run_script`: a request error as one line (``field: problem``), exit 2.
"""

from __future__ import annotations

import logging
import os

QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
# Prefect's embedded server gets 20 s to start by default: a busy 2-core machine needs more. A user's own
# setting wins (it is only a default).
STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
STARTUP_TIMEOUT_S = 120
EPHEMERAL_TIMEOUT_MESSAGE = "Timed out while attempting to connect to ephemeral Prefect API server"


def quiet_environment() -> None:
    """Nothing sent anywhere, and time for the embedded Prefect server to start (a user's settings win)."""
    for key, value in {**QUIET_ENV, STARTUP_TIMEOUT_ENV: str(STARTUP_TIMEOUT_S)}.items():
        os.environ.setdefault(key, value)


def server_start_failure(exc: BaseException) -> str | None:
    """One line for Prefect's embedded server not starting in time, or None for any other error."""
    if EPHEMERAL_TIMEOUT_MESSAGE not in str(exc):
        return None
    limit = os.environ.get(STARTUP_TIMEOUT_ENV, str(STARTUP_TIMEOUT_S))
    return (f"Prefect's embedded server did not start within {limit} s (a busy machine?): raise "
            f"{STARTUP_TIMEOUT_ENV}, or run `prefect server start` and set PREFECT_API_URL to it")


class _HidePlannerTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from scaling_planner.base.errors import PlannerError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, PlannerError):
            record.exc_info, record.exc_text = None, None
        return True


def one_line_errors() -> None:
    """Drop the traceback from Prefect's log records of PlannerErrors (their message says it all)."""
    hide = _HidePlannerTracebacks()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(hide)


def run_script(name: str, build_request, run, summary) -> int:
    """The shell entry of a flow: build the request (a pydantic error -> one line, exit 2), run the flow
    (a PlannerError -> one line, its exit code), print the summary lines. ``build_request`` may return
    None when it handled the command itself (``--serve``)."""
    import sys

    from pydantic import ValidationError

    from scaling_planner.base.errors import InputError, PlannerError
    from scaling_planner.planning.request import input_error

    try:
        request = build_request()
    except (ValidationError, InputError) as exc:
        print(f"{name}: error: {input_error(exc) if isinstance(exc, ValidationError) else exc}", file=sys.stderr)
        return 2
    if request is None:
        return 0
    one_line_errors()
    try:
        result = run(request)
    except PlannerError as exc:
        print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except RuntimeError as exc:
        line = server_start_failure(exc)
        if line is None:
            raise
        print(f"{name}: error: {line}", file=sys.stderr)
        return 1
    print("\n".join(summary(result)))
    return 0
