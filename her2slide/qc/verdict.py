"""The slide's QC verdict: each check either passes, flags (the slide is scored, and the
pathologist is told what to check), or fails (the slide is "not scored", never HER2 0).

A check fails only where no score can be trusted: too few tumour cells to estimate a
percentage at all, most of the tissue excluded, a washed-out or uncalibrated scan (every DAB
reading too low, unless the slide reads 3+ anyway), or background DAB at the level of a faint
membrane (every cell would read 1+). Everything
else that is unusual but scorable is a flag. Thresholds live in ``QcSettings``; where each
comes from is in docs/roi_and_qc.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from her2slide.config import Settings
from her2slide.qc.tile import REASONS
from her2slide.scoring import Criteria
from her2slide.stain import SlideStain


@dataclass(frozen=True)
class SlideEvidence:
    """What QC measured over a whole slide."""

    tumour_cells: int
    scope_um2: float  # tissue (inside the ROI) of the measured tiles
    excluded_um2: dict[str, float]  # per reason
    cells_removed: dict[str, int]  # by the ROI and by QC
    stain_stats: dict[str, float]  # counterstain_od, background_dab_od: medians over kept blocks
    stained_cells: int  # scored tumour cells whose membrane reads stained ...
    cytoplasmic_cells: int  # ... and of those, the ones whose stained cytoplasm lifts them by a class

    @property
    def excluded_fraction(self) -> float:
        return sum(self.excluded_um2.values()) / self.scope_um2 if self.scope_um2 > 0 else 0.0


@dataclass(frozen=True)
class Finding:
    """One check that did not pass: its flag, whether it stops the slide being scored, and what it says."""

    flag: str
    fails: bool
    sentence: str


def slide_verdict(evidence: SlideEvidence, stain: SlideStain, settings: Settings,
                  score: str | None = None) -> dict[str, Any]:
    """``report.json`` "qc": the verdict, every flag with its sentence, the areas and the stain numbers.
    ``score`` is what the slide's cells score: a check whose failure could only have lowered the
    score flags a 3+ instead of failing it."""
    findings = [f for check in _CHECKS for f in check(evidence, stain, settings, score)]
    excluded = sum(evidence.excluded_um2.values())
    return {
        "verdict": "fail" if any(f.fails for f in findings) else "pass",
        "flags": [f.flag for f in findings],
        "failed": [f.flag for f in findings if f.fails],
        "reasons": [f.sentence for f in findings if f.fails],
        "warnings": [f.sentence for f in findings if not f.fails],
        "tumour_cells": evidence.tumour_cells,
        "assessed_area_mm2": round(evidence.scope_um2 / 1e6, 4),
        "scored_area_mm2": round((evidence.scope_um2 - excluded) / 1e6, 4),
        "excluded": {reason: round(evidence.excluded_um2.get(reason, 0.0) / 1e6, 4) for reason in REASONS},
        "excluded_fraction": round(evidence.excluded_fraction, 4),
        "cells_removed": dict(evidence.cells_removed),
        "stain": {
            **{name: _rounded(value) for name, value in evidence.stain_stats.items()},
            "haematoxylin_vector": stain.haematoxylin.source, "dab_vector": stain.dab.source,
            **stain.to_dict(),
        },
    }


def _tumour_cells(evidence: SlideEvidence, stain: SlideStain, settings: Settings, score: str | None) -> list[Finding]:
    """ASCO/CAP set no minimum for IHC; a percentage needs some cells, and a gastric biopsy is
    scored on a cluster of 5 (docs/roi_and_qc.md, "How many tumour cells")."""
    qc, n = settings.qc, evidence.tumour_cells
    biopsy = settings.criteria is Criteria.GASTRIC_BIOPSY
    minimum = qc.min_tumour_cells_gastric_biopsy if biopsy else qc.min_tumour_cells
    if n < minimum:
        return [Finding("few_tumour_cells", True,
                        f"only {n} tumour cells in the scored area; at least {minimum} are needed "
                        f"({'a cohesive cluster' if biopsy else 'for a percentage of tumour cells'})")]
    if n < qc.flag_tumour_cells:
        return [Finding("few_tumour_cells", False,
                        f"{n} tumour cells scored (fewer than {qc.flag_tumour_cells}; one cell is "
                        f"{100 / n:.1f}% of them): check on the image that they represent the tumour")]
    return []


def _excluded(evidence: SlideEvidence, stain: SlideStain, settings: Settings, score: str | None) -> list[Finding]:
    fraction, limit = evidence.excluded_fraction, settings.qc.max_excluded_fraction
    if fraction <= limit:
        return []
    parts = ", ".join(f"{r} {100 * a / evidence.scope_um2:.0f}%" for r, a in evidence.excluded_um2.items() if a > 0)
    return [Finding("too_much_excluded", True,
                    f"QC excluded {100 * fraction:.0f}% of the tissue ({parts}); at most {100 * limit:g}% may be")]


def _washed_out(evidence: SlideEvidence, stain: SlideStain, settings: Settings, score: str | None) -> list[Finding]:
    """DAB is scored in absolute optical density, so the scan must be on the scale the thresholds
    were set for. The counterstain is the slide's own reference for that scale (it does not
    depend on HER2): an over-exposed or washed-out scan shrinks it with every DAB reading, as
    does a scanner or stain the thresholds were never calibrated for. Such a scan can only have
    lowered the score, so a 3+ stands (flagged); anything lower is not scored."""
    qc = settings.qc
    counterstain = evidence.stain_stats.get("counterstain_od", math.nan)
    limit = qc.min_counterstain_ratio * qc.reference_counterstain_od
    if not math.isfinite(counterstain) or counterstain >= limit:
        return []
    share = counterstain / qc.reference_counterstain_od
    measured = (f"the counterstain (nuclear OD {counterstain:.3f}) is {100 * share:.0f}% "
                f"of the reference the DAB thresholds were set at ({qc.reference_counterstain_od:g}; at least "
                f"{100 * qc.min_counterstain_ratio:g}% is expected)")
    if score == "3+":
        return [Finding("washed_out", False, f"{measured}: a paler scan or stain can only have lowered the score, so "
                                             "3+ stands; check that unstained tumour cells were found")]
    return [Finding("washed_out", True, f"{measured}: the scan looks washed out or over-exposed, or comes from a "
                                        "scanner or stain that was not calibrated, so every DAB reading may be too "
                                        "pale; rescan, or calibrate this scanner (her2slide calibrate on its controls)")]


def _background(evidence: SlideEvidence, stain: SlideStain, settings: Settings, score: str | None) -> list[Finding]:
    background = evidence.stain_stats.get("background_dab_od", math.nan)
    if not math.isfinite(background):
        return []
    faint = settings.scoring.faint_od
    if background >= faint:
        return [Finding("background_dab", True,
                        f"background DAB over the tissue (OD {background:.3f}) reaches the faint membrane level "
                        f"({faint:g}): every membrane would read stained; repeat the stain, or, if this is the "
                        "scanner's colour, give its white point (stain.white_point)")]
    if background > settings.qc.max_background_dab_od:
        return [Finding("background_dab", False,
                        f"background DAB over the tissue (OD {background:.3f}) is above what DAB-free tissue shows "
                        f"({settings.qc.max_background_dab_od:g}): check the background and the negative control; "
                        "faint (1+) calls may be raised")]
    return []


def _dark_counterstain(evidence: SlideEvidence, stain: SlideStain, settings: Settings, score: str | None) -> list[Finding]:
    counterstain, qc = evidence.stain_stats.get("counterstain_od", math.nan), settings.qc
    if not math.isfinite(counterstain) or counterstain <= qc.max_counterstain_od:
        return []
    return [Finding("dark_counterstain", False,
                    f"the haematoxylin counterstain is dark (nuclear OD {counterstain:.3f}, above "
                    f"{qc.max_counterstain_od:g}): check that faint membrane staining is not masked")]


def _white_point(evidence: SlideEvidence, stain: SlideStain, settings: Settings, score: str | None) -> list[Finding]:
    if stain.white.source != "tissue":
        return []
    return [Finding("no_glass", False,
                    "no glass in the image: the white point is the palest tissue, so DAB spread evenly over all of "
                    "it cannot be measured; check the background by eye (or give the scanner's stain.white_point)")]


def _cytoplasmic(evidence: SlideEvidence, stain: SlideStain, settings: Settings, score: str | None) -> list[Finding]:
    qc = settings.qc
    if evidence.stained_cells < qc.cytoplasmic_min_cells:
        return []
    share = evidence.cytoplasmic_cells / evidence.stained_cells
    if share < qc.cytoplasmic_flag_share:
        return []
    return [Finding("cytoplasmic_staining", False,
                    f"in {100 * share:.0f}% of the scored stained tumour cells stained cytoplasm lifts the membrane "
                    "reading by a class: the score may be a class too high; check that membrane, not cytoplasmic, "
                    "staining decides it")]


_CHECKS = (_tumour_cells, _excluded, _washed_out, _background, _dark_counterstain, _white_point, _cytoplasmic)


def _rounded(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None
