"""The models a user would weigh against the plan, each trained on the plan's GPUs:

* compute-optimal: the plan itself (Hoffmann 2022 Eq. 4 allocation of C);
* over-trained 2x and 10x smaller: N/k trained on the tokens that reach the same loss
  (L(N, D) = E + A/N^α + B/D^β solved for D at fixed N, Hoffmann Eq. 2);
* with a lifetime inference demand T: the inference-optimal model (Sardana 2024), the minimal
  lifetime dollars at the same loss (training MFU, and the plan fleet's effective inference MFU or
  an assumed one), or without the simulator the minimal lifetime FLOPs 6·N·D + 2·N·T.

Under a unique-token cap the losses are Muennighoff 2023's L(N, D, U), the over-trained models
repeat data to reach the plan's loss, the Chinchilla allocation of the same compute is shown with
the loss it really reaches, and the inference-optimal model (Sardana assumes fresh data) is left
out. With a serving fleet (:mod:`.serving`) each model's inference cost is its own simulated
fleet's; without one, 2·N FLOPs per token at an assumed MFU and the training price.

The inference-aware law loads inside the functions (cold start of ``planner recommend``).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from ..base.units import SECONDS_PER_HOUR
from ..laws.chinchilla import FLOPS_PER_PARAM_TOKEN

OVERTRAIN_SHRINK = (2.0, 10.0)  # over-trained alternatives: models 2x and 10x smaller than optimal


class Alternative(BaseModel):
    """A model a user would weigh against the plan, reaching the same loss (or the lifetime optimum)."""

    name: str
    description: str
    params: float
    tokens: float | None = Field(None, description="None: this size cannot reach the loss under the law")
    tokens_per_param: float | None = None
    loss: float
    compute_flops: float | None = Field(None, description="training compute 6·N·D (FLOPs)")
    gpus: int | None = None
    wall_clock_days: float | None = None
    gpu_hours: float | None = None
    cost_usd: float | None = None
    mfu: float | None = None
    inference_flops: float | None = Field(None, description="2·N per token over the lifetime demand")
    inference_cost_usd: float | None = Field(
        None, description="serving cost over the demand (serving simulator) or, without one, 2·N FLOPs per token at "
        "an assumed MFU")
    serving_devices: int | None = Field(None, description="devices of the fleet that serves the demand")
    serving_cost_usd: float | None = Field(None, description="fleet cost per day x serving days")
    lifetime_flops: float | None = None
    lifetime_cost_usd: float | None = None
    note: str = ""


def alternatives_for(regime, plan_loss: float, C: float, N: float, D: float, *, training, sim, profile,
                     inference_tokens: float | None, inference_mfu: float, fleet=None,
                     serving=None) -> list[Alternative]:
    """The alternatives of a plan of N, D at compute C reaching ``plan_loss`` (module docstring);
    each simulated on the plan's GPUs (``sim``, ``training``), none when planning at law level.
    ``regime``: the plan's data regime (:mod:`.data_regime`); Sardana's inference-optimal model
    assumes fresh data, so a regime that repeats data offers its own rows instead."""
    rows = [("compute-optimal", regime.plan_description, N, D)] + _overtrained_rows(regime, plan_loss, N)
    rows += regime.extra_alternatives(C)
    if inference_tokens is not None and not regime.repeats_data:
        rows.append(_inference_optimal_row(regime.law, plan_loss, training, inference_tokens, inference_mfu,
                                           serving))
    out = []
    for name, desc, n, d in rows:
        if not math.isfinite(d):
            out.append(Alternative(name=name, description=desc, params=n, loss=plan_loss,
                                   note=f"cannot reach loss {plan_loss:.4f} at this size under the law"))
            continue
        alt = dict(name=name, description=desc, params=n, tokens=d, tokens_per_param=d / n,
                   loss=float(regime.loss(n, d)), compute_flops=FLOPS_PER_PARAM_TOKEN * n * d)
        if sim is not None:
            _add_training(alt, sim, n, d, training.gpus, profile)
        if inference_tokens is not None:
            _add_inference(alt, n, inference_tokens, inference_mfu, fleet, training)
        out.append(Alternative(**alt))
    return out


# -- the rows: (name, description, N, D) ------------------------------------------------------------

def _overtrained_rows(regime, plan_loss: float, N: float) -> list[tuple]:
    """N/k for k in OVERTRAIN_SHRINK, on the tokens that reach ``plan_loss`` (inf: none do)."""
    rows = []
    for k in OVERTRAIN_SHRINK:
        n = N / k
        rows.append((f"over-trained {k:g}x smaller", f"N/{k:g}, trained on the tokens that reach the same loss "
                     "(L(N, D) solved for D" + (", data repeated)" if regime.repeats_data else ")"), n,
                     regime.tokens_for_loss_at_params(plan_loss, n)))
    return rows


def _inference_optimal_row(law, plan_loss: float, training, inference_tokens: float, inference_mfu: float,
                           serving) -> tuple:
    """Sardana 2024 at the plan's loss: minimal lifetime dollars on the plan's hardware (training
    MFU; the serving fleet's effective MFU, else ``inference_mfu``), or minimal lifetime FLOPs
    without the simulator."""
    from ..laws.inference_aware import compute_optimal, cost_optimal, usd_per_flop

    if training is None:
        p = compute_optimal(law, plan_loss, inference_tokens)
        return ("inference-optimal", "Sardana 2024: minimal lifetime FLOPs at the same loss", float(p.params),
                float(p.tokens))
    c = usd_per_flop(training.price_usd_per_device_hour, training.peak_flops_per_s)
    inf_mfu, how = inference_mfu, "assumed"
    if serving is not None:
        inf_mfu, how = min(1.0, serving.effective_mfu), "the plan's serving fleet's effective"
    p = cost_optimal(law, plan_loss, inference_tokens, 0.0, train_usd_per_flop=c, inference_usd_per_flop=c,
                     train_mfu=training.mfu, prefill_mfu=inf_mfu, decode_mfu=inf_mfu)
    desc = (f"Sardana 2024: minimal lifetime dollars at the same loss (training MFU {training.mfu:.3f}, "
            f"{how} inference MFU {inf_mfu:.3g})")
    return ("inference-optimal", desc, float(p.params), float(p.tokens))


# -- costs ------------------------------------------------------------------------------------------

def _add_note(alt: dict, note: str) -> None:
    alt["note"] = f"{alt['note']}; {note}" if alt.get("note") else note


def _add_training(alt: dict, sim, n: float, d: float, gpus: int, profile) -> None:
    """The simulated training of (n, d) on the plan's ``gpus``, or a note that it does not fit."""
    r = sim(n, d, gpus)
    if r is None:
        _add_note(alt, f"does not fit on {gpus} x {profile.name}")
        return
    t = r.training
    alt.update(gpus=gpus, wall_clock_days=t.wall_clock_days, gpu_hours=t.gpu_hours, cost_usd=t.cost_usd, mfu=t.mfu)


def _add_inference(alt: dict, n: float, inference_tokens: float, inference_mfu: float, fleet, training) -> None:
    """Inference FLOPs 2·N·T and lifetime FLOPs; inference and lifetime cost by the model's own
    serving ``fleet``, else by 2·N FLOPs per token at ``inference_mfu`` and the training price."""
    from ..laws.inference_aware import INFERENCE_FLOPS_PER_PARAM_TOKEN

    inf_flops = INFERENCE_FLOPS_PER_PARAM_TOKEN * n * inference_tokens
    alt.update(inference_flops=inf_flops, lifetime_flops=alt["compute_flops"] + inf_flops)
    inf_usd = None
    if fleet is not None:
        fp = fleet.plan(n)
        if isinstance(fp, str):
            _add_note(alt, "no serving fleet meets the SLO")
        else:
            inf_usd = fleet.cost_usd(n)
            alt.update(serving_devices=fp.devices, serving_cost_usd=inf_usd)
    elif training is not None:
        inf_usd = (inf_flops / (training.peak_flops_per_s * inference_mfu) / SECONDS_PER_HOUR
                   * training.price_usd_per_device_hour)
    if inf_usd is not None:
        alt["inference_cost_usd"] = inf_usd
        if alt.get("cost_usd") is not None:
            alt["lifetime_cost_usd"] = alt["cost_usd"] + inf_usd
