"""Each cell's membrane ring measured: DAB intensity, completeness around the circumference in angular
sectors, and whether the stained part is basolateral/lateral. Vectorised over labels (bincount /
ufunc.at), never a Python loop over cells.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from her2slide.cells.instances import label_centroids
from her2slide.config import CellSettings

#: Columns returned by :func:`measure_cells`, in tile pixel coordinates.
CELL_COLUMNS = (
    "cx", "cy", "area_px", "membrane_dab_od", "membrane_dab_od_p90", "stained_dab_od",
    "completeness", "lateral",
)


def measure_cells(labels: np.ndarray, dab: np.ndarray, settings: CellSettings, mpp: float,
                  faint_od: float) -> dict[str, np.ndarray]:
    """Per-cell membrane statistics for labels 1..max (rows in label order).

    The membrane ring is the band of each cell within ``ring_width_um`` of its outline.
    Around the cell centroid the ring is cut into ``sectors``; each sector's value is its
    peak DAB (the membrane line, robust to a pixel of misplaced outline). A sector is
    stained when its peak reaches ``faint_od``; single-sector gaps are closed and
    single-sector specks removed before counting, and stain that belongs to the
    neighbour across the boundary is handed back (see :func:`_attribute_to_neighbours`).
    Completeness is the stained share of the sectors that exist; the stained part is
    called basolateral/lateral when it covers at least ``lateral_min_fraction`` in at
    most two arcs.
    """
    n = int(labels.max())
    if n == 0:
        return {name: np.zeros(0) for name in CELL_COLUMNS}
    counts, cy, cx = label_centroids(labels, n)

    width = max(1, int(round(settings.ring_width_um / mpp)))
    size = 2 * width + 1
    in_ring = (labels > 0) & (ndi.minimum_filter(labels, size=size) != ndi.maximum_filter(labels, size=size))
    ring_rows, ring_cols = np.nonzero(in_ring)
    ring_label = labels[ring_rows, ring_cols]
    ring_dab = dab[ring_rows, ring_cols].astype(np.float64)
    across = _label_across(labels, ring_rows, ring_cols, width)
    angle = np.arctan2(ring_rows - cy[ring_label], ring_cols - cx[ring_label])
    sectors = settings.sectors
    sector = np.minimum(((angle + np.pi) / (2 * np.pi) * sectors).astype(np.int64), sectors - 1)
    key = ring_label.astype(np.int64) * sectors + sector

    # Peak DAB per (cell, sector), and the neighbour across the boundary at that peak.
    order = np.lexsort((ring_dab, key))
    last = np.r_[key[order][1:] != key[order][:-1], True]
    top = order[last]
    peak = np.full((n + 1) * sectors, -np.inf)
    peak[key[top]] = ring_dab[top]
    neighbour = np.zeros((n + 1) * sectors, dtype=np.int64)
    neighbour[key[top]] = across[top]
    peak, neighbour = peak.reshape(n + 1, sectors), neighbour.reshape(n + 1, sectors)
    present = np.isfinite(peak)
    stained = _clean_circular(present & (peak >= faint_od), present)
    stained = _attribute_to_neighbours(stained, present, peak, neighbour, settings)

    n_present = np.maximum(present.sum(axis=1), 1)
    n_stained = stained.sum(axis=1)
    completeness = n_stained / n_present
    peak_or_zero = np.where(present, peak, 0.0)
    membrane_mean = peak_or_zero.sum(axis=1) / n_present
    stained_mean = np.where(n_stained > 0, np.where(stained, peak, 0.0).sum(axis=1) / np.maximum(n_stained, 1),
                            membrane_mean)
    arcs = (stained & ~np.roll(stained, 1, axis=1)).sum(axis=1)
    lateral = (completeness >= settings.lateral_min_fraction) & (arcs >= 1) & (arcs <= 2)

    result = {
        "cx": cx, "cy": cy, "area_px": counts,
        "membrane_dab_od": membrane_mean, "membrane_dab_od_p90": _grouped_percentile(ring_label, ring_dab, n, 90.0),
        "stained_dab_od": stained_mean, "completeness": completeness, "lateral": lateral,
    }
    return {name: values[1:] for name, values in result.items()}


def _label_across(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, width: int) -> np.ndarray:
    """The nearest other cell within ``width`` pixels of each ring pixel (0 when none).

    Nearest by chessboard distance, so the neighbour is the cell across the boundary at
    that point, not one further along it.
    """
    height, width_px = labels.shape
    own = labels[rows, cols]
    found = np.zeros(len(rows), dtype=np.int64)
    for radius in range(1, width + 1):
        for dr in range(-radius, radius + 1):
            for dc in range(-radius, radius + 1):
                if max(abs(dr), abs(dc)) != radius:
                    continue
                r = np.clip(rows + dr, 0, height - 1)
                c = np.clip(cols + dc, 0, width_px - 1)
                other = labels[r, c]
                take = (found == 0) & (other != own) & (other > 0)
                found[take] = other[take]
    return found


def _attribute_to_neighbours(stained: np.ndarray, present: np.ndarray, peak: np.ndarray, neighbour: np.ndarray,
                             settings: CellSettings) -> np.ndarray:
    """Hand stained sectors back to the neighbour whose membrane they are.

    At working resolution two touching cells' membranes are one blurred line, so a
    sector can look stained because the cell next door is. The tie-breaker is the cells
    themselves: a stained sector of cell A that borders cell B is B's stain when B is
    clearly more completely stained than A (by ``attribution_margin``) and B's own
    stained sectors are at least ``own_stain_ratio`` as intense as this one. In a mosaic
    the positive cell is stained all round and its negative neighbour only where it
    touches it, which is exactly this case; two stained neighbours both keep their stain.
    """
    n_present = np.maximum(present.sum(axis=1), 1)
    completeness = stained.sum(axis=1) / n_present
    stained_peak = np.where(stained, peak, 0.0).sum(axis=1) / np.maximum(stained.sum(axis=1), 1)
    theirs = (
        stained & (neighbour > 0)
        & (completeness[neighbour] >= completeness[:, None] + settings.attribution_margin)
        & (stained_peak[neighbour] >= settings.own_stain_ratio * np.where(stained, peak, 0.0))
    )
    return _clean_circular(stained & ~theirs, present)


def _clean_circular(stained: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Close one-sector gaps, then drop one-sector specks, treating sectors as a circle."""
    left, right = np.roll(stained, 1, axis=1), np.roll(stained, -1, axis=1)
    closed = stained | (left & right & present)
    left, right = np.roll(closed, 1, axis=1), np.roll(closed, -1, axis=1)
    return closed & (left | right)


def _grouped_percentile(groups: np.ndarray, values: np.ndarray, n: int, q: float) -> np.ndarray:
    """q-th percentile (nearest rank) of ``values`` per group 0..n, vectorised by one sort."""
    result = np.zeros(n + 1)
    if len(values) == 0:
        return result
    order = np.lexsort((values, groups))
    sorted_groups, sorted_values = groups[order], values[order]
    counts = np.bincount(sorted_groups, minlength=n + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    rank = starts[has] + np.floor((counts[has] - 1) * q / 100.0).astype(np.int64)
    result[has] = sorted_values[rank]
    return result
