"""Fit the DAB intensity thresholds from labelled control slides or cores.

A lab scans controls of known score (for example its 0 / 1+ / 2+ / 3+ control cores),
measures every cell with the current settings, and asks: which faint / moderate / intense
thresholds reproduce the known scores? Every candidate triple on a grid is scored with the
real rule engine (no second copy of the rules); among the triples that reproduce the most
controls we take the centre of that feasible set, and report its extent per threshold, which
is how well the controls pin each threshold down.

Completeness is measured with the faint threshold (a sector is stained above it), so when
the fitted faint threshold moves the controls are measured again and the fit repeated once.

A threshold is fitted only when controls on both of its sides were measured (``faint_od``
needs a 0 and a 1+ control, ``moderate_od`` a 1+ and a 2+, ``intense_od`` a 2+ and a 3+).
Otherwise the controls bound it on one side at most, and any value beyond that bound would be
an invention: it keeps its starting value and the result says so. A control that cannot be
measured (unreadable, no tumour cells, failed QC) is reported with its one-line reason and the
fit uses the others.

The controls' counterstain (QC's nuclear haematoxylin statistic) is kept as the reference the
fitted thresholds belong to (``qc.reference_counterstain_od``): a later slide far paler than it
was scanned or stained differently from the controls, and QC says so (her2slide.qc.verdict).
QC's washed-out check, which compares a slide with that reference, is the one QC failure a
control may have: calibrating is what it asks for.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from her2slide.config import Settings
from her2slide.errors import InputError
from her2slide.run.lazy_segmenter import SegmenterOnFirstUse
from her2slide.run.pipeline import score_slide_file
from her2slide.run.progress import Progress, no_progress
from her2slide.scoring import CELL_CLASSES, ScoringRules, classify_cells, score_slide

GRID = np.round(np.geomspace(0.04, 1.6, 32), 4)
#: The control scores on either side of each threshold: both are needed to fit it.
THRESHOLD_SIDES = {"faint_od": ("0", "1+"), "moderate_od": ("1+", "2+"), "intense_od": ("2+", "3+")}


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
    kept: dict[str, str] = field(default_factory=dict)  # threshold -> why it kept its starting value
    failed: list[InputError] = field(default_factory=list)  # controls that could not be measured


#: Progress for one control, given its position and the number of controls.
ControlProgress = Callable[[int, int, Control], Progress]


def measure_controls(controls: list[Control], settings: Settings, segmenter: SegmenterOnFirstUse | None = None,
                     progress: ControlProgress | None = None) -> tuple[list[ControlCells], list[InputError]]:
    """Measure every cell of every control with ``settings`` (outputs go to a temp folder).

    A control that cannot be scored — not readable, no tumour cells, failed QC (but for the
    washed-out check, :func:`_unscorable`) — is returned as an ``InputError`` with its reason,
    not measured: a control's cells calibrate the stain only if they could be scored."""
    segmenter = segmenter or SegmenterOnFirstUse(settings)
    measured, failed = [], []
    with tempfile.TemporaryDirectory(prefix="her2slide-calibrate-") as tmp:
        for i, control in enumerate(controls, start=1):
            shown = progress(i, len(controls), control) if progress else no_progress
            try:
                outcome = score_slide_file(control.path, tmp, settings, mpp=control.mpp, segmenter=segmenter,
                                           progress=shown)
            except InputError as exc:
                if segmenter.failed is not None:
                    raise  # the model itself cannot be loaded: no control can be measured
                failed.append(exc)
                continue
            unscorable = _unscorable(outcome.report)
            if unscorable:
                failed.append(InputError(control.path, f"failed QC ({'; '.join(unscorable)}); "
                                                       "a control must be scorable"))
                continue
            table = pq.read_table(outcome.out_dir / "cells.parquet",
                                  columns=["stained_dab_od", "completeness", "lateral", "x_um", "y_um"])
            cols = {name: table.column(name).to_numpy() for name in table.column_names}
            measured.append(ControlCells(control, cols["stained_dab_od"], cols["completeness"], cols["lateral"],
                                         np.column_stack([cols["x_um"], cols["y_um"]]),
                                         outcome.report["qc"]["stain"]["counterstain_od"]))
    return measured, failed


