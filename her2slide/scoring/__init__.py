"""ASCO/CAP HER2 scoring: per-cell classes, slide score/status/category, ISH groups.

Breast (ASCO/CAP 2018, affirmed 2023), gastric resection and gastric biopsy criteria;
every threshold and open choice lives in ``ScoringRules`` (see docs/scoring.md).

Names are loaded on first use (PEP 562) so that importing ``her2slide.cli.ish`` to
register the ``ish`` subcommand does not import pydantic or scipy: ``her2slide --help``
stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from her2slide._lazy import lazy_exports

if TYPE_CHECKING:
    from .cells import classify_cells, intensity_class
    from .clusters import largest_cluster_sizes
    from .counts import exceeds_percent, score_counts
    from .ish import IshResult, ish_group, ish_result
    from .rules import CELL_CLASSES, Criteria, Intensity, ScoringRules
    from .slide import SlideScore, score_slide

_WHERE = {
    "CELL_CLASSES": "rules",
    "Criteria": "rules",
    "Intensity": "rules",
    "ScoringRules": "rules",
    "classify_cells": "cells",
    "intensity_class": "cells",
    "largest_cluster_sizes": "clusters",
    "exceeds_percent": "counts",
    "score_counts": "counts",
    "IshResult": "ish",
    "ish_group": "ish",
    "ish_result": "ish",
    "SlideScore": "slide",
    "score_slide": "slide",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
