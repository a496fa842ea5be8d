"""``python -m sonic``: the same entry point as the ``sonic`` console script."""

import sys

from sonic.cli import main

sys.exit(main())
