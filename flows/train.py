"""Entry point: ``python flows/train.py [--help]`` runs :mod:`scaling_planner.flows.train`.

The flow lives in the installed package, so a team imports it from there:
``from scaling_planner.flows.train import train``.
"""

import sys

from scaling_planner.flows.train import main

if __name__ == "__main__":
    sys.exit(main())
