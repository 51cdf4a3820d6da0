"""Prefect flows, importable from the installed package (``pip install scaling-planner[flows]``):

* :mod:`.preflight` -- measure the cluster, plan, gate, size the Ray job (the pre-flight step a training
  flow imports: ``from scaling_planner.flows.preflight import preflight, PreflightRequest``);
* :mod:`.train` -- a real training flow with the pre-flight in front (a small GPT as a Ray Train job);
* :mod:`.measure` -- the cluster measurement as Prefect tasks on Ray (prefect-ray's RayTaskRunner);
* :mod:`.scaling_sweep` -- train a ladder of small GPTs, fit the law, predict a held-out rung.

Each module is also a command (``python -m scaling_planner.flows.preflight --help``); the repository's
``flows/*.py`` are thin entry points to them and ``prefect.yaml`` deploys them. Importing a flow module
imports prefect and sets the no-telemetry environment defaults (``common.QUIET_ENV``) before it does.
"""
