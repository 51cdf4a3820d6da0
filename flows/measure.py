"""Entry point: ``python flows/measure.py [--help]`` runs :mod:`scaling_planner.flows.measure`.

The flow lives in the installed package, so a team imports it from there:
``from scaling_planner.flows.measure import measure_with_ray_tasks``.
"""

import sys

from scaling_planner.flows.measure import main

if __name__ == "__main__":
    sys.exit(main())