def _unscorable(report: dict) -> list[str]:
    """Why a control's cells cannot calibrate: QC's failures, but for the washed-out check, which
    judges the scan against the very reference the controls are measured to set."""
    qc = report["qc"]
    if qc["verdict"] != "fail":
        return []
    return [why for flag, why in zip(qc["failed"], qc["reasons"]) if flag != "washed_out"]


def _predict(cells: ControlCells, rules: ScoringRules, settings: Settings) -> tuple[str, dict[str, float]]:
    classes = classify_cells(cells.stained_od, cells.completeness, cells.lateral, rules, settings.criteria)
    result = score_slide(classes, settings.criteria, rules, xy_um=cells.xy_um)
    return result.score, result.percent


def kept_thresholds(measured: list[ControlCells], settings: Settings) -> dict[str, str]:
    """The thresholds the controls cannot pin (no control on one side), each with why."""
    scores = {cells.control.score for cells in measured}
    kept = {}
    for name, sides in THRESHOLD_SIDES.items():
        missing = [score for score in sides if score not in scores]
        if missing:
            kept[name] = (f"no {' or '.join(missing)} control: {name} keeps its starting value "
                          f"{getattr(settings.scoring, name):g} (a control on each side, {sides[0]} and {sides[1]}, "
                          "is needed to fit it)")
    return kept


def fit_thresholds(measured: list[ControlCells], settings: Settings, grid: np.ndarray = GRID) -> CalibrationResult:
    """Grid search over increasing (faint, moderate, intense) triples; centre of the best set.
    Thresholds without a control on each side stay at their starting values (:func:`kept_thresholds`)."""
    base = settings.scoring.model_dump()
    kept = kept_thresholds(measured, settings)
    names = tuple(THRESHOLD_SIDES)
    choices = [[base[name]] if name in kept else sorted({*map(float, grid), base[name]}) for name in names]
    best: list[tuple[float, float, float]] = []
    best_correct = -1
    for triple in itertools.product(*choices):
        if not triple[0] < triple[1] < triple[2]:
            continue
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
    ranges = {name: (float(np.min(np.array(best)[:, i])), float(np.max(np.array(best)[:, i])))
              for i, name in enumerate(names)}
    per_control = []
    for cells in measured:
        predicted, percent = _predict(cells, rules, settings)
        per_control.append({"path": str(cells.control.path), "label": cells.control.score, "predicted": predicted,
                            "cells": int(len(cells.stained_od)), "counterstain_od": cells.counterstain_od,
                            "percent": {k: round(percent[k], 2) for k in CELL_CLASSES}})
    return CalibrationResult(rules, best_correct, len(measured), ranges, per_control, kept)


def calibrate(controls: list[Control], settings: Settings, grid: np.ndarray = GRID,
              progress: ControlProgress | None = None) -> tuple[Settings, CalibrationResult]:
    """Measure, fit, and (if the faint threshold moved) measure again and refit once; the fitted
    settings carry the controls' counterstain as QC's reference.

    Raises ``InputError`` when no control could be measured (the first one's reason)."""
    segmenter = SegmenterOnFirstUse(settings)
    measured, failed = measure_controls(controls, settings, segmenter, progress)
    if not measured:
        raise failed[0]
    result = fit_thresholds(measured, settings, grid)
    if abs(np.log(result.rules.faint_od / settings.scoring.faint_od)) > 0.1:
        measured, _ = measure_controls([cells.control for cells in measured],
                                       settings.model_copy(update={"scoring": result.rules}), segmenter, progress)
        result = fit_thresholds(measured, settings, grid)
    return _fitted(settings, result, measured), replace(result, failed=failed)


def _fitted(settings: Settings, result: CalibrationResult, measured: list[ControlCells]) -> Settings:
    """``settings`` with the fitted thresholds and, where the controls had one, their median
    counterstain as QC's reference."""
    counterstain = [c.counterstain_od for c in measured if c.counterstain_od is not None]
    qc = settings.qc
    if counterstain:
        qc = qc.model_copy(update={"reference_counterstain_od": round(float(np.median(counterstain)), 4)})
    return settings.model_copy(update={"scoring": result.rules, "qc": qc})
