"""The error hierarchy of scaling-planner.

Every error a user can cause is a :class:`PlannerError`. The CLI turns each into one line on
stderr and an exit code (``exit_code``); a traceback reaches a user only for a bug.
"""

from __future__ import annotations


class PlannerError(Exception):
    """Base class of every error scaling-planner raises on purpose."""

    exit_code = 1


class InputError(PlannerError, ValueError):
    """Bad input: the message names the field and what is allowed (exit code 2)."""

    exit_code = 2

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class InfeasibleError(PlannerError):
    """The request is well formed but no plan satisfies it; says what fails and by how much (exit 3)."""

    exit_code = 3


class MeasurementError(PlannerError):
    """Measuring the cluster failed (no device, a probe timed out, a node died) (exit 4)."""

    exit_code = 4


class GateRejectedError(InfeasibleError):
    """The pre-flight gate rejected a training job: the message says which limits and by how much (exit 3).

    ``violations`` holds one :class:`scaling_planner.preflight.gate.GateViolation` per limit broken.
    """

    def __init__(self, message: str, violations=()):
        self.violations = list(violations)
        super().__init__(message)
