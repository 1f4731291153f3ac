"""Biopsy sampling risk: how often simulated core-needle biopsies of a resection miss its HER2 score.

A focal HER2-positive population can be missed by a biopsy. Here each simulated core is a
rectangle on the scored section (width = the needle's core diameter, length = the needle's
throw), centred on a tumour cell drawn at random (the operator aims at the tumour) with a
random orientation; the tumour cells it covers are scored with the same rules as the slide.
Model, assumptions and definitions: docs/diagnostic_context.md.

Speed: cores are placed on a square lattice (``grid_um``) in a frame rotated to the core's
direction, so that one summed-area table of class counts per direction gives every core's
counts in O(1): 12,000 cores take seconds on a 100k-cell slide. The gastric-biopsy rule needs
cohesive clusters; count tables of slide-level clusters decide it for most cores, and only the
cores they cannot decide have their cells gathered and clustered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from her2slide.scoring import CELL_CLASSES, Criteria, ScoringRules, score_counts, score_slide
from her2slide.scoring.rules import parse_criteria
from her2slide.scoring.slide import class_codes

if TYPE_CHECKING:
    from her2slide.config import ContextSettings

__all__ = ["GAUGE_CORE_DIAMETER_UM", "CoreGeometry", "core_geometry", "sampling_risk", "format_table"]

#: Core diameter (µm) by needle gauge: the nominal inner diameter of a regular-wall needle of that
#: gauge (hypodermic needle gauge chart, after ISO 9626; outer diameters 2108, 1651, 1270 µm).
#: A cutting needle's core is at most this wide; fixation shrinks it further, so it is approximate.
GAUGE_CORE_DIAMETER_UM: dict[int, float] = {14: 1600.0, 16: 1194.0, 18: 838.0}

#: Lattice edge cap: a per-direction count table stays below MAX_BINS² x 7 int32 entries (29 MB).
MAX_BINS = 1024
#: Gastric-biopsy cluster search: at most this many (core, cell) memberships clustered at once.
MAX_MEMBERS = 2_000_000
NONDIAGNOSTIC = -1


@dataclass(frozen=True)
class CoreGeometry:
    """The simulated core as placed on the lattice (its size is a whole number of lattice steps)."""

    grid_um: float
    width_bins: int
    length_bins: int
    angles: int

    @property
    def width_um(self) -> float:
        return self.width_bins * self.grid_um

    @property
    def length_um(self) -> float:
        return self.length_bins * self.grid_um


def core_geometry(xy_um: np.ndarray, settings: ContextSettings) -> CoreGeometry:
    """Lattice step and core size in steps; the step grows on large sections to bound memory."""
    width = settings.core_width_um or GAUGE_CORE_DIAMETER_UM[settings.needle_gauge]
    extent = float(np.hypot(*np.ptp(xy_um, axis=0))) if len(xy_um) else 0.0
    grid = max(settings.grid_um, extent / (MAX_BINS - 1))
    return CoreGeometry(grid_um=grid, width_bins=max(1, round(width / grid)),
                        length_bins=max(1, round(settings.core_length_um / grid)), angles=settings.angles)


# ---------------------------------------------------------------- cores on a rotated lattice


@dataclass(frozen=True)
class _Lattice:
    """Cells binned in a frame rotated so that a core runs along the columns."""

    rows: np.ndarray  # (N,) bin across the core
    cols: np.ndarray  # (N,) bin along the core
    shape: tuple[int, int]


def _lattice(xy: np.ndarray, theta: float, grid_um: float) -> _Lattice:
    c, s = np.cos(theta), np.sin(theta)
    along = xy[:, 0] * c + xy[:, 1] * s
    across = xy[:, 1] * c - xy[:, 0] * s
    cols = ((along - along.min()) // grid_um).astype(np.int64)
    rows = ((across - across.min()) // grid_um).astype(np.int64)
    return _Lattice(rows, cols, (int(rows.max()) + 1, int(cols.max()) + 1))


def _boxes(lat: _Lattice, centres: np.ndarray, geo: CoreGeometry) -> np.ndarray:
    """(M, 4) row and column ranges r0, r1, c0, c1 (half-open) of cores centred on the given cells.

    Not clipped: a core may reach beyond the section, where there are no cells to count.
    """
    r0 = lat.rows[centres] - geo.width_bins // 2
    c0 = lat.cols[centres] - geo.length_bins // 2
    return np.column_stack([r0, r0 + geo.width_bins, c0, c0 + geo.length_bins])


def _clip(boxes: np.ndarray, lat: _Lattice, margin: int = 0) -> np.ndarray:
    """Boxes shrunk by ``margin`` bins on every side, then clipped to the lattice (empty stays empty)."""
    nr, nc = lat.shape
    r0, r1 = np.clip(boxes[:, 0] + margin, 0, nr), np.clip(boxes[:, 1] - margin, 0, nr)
    c0, c1 = np.clip(boxes[:, 2] + margin, 0, nc), np.clip(boxes[:, 3] - margin, 0, nc)
    return np.column_stack([r0, np.maximum(r0, r1), c0, np.maximum(c0, c1)])


def _summed_area(lat: _Lattice, channels: np.ndarray) -> np.ndarray:
    """(rows+1, cols+1, C) cumulative counts of cells per boolean channel (N, C): any box in four look-ups."""
    nr, nc = lat.shape
    cell, ch = np.nonzero(channels)
    n_ch = channels.shape[1]
    grid = np.bincount((lat.rows[cell] * nc + lat.cols[cell]) * n_ch + ch, minlength=nr * nc * n_ch)
    sat = np.zeros((nr + 1, nc + 1, n_ch), dtype=np.int32)  # int32: a section holds far fewer than 2^31 cells
    grid.astype(np.int32).reshape(nr, nc, n_ch).cumsum(axis=0, dtype=np.int32).cumsum(
        axis=1, dtype=np.int32, out=sat[1:, 1:])
    return sat


def _box_sums(sat: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M, C) counts inside clipped boxes."""
    r0, r1, c0, c1 = boxes.T
    return (sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]).astype(np.int64)


