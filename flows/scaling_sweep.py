"""Entry point: ``python flows/scaling_sweep.py [--help]`` runs :mod:`scaling_planner.flows.scaling_sweep`.

The flow lives in the installed package, so a team imports it from there:
``from scaling_planner.flows.scaling_sweep import scaling_sweep``.
"""

import sys

from scaling_planner.flows.scaling_sweep import main

if __name__ == "__main__":
    sys.exit(main())
