"""Fit the DAB intensity thresholds from labelled control slides or cores.

A lab scans controls of known score (for example its 0 / 1+ / 2+ / 3+ control cores),
measures every cell with the current settings, and asks: which faint / moderate / intense
thresholds reproduce the known scores? Every candidate triple on a grid is scored with the
real rule engine (no second copy of the rules); among the triples that reproduce the most
controls we take the centre of that feasible set, and report its extent per threshold, which
is how well the controls pin each threshold down.

Completeness is measured with the faint threshold (a sector is stained above it), so when
the fitted faint threshold moves the controls are measured again and the fit repeated once.

The controls' counterstain (QC's nuclear haematoxylin statistic) is kept as the reference the
fitted thresholds belong to (``qc.reference_counterstain_od``): a later slide far paler than it
was scanned or stained differently from the controls, and QC says so (her2slide.qc.verdict).
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from her2slide.config import Settings
from her2slide.pipeline import score_slide_file
from her2slide.scoring import CELL_CLASSES, ScoringRules, classify_cells, score_slide

GRID = np.round(np.geomspace(0.04, 1.6, 32), 4)


@dataclass(frozen=True)
class Control:
    path: Path
    score: str
    mpp: float | None = None


@dataclass(frozen=True)
class ControlCells:
    control: Control
    stained_od: np.ndarray
    completeness: np.ndarray
    lateral: np.ndarray
    xy_um: np.ndarray
    counterstain_od: float | None = None  # QC's nuclear counterstain of the control


@dataclass(frozen=True)
class CalibrationResult:
    rules: ScoringRules
    correct: int
    total: int
    feasible_range: dict[str, tuple[float, float]]
    per_control: list[dict]


def measure_controls(controls: list[Control], settings: Settings) -> list[ControlCells]:
    """Measure every cell of every control with ``settings`` (outputs go to a temp folder)."""
    measured = []
    with tempfile.TemporaryDirectory(prefix="her2slide-calibrate-") as tmp:
        for control in controls:
            outcome = score_slide_file(control.path, tmp, settings, mpp=control.mpp)
            table = pq.read_table(outcome.out_dir / "cells.parquet",
                                  columns=["stained_dab_od", "completeness", "lateral", "x_um", "y_um"])
            cols = {name: table.column(name).to_numpy() for name in table.column_names}
            measured.append(ControlCells(control, cols["stained_dab_od"], cols["completeness"], cols["lateral"],
                                         np.column_stack([cols["x_um"], cols["y_um"]]),
                                         outcome.report["qc"]["stain"]["counterstain_od"]))
    return measured


def _predict(cells: ControlCells, rules: ScoringRules, settings: Settings) -> tuple[str, dict[str, float]]:
    classes = classify_cells(cells.stained_od, cells.completeness, cells.lateral, rules, settings.criteria)
    result = score_slide(classes, settings.criteria, rules, xy_um=cells.xy_um)
    return result.score, result.percent


def fit_thresholds(measured: list[ControlCells], settings: Settings, grid: np.ndarray = GRID) -> CalibrationResult:
    """Grid search over increasing (faint, moderate, intense) triples; centre of the best set."""
    base = settings.scoring.model_dump()
    best: list[tuple[float, float, float]] = []
    best_correct = -1
    for triple in itertools.combinations(np.sort(grid), 3):  # combinations of a sorted grid are increasing
        rules = ScoringRules.model_validate({**base, "faint_od": triple[0], "moderate_od": triple[1],
                                             "intense_od": triple[2]})
        correct = sum(_predict(cells, rules, settings)[0] == cells.control.score for cells in measured)
        if correct > best_correct:
            best, best_correct = [triple], correct
        elif correct == best_correct:
            best.append(triple)
    feasible = np.log(np.array(best))
    centre = np.exp(np.median(feasible, axis=0))
    # Snap the centre to the nearest feasible triple so the chosen thresholds really achieve it.
    chosen = best[int(np.argmin(np.abs(feasible - np.log(centre)).sum(axis=1)))]
    rules = ScoringRules.model_validate({**base, "faint_od": chosen[0], "moderate_od": chosen[1],
                                         "intense_od": chosen[2]})
    names = ("faint_od", "moderate_od", "intense_od")
    ranges = {name: (float(np.min(np.array(best)[:, i])), float(np.max(np.array(best)[:, i])))
              for i, name in enumerate(names)}
    per_control = []
    for cells in measured:
        predicted, percent = _predict(cells, rules, settings)
        per_control.append({"path": str(cells.control.path), "label": cells.control.score, "predicted": predicted,
                            "cells": int(len(cells.stained_od)), "counterstain_od": cells.counterstain_od,
                            "percent": {k: round(percent[k], 2) for k in CELL_CLASSES}})
    return CalibrationResult(rules, best_correct, len(measured), ranges, per_control)


def calibrate(controls: list[Control], settings: Settings, grid: np.ndarray = GRID) -> tuple[Settings, CalibrationResult]:
    """Measure, fit, and (if the faint threshold moved) measure again and refit once; the fitted
    settings carry the controls' counterstain as QC's reference."""
    measured = measure_controls(controls, settings)
    result = fit_thresholds(measured, settings, grid)
    if abs(np.log(result.rules.faint_od / settings.scoring.faint_od)) > 0.1:
        measured = measure_controls(controls, settings.model_copy(update={"scoring": result.rules}))
        result = fit_thresholds(measured, settings, grid)
    return _fitted(settings, result, measured), result


def _fitted(settings: Settings, result: CalibrationResult, measured: list[ControlCells]) -> Settings:
    """``settings`` with the fitted thresholds and, where the controls had one, their median
    counterstain as QC's reference."""
    counterstain = [c.counterstain_od for c in measured if c.counterstain_od is not None]
    qc = settings.qc
    if counterstain:
        qc = qc.model_copy(update={"reference_counterstain_od": round(float(np.median(counterstain)), 4)})
    return settings.model_copy(update={"scoring": result.rules, "qc": qc})
