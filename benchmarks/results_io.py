"""Where every benchmark writes its figures: ``benchmarks/results/<name>.json``."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_result(name: str, doc: dict) -> Path:
    """Write ``doc`` as indented JSON to ``benchmarks/results/<name>.json``, say where, return the path."""
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")
    return path
