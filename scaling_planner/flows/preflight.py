"""The pre-flight flow: measure the cluster, plan, gate, and size the training job.

Run it as the first step of a training flow (``flows/train.py`` does), serve or deploy it on its own, or
run it here with the defaults::

    python flows/preflight.py                      # measure local Ray, plan --target-loss 2.0, gate, size
    python flows/preflight.py --params 2e6 --tokens 3e7 --gpu cpu --deadline-days 0.01

Parameters are one pydantic model, :class:`PreflightRequest`, so the Prefect UI renders a form. A gate
that rejects raises :class:`~scaling_planner.base.errors.GateRejectedError`; the flow run then ends Failed with
the limits broken and by how much in its message. With no address the flow starts a local Ray instance
and Prefect's embedded server; nothing is fetched from the network.
"""

from __future__ import annotations

import contextlib
import sys

from .common import one_line_errors, quiet_environment, run_script

quiet_environment()

from prefect import flow, get_run_logger  # noqa: E402

from scaling_planner import tasks  # noqa: E402
from scaling_planner.base.errors import InfeasibleError  # noqa: E402
from scaling_planner.preflight.orchestration import (  # noqa: E402  (the request and result are this flow's API)
    PreflightRequest,
    PreflightResult,
    choose_gpu,
    gate_mfu,
    measurement_summary,
    summary_lines,
)


@flow(name="preflight", log_prints=True)
def preflight(request: PreflightRequest | None = None) -> PreflightResult:
    """Measure, plan, gate, size. Raises GateRejectedError (flow Failed) when the job breaks a limit."""
    from scaling_planner.measure.ray_session import ray_session

    req = request or PreflightRequest()
    logger = get_run_logger()
    notes: list[str] = []
    needs_ray = req.measure or req.size_job
    with ray_session(req.ray_address) if needs_ray else contextlib.nullcontext():
        measurement = None
        if req.measure:
            measurement = tasks.measure_cluster(req.ray_address, quick=req.quick_probes, save=req.save_measurement,
                                                calibration_dir=req.calibration_dir)
        gpu, on_cluster = choose_gpu(req, measurement, notes)
        use_calibration = req.calibration == "latest"
        calibration = tasks.load_calibration(gpu, req.calibration_dir) if use_calibration else []
        if use_calibration and not calibration:
            notes.append(f"no calibration for {gpu}: the plan uses the profile's assumed efficiency")
        plan, infeasible = None, None
        try:
            if req.params is not None:
                kind = "simulate"
                plan = tasks.simulate_training(req.params, req.tokens, gpu, req.gpus or 1, calibration=calibration,
                                               arch=req.arch, efficiency=req.efficiency)
            else:
                kind = "recommend"
                plan = tasks.recommend_plan(req.plan_request(gpu=gpu, calibration=calibration or None,
                                                             calibration_dir=None),
                                            law=req.law, law_file=req.law_file)
        except InfeasibleError as exc:
            infeasible = str(exc)
        mfu, mfu_source = gate_mfu(calibration, gpu)  # the record the plan itself would use, or none
        totals = measurement.totals if measurement is not None else None
        gate = tasks.preflight_gate(plan, req.limits, measured_mfu=mfu, mfu_source=mfu_source,
                                    infeasible_reason=infeasible,
                                    devices_measured=totals.devices if totals is not None else None,
                                    devices_ok=totals.devices_ok if totals is not None else None)
        job, job_note = None, None
        if req.size_job and on_cluster and plan is not None:
            workers = int(plan.training.gpus)
            from scaling_planner.hardware.profiles import load_profile
            from scaling_planner.preflight.sizing import accelerator_type_for_profile

            profile = load_profile(gpu)
            use_gpu = profile.kind != "cpu"
            job = tasks.size_ray_job(workers, ray_address=req.ray_address, use_gpu=use_gpu,
                                     cpus_per_worker=req.cpus_per_worker,
                                     accelerator_type=accelerator_type_for_profile(profile) if use_gpu else None,
                                     devices_per_node=int(profile.devices_per_node))
        elif req.size_job:
            job_note = "not sized: the plan is not for the measured cluster's hardware"
    result = PreflightResult(
        kind=kind, gpu=gpu, plan=plan.model_dump(mode="json") if plan is not None else None, gate=gate, job=job,
        job_note=job_note, calibration=[r.describe() for r in calibration],
        measurement=measurement_summary(measurement), notes=notes)
    for line in summary_lines(result):
        logger.info(line)
    return result


def _parse_args(argv: list[str]) -> PreflightRequest | None:
    """The request the flags give: one flag per field of :class:`PreflightRequest` (the planner's and
    the pre-flight's own, the gate's limits among them), made from the model (``--help``)."""
    from scaling_planner.cli import OneLineParser
    from scaling_planner.cli.options import add_model_arguments, build_request

    ap = OneLineParser(prog="python flows/preflight.py", description=__doc__.splitlines()[0])
    add_model_arguments(ap, PreflightRequest, every_field=True)
    ap.add_argument("--serve", action="store_true",
                    help="serve the flow as a deployment named 'preflight' (runs from the Prefect UI/API) instead")
    a = ap.parse_args(argv)
    if a.serve:
        return None
    return build_request(PreflightRequest, a, every_field=True)


def main(argv: list[str] | None = None) -> int:
    def build():
        request = _parse_args(sys.argv[1:] if argv is None else argv)
        if request is None:  # --serve: a long-lived process that runs the flow with the form's values
            one_line_errors()
            preflight.serve(name="preflight", description=__doc__.splitlines()[0])
        return request

    return run_script("preflight", build, preflight, summary_lines)


if __name__ == "__main__":
    sys.exit(main())
