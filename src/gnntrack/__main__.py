"""``python -m gnntrack``: the same command line as the ``gnntrack`` entry point."""

import sys

from gnntrack.cli import main

sys.exit(main())
