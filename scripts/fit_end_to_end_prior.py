"""Refit the end-to-end prior (scaling_planner/simulate/training/data/end_to_end_prior.json) from the validation data.

    python scripts/fit_end_to_end_prior.py          # writes the JSON, prints it

The fit is deterministic (median regression, leave-one-out quantiles); tests/test_end_to_end.py refits
it and fails when the shipped file differs, so run this after changing the data or the step model.
"""

import json
from pathlib import Path

from scaling_planner.base.io import write_json_atomic
from scaling_planner.validation import published, tuned

OUT = Path(__file__).resolve().parents[1] / "scaling_planner/simulate/training/data/end_to_end_prior.json"

if __name__ == "__main__":
    prior = published.fit_prior(tuned.tuned_band())
    write_json_atomic(OUT, prior)
    print(json.dumps(prior, indent=2))
