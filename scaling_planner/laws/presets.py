"""Named scaling laws with their provenance, and loading a law fitted by ``planner fit``.

Values carry full precision (rounding beta from 0.2849 to 0.28 moves the data term by ~13 % at
D = 1e11; Besiroglu et al. 2024, §3). See ``../shared/reference/scaling_laws.md`` §1.4 and §3.
"""

from __future__ import annotations

import difflib
import json
import math
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..base.errors import InputError
from .chinchilla import ChinchillaLaw

DEFAULT_LAW = "besiroglu2024"

_PRESETS: dict[str, dict] = {
    "besiroglu2024": dict(
        E=1.816864, A=482.0057, B=2085.4342, alpha=0.347813, beta=0.365854,
        source=(
            "Besiroglu, Erdil, Barnett, You 2024, 'Chinchilla Scaling: A replication attempt' "
            "(arXiv:2404.10102): Huber-MLE refit of Hoffmann's Approach 3 on 240 runs digitised from "
            "Hoffmann Fig. 4 (epoch-research/analyzing-chinchilla @ 9225883). Published bootstrap SEs "
            "E 0.0257, A 124.5, B 1293, alpha 0.0154, beta 0.0206. Ships with 4000 bootstrap draws "
            "refitted by scaling-planner on the same 240 runs (scripts/make_law_bootstrap.py)."
        ),
        bootstrap_file="besiroglu2024_bootstrap.npz",
    ),
    "hoffmann2022": dict(
        E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
        source=(
            "Hoffmann et al. 2022, 'Training Compute-Optimal Large Language Models' (arXiv:2203.15556), "
            "Eq. 10 as printed (rounded)."
        ),
    ),
    "hoffmann2022-tex": dict(
        E=math.exp(0.5267228), A=math.exp(6.0073404), B=math.exp(6.0179186), alpha=0.33917084, beta=0.2849083,
        source=(
            "Hoffmann et al. 2022, unrounded values from the paper's TeX source (e=0.5267228, a=6.0073404, "
            "b=6.0179186, alpha=0.33917084, beta=0.2849083), as used by Epoch's analyzing-chinchilla."
        ),
    ),
    "muennighoff2023-c4": dict(
        E=math.exp(0.6254804), A=math.exp(6.255414), B=math.exp(7.3049974), alpha=0.3526596, beta=0.3526596,
        source=(
            "Muennighoff et al. 2023, 'Scaling Data-Constrained Language Models' (arXiv:2305.16264), C4 base "
            "law with tied exponents, huggingface/datablations README (e=0.6254804, a=6.255414, b=7.3049974, "
            "alpha=beta=0.3526596). Data-constrained decay constants R_D*=15.387756, R_N*=5.309743."
        ),
        extra={"R_D_star": 15.387756, "R_N_star": 5.309743},
    ),
    "sardana2024": dict(
        E=1.69, A=406.4, B=410.7, alpha=0.336, beta=0.283,
        source=(
            "Constants of Sardana et al. 2024, 'Beyond Chinchilla-Optimal' (arXiv:2401.00448), "
            "nikhilsardana/beyond-chinchilla utils.ChinchillaConstants; a variant of Hoffmann Eq. 10 whose "
            "exponents' origin is not stated. Used to reproduce that paper's examples."
        ),
    ),
}


def law_names() -> list[str]:
    return list(_PRESETS)


@cache
def _bootstrap_samples(filename: str) -> np.ndarray:
    with resources.files("scaling_planner.laws").joinpath("data", filename).open("rb") as fh:
        return np.load(fh)["samples"]


def get_law(name: str, *, with_samples: bool = True) -> ChinchillaLaw:
    """A named law. Unknown names raise InputError listing the closest names."""
    key = str(name).strip().lower()
    if key not in _PRESETS:
        close = difflib.get_close_matches(key, _PRESETS, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError("law", f"unknown law {name!r}{hint} (known: {', '.join(_PRESETS)})")
    spec = dict(_PRESETS[key])
    bootstrap_file = spec.pop("bootstrap_file", None)
    extra = spec.pop("extra", {})
    samples = None
    if with_samples and bootstrap_file:
        try:
            samples = _bootstrap_samples(bootstrap_file)
        except FileNotFoundError:
            samples = None
    return ChinchillaLaw(name=key, samples=samples, extra=dict(extra), **spec)


def load_law_file(path: str | Path) -> ChinchillaLaw:
    """A law from the JSON written by ``planner fit --out`` (keys E, A, B, alpha, beta)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError("law_file", f"no such file: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("law_file", f"cannot read {p}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError("law_file", f"{p} is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InputError("law_file", f"{p} must hold a JSON object with E, A, B, alpha, beta")
    values = {}
    for key in ("E", "A", "B", "alpha", "beta"):
        v = data.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise InputError(f"law_file.{key}", f"{p} needs a finite, non-negative number for {key}, got {v!r}")
        values[key] = float(v)
    for key in ("A", "B", "alpha", "beta"):
        if values[key] <= 0:
            raise InputError(f"law_file.{key}", f"{p}: {key} must be > 0, got {values[key]!r}")
    samples = _law_file_samples(data.get("bootstrap"), p) if "bootstrap" in data else None
    return ChinchillaLaw(
        name=str(data.get("name") or p.stem),
        source=str(data.get("source") or f"fitted by planner fit, {p}"),
        samples=samples,
        **values,
    )


def _law_file_samples(block, p: Path) -> np.ndarray | None:
    """The bootstrap draws of a law file, (K, 5) rows of (E, A, B, alpha, beta); InputError naming the file
    and the field when the ``bootstrap`` field is there but malformed (a plan would silently lose its bands).
    ``null`` means no draws."""
    if block is None:
        return None
    field = "law_file.bootstrap"
    if not isinstance(block, dict):
        raise InputError(field, f"{p}: must be an object holding 'samples' (rows of E, A, B, alpha, beta), "
                                f"got {type(block).__name__}")
    draws = block.get("samples")
    if draws is None:
        raise InputError(f"{field}.samples", f"{p}: the bootstrap has no samples (planner fit --json leaves them "
                                             "out: write the law file with planner fit --out FIT.json)")
    try:
        arr = np.asarray(draws, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{field}.samples", f"{p}: expected rows of 5 numbers (E, A, B, alpha, beta)") from None
    if arr.ndim != 2 or arr.shape[1] != 5 or arr.shape[0] < 2:
        raise InputError(f"{field}.samples", f"{p}: expected at least 2 rows of 5 numbers (E, A, B, alpha, "
                                             f"beta), got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0) | ((arr <= 0) & (np.arange(5) > 0))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{field}.samples", f"{p}: row {row + 1}, {('E', 'A', 'B', 'alpha', 'beta')[col]} must be "
                                             f"finite and {'>= 0' if col == 0 else '> 0'}, got {arr[row, col]!r}")
    return arr


def resolve_law(name: str | None = None, law_file: str | Path | None = None) -> ChinchillaLaw:
    """The law a command asked for: a file when given, else a preset (default besiroglu2024)."""
    if name and law_file:
        raise InputError("law", "give either --law or --law-file, not both")
    if law_file:
        return load_law_file(law_file)
    return get_law(name or DEFAULT_LAW)
