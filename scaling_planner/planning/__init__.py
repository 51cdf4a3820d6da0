"""The steps and the optional sections of a plan, one module each, run in order by
:func:`scaling_planner.planning.recommend.recommend`:

* :mod:`.request`: the request, one pydantic model for the CLI, the API, the tasks and the pre-flight
  (one objective, positive numbers, what needs a profile);
* :mod:`.data_regime`: fresh data or a unique-token cap, behind one interface;
* :mod:`.hardware`: the GPU profile, the calibration records used, the simulator calibrated with them;
* :mod:`.compute`: the training compute C an objective asks for (closed form, or bisection in log C
  over the simulator, :mod:`.search`) and where C lands (N, D on a GPU count);
* :mod:`.training`: the memoised training simulator, the default GPU count, the ``training`` block;
* :mod:`.uncertainty`: bands over the law's parameter draws;
* :mod:`.alternatives`: over-trained and inference-optimal models at the same loss, with their costs;

* :mod:`.plan`: the plan's models (:class:`~.plan.Recommendation` and its sections' types);

and the optional sections:

* :mod:`.data_constrained`: the Muennighoff 2023 allocation under a unique-token cap;
* :mod:`.moe`: the Krajewski 2024 fine-grained MoE allocation at the plan's compute;
* :mod:`.serving`: serving the planned model at a demand, and the lifetime cost it implies.

Each module imports at the top only pydantic and what the planner has loaded already (the package's
errors, units and Chinchilla law); the profiles, the simulators, the energy model and the other laws
load inside the functions (cold start of ``planner recommend``). The optional sections' output
models are built lazily (``defer_build``), so a plan that does not use a section does not pay for
its schema.
"""
