"""``python -m scaling_planner VERB ...`` is ``planner VERB ...``."""

import sys

from .cli import main

sys.exit(main())