def _members(lat: _Lattice, cells: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(box index, cell index) of every listed cell inside each clipped box: one searchsorted per box row."""
    nc = lat.shape[1]
    key = lat.rows[cells] * nc + lat.cols[cells]
    order = np.argsort(key, kind="stable")
    skey, sorted_cells = key[order], cells[order]
    r0, r1, c0, c1 = boxes.T
    row = r0[:, None] + np.arange(int((r1 - r0).max(initial=0)))[None, :]
    lo = np.searchsorted(skey, row * nc + c0[:, None])
    n = np.where(row < r1[:, None], np.searchsorted(skey, row * nc + c1[:, None]) - lo, 0).ravel()
    starts = np.repeat(lo.ravel() - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
    box = np.repeat(np.repeat(np.arange(len(boxes)), row.shape[1]), n)
    return box, sorted_cells[starts]


def _largest_cluster(xy: np.ndarray, box: np.ndarray, cell: np.ndarray, n_boxes: int, link_um: float) -> np.ndarray:
    """(n_boxes,) size of the largest cohesive cluster among each box's member cells.

    All boxes are clustered in one KD-tree by laying them side by side, far enough apart that
    no link crosses from one box to the next.
    """
    from scipy.spatial import cKDTree

    from her2slide.scoring.clusters import cluster_labels

    largest = np.zeros(n_boxes, dtype=np.int64)
    if cell.size:
        stacked = xy[cell].copy()
        stacked[:, 0] += box * (float(np.ptp(xy[:, 0])) + 2.0 * link_um + 1.0)
        labels = cluster_labels(len(cell), cKDTree(stacked).query_pairs(r=link_um, output_type="ndarray"))
        np.maximum.at(largest, box, np.bincount(labels)[labels])
    return largest


def _slide_clusters(xy: np.ndarray, codes: np.ndarray, rules: ScoringRules) -> np.ndarray:
    """(N, 3) whether each cell lies in a slide-level cohesive cluster of >= cluster_min_cells cells of class >= k (k = 1..3)."""
    from her2slide.scoring.clusters import cluster_labels, neighbour_pairs

    pairs = neighbour_pairs(xy, rules.cluster_link_um)
    big = np.zeros((len(codes), 3), dtype=bool)
    for k in (1, 2, 3):  # three classes, not a loop over cells
        labels = cluster_labels(len(codes), pairs, codes >= k)
        inside = labels >= 0
        big[inside, k - 1] = np.bincount(labels[inside])[labels[inside]] >= rules.cluster_min_cells
    return big


def _cluster_reached(xy: np.ndarray, lat: _Lattice, boxes: np.ndarray, sums: np.ndarray, deep: np.ndarray,
                     big: np.ndarray, rules: ScoringRules) -> np.ndarray:
    """(M, 3) whether each core holds a cohesive cluster of >= cluster_min_cells cells of class >= k.

    Exact, without gathering most cores' cells. Any such cluster lies inside a slide-level
    cluster of at least that size ("big" cells), so a core with fewer big cells has none; and a
    big cell at least (min_cells - 1) links inside the core has a connected set of min_cells big
    cells around it (a breadth-first tree) wholly inside the core, so that core has one. Only
    cores whose big cells all lie near their edges are clustered cell by cell.
    """
    need = rules.cluster_min_cells
    reached = deep > 0
    for k in range(3):
        open_ = np.flatnonzero(~reached[:, k] & (sums[:, k] >= need))
        cells = np.flatnonzero(big[:, k])
        for chunk in _chunks(sums[open_, k]):
            box, cell = _members(lat, cells, boxes[open_[chunk]])
            reached[open_[chunk], k] = _largest_cluster(xy, box, cell, len(chunk), rules.cluster_link_um) >= need
    return reached


def _simulate_cores(xy: np.ndarray, codes: np.ndarray, centres: np.ndarray, angle_index: np.ndarray,
                    geo: CoreGeometry, rules: ScoringRules | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Class counts (M, 4) of each core and, when ``rules`` asks for the cluster rule, (M, 3) clusters reached."""
    channels = codes[:, None] == np.arange(4)
    big = None
    if rules is not None:
        big = _slide_clusters(xy, codes, rules)
        channels = np.concatenate([channels, big], axis=1)
        deep_margin = int(np.ceil((rules.cluster_min_cells - 1) * rules.cluster_link_um / geo.grid_um))
    counts = np.zeros((len(centres), 4), dtype=np.int64)
    reached = None if rules is None else np.zeros((len(centres), 3), dtype=bool)
    for a in np.unique(angle_index):  # one lattice per core direction, not a loop over cores
        lat = _lattice(xy, np.pi * a / geo.angles, geo.grid_um)
        sel = np.flatnonzero(angle_index == a)
        boxes = _boxes(lat, centres[sel], geo)
        sat = _summed_area(lat, channels)
        sums = _box_sums(sat, _clip(boxes, lat))
        counts[sel] = sums[:, :4]
        if rules is not None:
            deep = _box_sums(sat, _clip(boxes, lat, deep_margin))[:, 4:]
            reached[sel] = _cluster_reached(xy, lat, _clip(boxes, lat), sums[:, 4:], deep, big, rules)
    return counts, reached


def _chunks(members_per_core: np.ndarray) -> list[np.ndarray]:
    """Split cores into consecutive groups of at most MAX_MEMBERS memberships (one core at least)."""
    group = np.cumsum(members_per_core) // MAX_MEMBERS
    return [np.flatnonzero(group == g) for g in np.unique(group)]


# ---------------------------------------------------------------- scores


def _cluster_scores(reached: np.ndarray) -> np.ndarray:
    """The gastric-biopsy rule: the highest class k with a cohesive cluster of enough class >= k cells.

    ``reached`` is (..., 3) for k = 1..3; mirrors scoring.slide._gastric_biopsy (a test checks they agree).
    """
    return np.where(reached.any(axis=-1), 3 - np.argmax(reached[..., ::-1], axis=-1), 0).astype(np.int8)


def _core_criteria(slide: Criteria, settings: ContextSettings) -> Criteria:
    """A biopsy of a gastric tumour is scored with the biopsy (cluster) rule, as a pathologist would."""
    if slide is Criteria.GASTRIC_RESECTION and settings.gastric_cores_as_biopsies:
        return Criteria.GASTRIC_BIOPSY
    return slide


# ---------------------------------------------------------------- summary


def _share(hit: np.ndarray) -> dict[str, float]:
    """Monte Carlo estimate of a probability and its standard error sqrt(p(1-p)/n)."""
    p = float(np.mean(hit))
    return {"p": round(p, 5), "se": round(float(np.sqrt(p * (1.0 - p) / hit.size)), 5)}


def _outcomes(codes: np.ndarray, slide_code: int) -> dict[str, Any]:
    diagnostic = codes != NONDIAGNOSTIC
    return {
        "nondiagnostic": _share(~diagnostic),
        "miss": _share(diagnostic & (codes < slide_code)),
        "over": _share(codes > slide_code),
        "different": _share(diagnostic & (codes != slide_code)),
        "scores": {label: _share(codes == k) for k, label in enumerate(CELL_CLASSES)},
    }


def sampling_risk(x_um: np.ndarray, y_um: np.ndarray, classes: np.ndarray, criteria: Criteria | str,
                  rules: ScoringRules, settings: ContextSettings) -> dict[str, Any]:
    """Simulated core-needle biopsies of a scored section: how often k cores miss the slide's score.

    ``classes`` are the tumour cells' classes (labels "0".."3+" or codes 0..3) at ``x_um, y_um``.
    For k = 1..``settings.max_cores`` cores, two readings of a biopsy are reported: all k cores'
    cells scored together ("pooled", as a pathologist scores the cores of one biopsy) and the
    highest score of a single diagnostic core ("max_core"). "miss" is a diagnostic biopsy scoring
    lower than the whole slide; "nondiagnostic" a biopsy with fewer than ``min_core_cells``
    tumour cells (pooled) or no core with that many (max_core). Raises ValueError for a slide
    scored as a biopsy (there is no resection to sample) or one without tumour cells.
    """
    crit = parse_criteria(criteria)
    if crit is Criteria.GASTRIC_BIOPSY:
        raise ValueError("sampling risk simulates biopsies of a resection; this slide is scored as a biopsy")
    codes = class_codes(np.asarray(classes))
    xy = np.column_stack([np.asarray(x_um, dtype=np.float64), np.asarray(y_um, dtype=np.float64)])
    if len(codes) == 0 or xy.shape != (len(codes), 2) or not np.isfinite(xy).all():
        raise ValueError("sampling risk needs tumour cells with finite positions, one per class")
    slide = score_slide(codes, crit, rules)
    slide_code = CELL_CLASSES.index(slide.score)
    core_crit = _core_criteria(crit, settings)
    cluster_rule = core_crit is Criteria.GASTRIC_BIOPSY

    geo = core_geometry(xy, settings)
    rng = np.random.default_rng(settings.seed)
    shape = (settings.simulations, settings.max_cores)
    centres = rng.integers(len(codes), size=shape).ravel()
    angle_index = rng.integers(geo.angles, size=shape).ravel()
    counts, reached = _simulate_cores(xy, codes, centres, angle_index, geo, rules if cluster_rule else None)
    counts = counts.reshape(*shape, 4)

    enough_single = counts.sum(axis=-1) >= settings.min_core_cells
    pooled_counts = np.cumsum(counts, axis=1)
    enough_pooled = pooled_counts.sum(axis=-1) >= settings.min_core_cells
    if cluster_rule:
        reached = reached.reshape(*shape, 3)
        single = _cluster_scores(reached)
        pooled = _cluster_scores(np.logical_or.accumulate(reached, axis=1))  # clusters never span two cores
    else:
        single = score_counts(counts, core_crit, rules)
        pooled = score_counts(pooled_counts, core_crit, rules)
    single = np.where(enough_single, single, NONDIAGNOSTIC)
    pooled = np.where(enough_pooled, pooled, NONDIAGNOSTIC)
    best = np.maximum.accumulate(single, axis=1)

    cells = counts[:, 0].sum(axis=-1)
    return {
        "slide": {"score": slide.score, "criteria": slide.criteria, "tumour_cells": slide.total},
        "model": {
            "core_criteria": core_crit.value,
            "needle_gauge": settings.needle_gauge if settings.core_width_um is None else None,
            "core_width_um": round(geo.width_um, 1),
            "core_length_um": round(geo.length_um, 1),
            "grid_um": round(geo.grid_um, 3),
            "orientations": geo.angles,
            "centre": "a tumour cell drawn uniformly at random (the operator aims at the tumour)",
            "simulations": settings.simulations,
            "min_core_cells": settings.min_core_cells,
            "seed": settings.seed,
        },
        "cells_per_core": {q: int(np.percentile(cells, v)) for q, v in (("p10", 10), ("median", 50), ("p90", 90))},
        "by_cores": [
            {"cores": k + 1, "pooled": _outcomes(pooled[:, k], slide_code), "max_core": _outcomes(best[:, k], slide_code)}
            for k in range(settings.max_cores)
        ],
    }


def _pct(share: dict[str, float], simulations: int) -> str:
    if share["p"] == 0.0:
        return f"<{100 * 3 / simulations:.2g}%"  # rule of three: 95% upper bound with no events
    return f"{100 * share['p']:.1f}±{100 * share['se']:.1f}%"


def format_table(result: dict[str, Any]) -> str:
    """The sampling-risk result as a few readable lines (percent ± Monte Carlo standard error)."""
    m = result["model"]
    s = m["simulations"]
    needle = f"{m['needle_gauge']}G " if m["needle_gauge"] else ""
    cpc = result["cells_per_core"]
    lines = [
        f"slide: HER2 {result['slide']['score']} ({result['slide']['criteria']}), {result['slide']['tumour_cells']} tumour cells",
        f"{s} simulated biopsies, {needle}cores {m['core_width_um'] / 1000:.2f} x {m['core_length_um'] / 1000:.1f} mm "
        f"scored with {m['core_criteria']} rules; tumour cells per core: median {cpc['median']} "
        f"(10-90th percentile {cpc['p10']}-{cpc['p90']}); < {m['min_core_cells']} cells is non-diagnostic",
        "",
        f"{'cores':>5}  {'non-diagnostic':>14}  {'miss (pooled)':>14}  {'different':>14}  {'miss (best core)':>16}"
        f"   pooled score 0 / 1+ / 2+ / 3+",
    ]
    for row in result["by_cores"]:
        pooled, best = row["pooled"], row["max_core"]
        dist = " / ".join(f"{100 * pooled['scores'][c]['p']:.0f}%" for c in CELL_CLASSES)
        lines.append(f"{row['cores']:>5}  {_pct(pooled['nondiagnostic'], s):>14}  {_pct(pooled['miss'], s):>14}  "
                     f"{_pct(pooled['different'], s):>14}  {_pct(best['miss'], s):>16}   {dist}")
    return "\n".join(lines)
