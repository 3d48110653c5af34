"""``python -m sar_despeckle_plugin.batch``: see ``cli``."""

import sys

from .cli import main

sys.exit(main())
