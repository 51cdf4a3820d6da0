"""scaling-planner: from scaling laws to a plan on a real cluster.

The public API is re-exported here. Heavy integrations (prefect, ray, torch, pynvml) are never
imported by the core; they load inside the functions of ``measure``, ``tasks`` and ``flows``.
"""

from .errors import InfeasibleError, InputError, MeasurementError, PlannerError
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
    "PlannerError",
    "__version__",
    "compute_for_loss",
    "fit_law",
    "frontier_loss",
    "get_law",
    "law_names",
    "load_law_file",
    "load_runs",
    "near_optimal_params_range",
    "optimal_params",
    "optimal_tokens",
]


def __getattr__(name):  # lazy: the fitter is only loaded when used
    if name in ("fit_law", "load_runs"):
        from .laws import fit

        return getattr(fit, name)
    raise AttributeError(name)
