"""Entry point: ``python flows/preflight.py [--help]`` runs :mod:`scaling_planner.flows.preflight`.

The flow lives in the installed package, so a team imports it from there:
``from scaling_planner.flows.preflight import preflight``.
"""

import sys

from scaling_planner.flows.preflight import main

if __name__ == "__main__":
    sys.exit(main())
