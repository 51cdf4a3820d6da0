"""A scaling sweep: train a ladder of small real GPTs, fit the law, predict the next rung before training it.

- :mod:`.design`: the sweep definition (:class:`~.design.SweepDefinition`, its ``default`` and ``ci``
  presets), the isoFLOP ladder snapped to real GPT shapes, up-front validation, and the fitter's
  suggestion of the extra runs that most narrow the uncertainty at the held-out rung.
- :mod:`.store`: results appended as each rung finishes (one JSON record per rung + ``runs.csv`` that
  ``planner fit`` reads), atomic writes, resume by run key.
- :mod:`.heldout`: the held-out prediction with its interval from bootstrap draws, and the verdict.
- :mod:`.report`: the ``sweep.json`` document, the summary lines and the plots.
- :mod:`.runner`: :func:`~.runner.run_sweep`, the one code path of ``planner sweep`` and
  ``flows/scaling_sweep.py`` (rungs as Ray tasks calling :func:`~scaling_planner.train.train_gpt`).

Importing this package imports neither torch nor ray; the functions that need them import them.
"""

from .design import SweepDefinition

__all__ = ["SweepDefinition"]
