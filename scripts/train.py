"""Train the membrane CNN; the same as ``her2slide train`` (see models/README.md for the shipped recipe)."""

import sys

from her2slide.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
