"""The command line: one module per command, over the library API (``her2slide`` is :func:`main`).

Each command module has ``add_parser(subparsers)`` and imports its heavy dependencies only when it
runs, so ``her2slide --help`` stays instant; :mod:`her2slide.cli.options` holds what commands share.
"""

from her2slide.cli.main import main

__all__ = ["main"]
