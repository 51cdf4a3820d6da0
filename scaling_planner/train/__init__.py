"""A small real GPT training workload (torch) for the MFU meter, the training flow and the sweep.

Importing this package imports torch; the planner core never imports it (flows and tasks import it
inside their functions).

- :mod:`.gpt`: :class:`GPTConfig` (shape, parameter counts, FLOPs per token),
  :func:`config_for_params`, the :class:`GPT` module.
- :mod:`.data`: :class:`Corpus`, byte-level tokens of a text file with a train/validation split.
- :mod:`.loop`: :func:`train_gpt` -> :class:`TrainResult` (losses, tokens, time, MFU report).
"""

from .data import DEFAULT_CORPUS, Corpus
from .gpt import GPT, GPTConfig, config_for_params
from .loop import TrainResult, train_gpt

__all__ = ["DEFAULT_CORPUS", "GPT", "Corpus", "GPTConfig", "TrainResult", "config_for_params", "train_gpt"]
