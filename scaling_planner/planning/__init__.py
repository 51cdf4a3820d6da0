"""The optional sections of a plan, one module each, assembled by :mod:`scaling_planner.planner`:

* :mod:`.calibration`: which measured MFU / matmul rate of the calibration history the plan uses;
* :mod:`.data_constrained`: the Muennighoff 2023 allocation under a unique-token cap;
* :mod:`.moe`: the Krajewski 2024 fine-grained MoE allocation at the plan's compute;
* :mod:`.serving`: serving the planned model at a demand, and the lifetime cost it implies.

Each module imports only pydantic at the top (the plan's startup path); numpy, the laws and the
simulators load inside the functions. Their output models are built lazily (``defer_build``), so
a plan that does not use a section does not pay for its schema.
"""
