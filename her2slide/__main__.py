"""``python3 -m her2slide``: the same command as ``her2slide``."""

import sys

from her2slide.cli.main import main

sys.exit(main())
