"""scaling-planner: from scaling laws to a plan on a real cluster.

The public API is re-exported here. Heavy integrations (prefect, ray, torch, pynvml) are never
imported by the core; they load inside the functions of ``measure``, ``tasks`` and ``flows``.
"""

from .base.errors import InfeasibleError, InputError, MeasurementError, PlannerError
from .laws import (
    ChinchillaLaw,
    compute_for_loss,
    frontier_loss,
    get_law,
    law_names,
    load_law_file,
    near_optimal_params_range,
    optimal_params,
    optimal_tokens,
)

__version__ = "0.1.0"

__all__ = [
    "ChinchillaLaw",
    "InfeasibleError",
    "InputError",
    "MeasurementError",
    "PlanRequest",
    "PlannerError",
    "__version__",
    "compute_for_loss",
    "fit_law",
    "frontier_loss",
    "get_law",
    "get_profile",
    "law_names",
    "load_law_file",
    "load_profiles",
    "load_runs",
    "near_optimal_params_range",
    "optimal_params",
    "optimal_tokens",
    "profile_for_nvml_name",
    "recommend",
    "simulate_training",
]


_LAZY = {
    "fit_law": "laws.fit",
    "load_runs": "laws.runs",
    "load_profiles": "hardware.profiles",
    "get_profile": "hardware.profiles",
    "profile_for_nvml_name": "hardware.profiles",
    "recommend": "planning.recommend",
    "simulate_training": "simulate.training.estimate",
    "PlanRequest": "planning.request",
}


def __getattr__(name):  # lazy: load the fitter, the profiles and the planner only when used
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'scaling_planner' has no attribute {name!r}")
