"""What the commands share: the scoring options of ``score`` and ``batch``, the wording of a
result, and the one line an error ends as."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from her2slide.config import Settings

CRITERIA = ("breast", "gastric-resection", "gastric-biopsy")


def add_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (created if needed); each slide gets DIR/<slide stem>/")


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mpp", type=float, help="microns per level-0 pixel, for images without it (e.g. 0.25 for 40x)")
    parser.add_argument("--criteria", choices=CRITERIA,
                        help="scoring criteria (default from the config: breast); gastric/GEJ: gastric-resection for "
                             "resections and TMA cores, gastric-biopsy for endoscopic biopsies (README, 'Which --criteria')")
    parser.add_argument("--config", type=Path, help="settings YAML (see configs/default.yaml)")
    parser.add_argument("--segmenter", choices=("cnn", "classical"), help="classical colour deconvolution (the default), or cnn: the network detector (docs/evaluation.md)")
    parser.add_argument("--model", type=Path, help="CNN weights (default: the shipped models/her2slide-cells-v2.pt)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the CNN runs (default auto: CUDA if present)")


def settings_from_args(args: argparse.Namespace) -> "Settings":
    """Settings from --config, with the command line's choices on top."""
    from her2slide.config import load_settings

    settings = load_settings(args.config, criteria=args.criteria, segmenter=args.segmenter)
    model = {k: v for k, v in (("weights", args.model and str(args.model)), ("device", args.device)) if v}
    return settings.with_model(**model) if model else settings


def result_words(status: str, category: str | None) -> str:
    """Status and category, the category only where it adds something ("equivocal", not
    "equivocal, equivocal")."""
    return status if not category or category == status else f"{status}, {category}"


def fail(exc: Exception, status: int = 1) -> int:
    """The one line an input error ends as, ``her2slide: <file>: <reason>``, and the exit status
    (1, ExitStatus.FAILED, unless the command says otherwise)."""
    print(f"her2slide: {exc}", file=sys.stderr)
    return status


def report_unexpected(where: str, exc: BaseException) -> None:
    """One line for an error that is not the input's (a bug): where, its type and message."""
    from her2slide.slide.reader import short_cause

    print(f"her2slide: {where}: unexpected error ({type(exc).__name__}: {short_cause(exc, limit=200)}); "
          "please report it (HER2SLIDE_DEBUG=1 shows the traceback)", file=sys.stderr)
    if os.environ.get("HER2SLIDE_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
