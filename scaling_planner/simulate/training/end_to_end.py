"""From the tuned-stack step model to what a team really spends end to end.

The step model (:mod:`.training`) predicts a tuned Megatron-LM stack in steady state: it meets
Korthikanti et al. 2022, PTD-P and vTrain on A100 and NVIDIA's Hopper and Blackwell tables within
about 10 % (``planner validate``). Real pre-training runs cost more: across 24 published runs
(``validation/data/published_runs.csv``) the tuned model predicts a median 1.8x fewer GPU-hours than
the teams reported. The road from one to the other, in the order it is applied:

1. **A less fused stack** (mechanism, a counted constant). Outside NVIDIA's tuned recipes the
   elementwise work of a layer runs as separate eager kernels, each reading and writing its
   tensors through HBM: :data:`EAGER_UNFUSED_BYTES` more bytes per hidden element per layer,
   forward (twice that backward, again for a recomputed forward). Its cost grows with the GPU's
   FLOP-to-bandwidth ratio and shrinks with the hidden size, so it weighs more on small models and
   on Hopper than on A100 -- both what the published runs show. The layout search picks the best
   layout *with* this traffic (a team tunes its layout to its stack).
2. **Failures, restarts and checkpoints** (mechanism, sourced constants): the goodput model of
   :mod:`.reliability` on Llama 3's interruption rate.
3. **Everything else a published figure includes** (empirical, fitted): ramp-up, evaluation,
   data-pipeline stalls, loss-spike rollbacks, idle calendar time, a layout or batch chosen by
   habit. One multiplicative factor ``exp(log_factor)``: the median over the published runs of
   published / (1 and 2).

What is left is the **residual**: its 10th and 90th percentiles, taken over the runs' leave-one-out
residuals, give the P10 / P90 band around the P50. The factor and the band are fitted by
:mod:`scaling_planner.validation.published` (median regression, leave-one-out) and shipped in
``data/end_to_end_prior.json``; a test refits them from the data and compares. Step 1 earns its
place: without it the leave-one-out error is no better than a constant MFU's (``planner validate``).

A measured MFU of the team's own stack (``--measured-mfu``, ``--calibrated``) replaces 1 and 3;
``--efficiency tuned`` drops them (today's tuned-stack figure). Both keep 2 and take their band
from the tuned-stack validation: the step model's error when it carries a configuration to another.

Pure numpy and the standard library; the JSON is package data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from ...base.errors import InputError

EFFICIENCY_MODES = ("realised", "tuned")

#: Extra HBM bytes per hidden element per layer (forward) of an eager PyTorch Llama layer over the
#: tuned model's fused count, counted op by op for a Llama 3 8B layer (bf16 activations, fp32 norm
#: arithmetic as in Hugging Face's LlamaRMSNorm, SwiGLU f = 3.5 h, GQA k = h/4):
#: 2 RMSNorms x 36 (to fp32 r2 w4, square r4 w4, mean r4, scale r4 w4, to bf16 r4 w2, weight r2 w2)
#: + rotary 20 per q and k element x 1.25 (cos r2 w2, rotate_half r3 w3, sin r2 w2, add r4 w2)
#: + GQA repeat of k, v 5 + q and output transposes 8 + 2 residual adds x 6
#: + SiLU and gating 10 per FFN element x 3.5 = 157 bytes; the tuned model already counts 22 (fused
#: norms, residuals) + 6 x 3.5 (its FFN activation traffic) = 43. 157 - 43 = 114.
EAGER_UNFUSED_BYTES = 114.0
PRIOR_FILE = "end_to_end_prior.json"


@dataclass(frozen=True)
class EndToEndPrior:
    """The fitted road from the tuned stack to a real end-to-end run (module docstring)."""

    unfused_bytes_per_element: float  # 1: EAGER_UNFUSED_BYTES (a count; recorded with the fit)
    log_factor: float  # 3: median log(published / (tuned with 1 and 2))
    log_p10: float  # residual band around the P50 (log space)
    log_p90: float
    tuned_log_p10: float  # the step model's own error band (tuned-stack validation), for tuned / measured
    tuned_log_p90: float
    runs: int  # published runs it was fitted on
    source: str = ""

    def factor_band(self, mode: str) -> tuple[float, float]:
        """(P10, P90) multipliers on the P50 for ``mode`` ("realised", "tuned" or "measured")."""
        if mode == "realised":
            return math.exp(self.log_p10), math.exp(self.log_p90)
        return math.exp(self.tuned_log_p10), math.exp(self.tuned_log_p90)

    def end_to_end_factor(self, mode: str) -> float:
        """The multiplier of step 3 for ``mode`` (1 for tuned and measured)."""
        return math.exp(self.log_factor) if mode == "realised" else 1.0

    def unfused_bytes(self, mode: str) -> float:
        return self.unfused_bytes_per_element if mode == "realised" else 0.0


@cache
def load_prior() -> EndToEndPrior:
    """The shipped prior (``simulate/training/data/end_to_end_prior.json``)."""
    doc = json.loads(resources.files(__package__).joinpath("data", PRIOR_FILE).read_text(encoding="utf-8"))
    return prior_from_dict(doc)


def prior_from_dict(doc: dict) -> EndToEndPrior:
    fields = EndToEndPrior.__dataclass_fields__
    return EndToEndPrior(**{k: doc[k] for k in fields if k in doc})


def check_mode(mode: str) -> str:
    if mode not in EFFICIENCY_MODES:
        raise InputError("efficiency", f"must be one of {', '.join(EFFICIENCY_MODES)}, got {mode!r}")
    return mode


def best_for_stack(step_total_s, unfused_s_per_byte, tokens_per_step, feasible, unfused_bytes: float) -> int:
    """Index of the feasible layout with the least time per token once a stack adds
    ``unfused_bytes`` of elementwise traffic per hidden element per layer (step 1 above)."""
    idx = np.asarray(feasible)
    total = np.asarray(step_total_s)[idx] + unfused_bytes * np.asarray(unfused_s_per_byte)[idx]
    return int(idx[np.argmin(total / np.asarray(tokens_per_step)[idx])])


Z90 = 1.2815515655446004  # the standard normal's 90th percentile


def two_piece_sigmas(p10_factor: float, p90_factor: float) -> tuple[float, float]:
    """(sigma below, sigma above) of the two-piece log-normal whose median is 1 and whose 10th and
    90th percentiles are ``p10_factor`` and ``p90_factor``: the shape every band of a training
    estimate is read with (the published residuals are skewed: overruns are larger than savings)."""
    return -math.log(p10_factor) / Z90, math.log(p90_factor) / Z90


def probability_above(limit: float, p50: float, p10: float, p90: float) -> float:
    """P(X > limit) for X two-piece log-normal through (p10, p50, p90): the chance that a training
    cost, GPU-hour count or wall-clock overruns ``limit``."""
    from statistics import NormalDist

    if not (limit > 0 and p50 > 0):
        return 1.0
    lo, hi = two_piece_sigmas(p10 / p50, p90 / p50)
    x = math.log(limit / p50)
    sigma = lo if x < 0 else hi
    if sigma <= 0:
        return 0.0 if x >= 0 else 1.0
    return 1.0 - NormalDist().cdf(x / sigma)


def percentile_band(values, lo: float = 10.0, hi: float = 90.0) -> tuple[float, float]:
    """The ``lo``-th and ``hi``-th percentiles of ``values`` (numpy's linear interpolation)."""
    from ...base.stats import percentiles

    q = percentiles(np.asarray(values, dtype=float), [lo, hi])
    return float(q[0]), float(q[1])
