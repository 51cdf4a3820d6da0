"""Scaling laws: pure numpy math, no I/O beyond the packaged parameter files."""

from .chinchilla import (
    ChinchillaLaw,
    compute_for_loss,
    frontier_loss,
    frontier_tokens_for_params,
    isoflop_loss,
    near_optimal_params_range,
    optimal_params,
    optimal_tokens,
    tokens_per_param,
)
from .presets import DEFAULT_LAW, get_law, law_names, load_law_file, resolve_law

__all__ = [
    "DEFAULT_LAW",
    "ChinchillaLaw",
    "compute_for_loss",
    "frontier_loss",
    "frontier_tokens_for_params",
    "get_law",
    "isoflop_loss",
    "law_names",
    "load_law_file",
    "near_optimal_params_range",
    "optimal_params",
    "optimal_tokens",
    "resolve_law",
    "tokens_per_param",
]
