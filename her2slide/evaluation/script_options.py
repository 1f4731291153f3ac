"""The command-line options every real-data evaluation script shares."""

from __future__ import annotations

import argparse
from pathlib import Path


def evaluation_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the shared data folder and the detector under test: ``--data``, ``--config``,
    ``--segmenter classical|cnn`` and ``--model WEIGHTS`` (a CNN weights file; default the shipped one)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--segmenter", choices=("cnn", "classical"))
    parser.add_argument("--model", type=Path, help="CNN weights (default: the shipped model)")
    return parser
