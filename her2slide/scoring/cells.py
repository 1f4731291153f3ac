"""Per-cell membrane intensity and HER2 class, vectorised over whole cell tables.

A slide has up to millions of cells, so everything here is array arithmetic; no Python loop
runs over cells.
"""

from __future__ import annotations

import numpy as np

from .rules import Criteria, Intensity, ScoringRules, parse_criteria

__all__ = ["intensity_class", "classify_cells"]


def _finite_float(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def intensity_class(intensity_od: np.ndarray, rules: ScoringRules) -> np.ndarray:
    """Intensity code (int8 ``Intensity``) per cell: the highest OD threshold reached.

    Negative ODs (deconvolution noise on unstained membrane) are simply NONE.
    """
    od = _finite_float("intensity_od", intensity_od)
    # searchsorted with side="right": an OD exactly on a threshold reaches that class.
    edges = np.array([rules.faint_od, rules.moderate_od, rules.intense_od])
    return np.searchsorted(edges, od, side="right").astype(np.int8)


def classify_cells(
    intensity_od: np.ndarray,
    completeness: np.ndarray,
    lateral: np.ndarray,
    rules: ScoringRules,
    criteria: Criteria | str,
) -> np.ndarray:
    """HER2 class code per cell (int8, index into ``CELL_CLASSES``) from its membrane measurements.

    Parameters
    ----------
    intensity_od : mean DAB optical density on the cell's stained membrane.
    completeness : stained fraction of the circumference, 0-1.
    lateral : the stained part is basolateral/lateral (U-shaped) rather than scattered arcs.
    rules, criteria : thresholds and the rule set (breast or gastric).

    The three inputs broadcast against each other (e.g. ``lateral=False`` for all cells).
    """
    crit = parse_criteria(criteria)
    od = _finite_float("intensity_od", intensity_od)
    comp = _finite_float("completeness", completeness)
    if np.any((comp < 0.0) | (comp > 1.0)):
        raise ValueError("completeness must lie in [0, 1]")
    od, comp, lat = np.broadcast_arrays(od, comp, np.asarray(lateral, dtype=bool))

    level = intensity_class(od, rules)
    # A speck of stain on a sliver of membrane is not membrane staining.
    level[comp < rules.min_stained_fraction] = Intensity.NONE
    complete = comp >= rules.complete_fraction

    faint = level == Intensity.FAINT
    moderate = level == Intensity.MODERATE
    intense = level == Intensity.INTENSE
    out = np.zeros(level.shape, dtype=np.int8)

    if crit is Criteria.BREAST:
        faint_complete = np.int8(1 if rules.faint_complete_class == "1+" else 2)
        out[faint] = 1
        out[faint & complete] = faint_complete
        out[moderate] = np.where(complete[moderate] | lat[moderate], 2, 1)
        out[intense] = np.where(complete[intense], 3, 2)
    else:
        # Gastric: complete, basolateral or lateral staining all count as "complete".
        full = complete | lat
        out[faint] = 1
        out[moderate] = np.where(full[moderate], 2, 1)
        out[intense] = np.where(full[intense], 3, 1)
    return out
