"""Region grid, spatial statistics and the homogeneous / focal / mosaic call.

Cells stream into a coarse square grid (``regions.region_um``) as tiles are measured:
per region only class counts and two sums are kept, never a full-resolution canvas.
From the finished grid, :func:`call_heterogeneity` decides whether the positive cells
(class >= ``heterogeneity.positive_class``) form a heterogeneous subpopulation (CAP 2009:
more than 5% and less than 50% of tumour cells) and, if so, whether they sit together in
distinct areas (focal) or are intermixed with negative cells (mosaic). docs/heterogeneity.md
defines every term and cites the published definitions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from her2slide.config import Settings
from her2slide.maps.region_maps import CHANNELS, SCORE_COLOURS, HeterogeneityResult, RegionMaps
from her2slide.scoring import CELL_CLASSES, exceeds_percent, score_counts

__all__ = ["RegionGrid", "call_heterogeneity", "morans_i", "join_counts", "segregation_index",
           "CLUSTER_COLOURS"]

#: RGBA of heterogeneity cluster k is CLUSTER_COLOURS[(k - 1) % len]: distinct from SCORE_COLOURS.
CLUSTER_COLOURS: tuple[tuple[int, int, int, int], ...] = (
    (148, 0, 211, 255), (0, 158, 115, 255), (230, 0, 126, 255), (0, 114, 178, 255), (86, 180, 233, 255),
    (120, 72, 0, 255), (0, 200, 200, 255), (60, 60, 60, 255), (160, 160, 0, 255), (255, 105, 180, 255),
)


# ---------------------------------------------------------------- the grid


class RegionGrid:
    """Streaming per-region accumulator: class counts and sums, added tile by tile.

    Region ``(row, col)`` covers slide µm ``[col*r, (col+1)*r) x [row*r, (row+1)*r)`` with the
    grid origin at slide µm (0, 0). Memory is a few arrays of ``ny*nx`` numbers: a 20 x 15 mm
    slide at 100 µm is 30 000 regions.
    """

    def __init__(self, width_um: float, height_um: float, mpp_level0: float, settings: Settings) -> None:
        if not (width_um > 0 and height_um > 0 and mpp_level0 > 0):
            raise ValueError("slide width, height and pixel size must be positive")
        self.settings = settings
        self.region_um = float(settings.regions.region_um)
        self.mpp_level0 = float(mpp_level0)
        self.width_um, self.height_um = float(width_um), float(height_um)
        self.nx = max(1, math.ceil(width_um / self.region_um))
        self.ny = max(1, math.ceil(height_um / self.region_um))
        size = self.nx * self.ny
        self._classes = np.zeros((len(CELL_CLASSES), size), dtype=np.int64)
        self._completeness = np.zeros(size)
        self._dab = np.zeros(size)
        self._excluded_um2: np.ndarray | None = None

    def _index(self, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
        """Flat region index of each point; points on the far slide edge go to the last region."""
        col = np.clip(np.floor(np.asarray(x_um, float) / self.region_um), 0, self.nx - 1).astype(np.intp)
        row = np.clip(np.floor(np.asarray(y_um, float) / self.region_um), 0, self.ny - 1).astype(np.intp)
        return row * self.nx + col

    def add(self, cells: dict[str, np.ndarray]) -> None:
        """Accumulate one tile's cells (the dict of ``measure_tile_pixels``)."""
        idx = self._index(cells["x_um"], cells["y_um"])
        if idx.size == 0:
            return
        size = self._completeness.size
        codes = np.asarray(cells["cell_class"]).astype(np.intp)
        self._classes += np.bincount(codes * size + idx, minlength=self._classes.size).reshape(self._classes.shape)
        self._completeness += np.bincount(idx, weights=cells["completeness"], minlength=size)
        self._dab += np.bincount(idx, weights=cells["membrane_dab_od"], minlength=size)

    def add_excluded(self, x_um: np.ndarray, y_um: np.ndarray, area_um2: np.ndarray | float) -> None:
        """Accumulate tissue area excluded by QC or ROI (block centres and block areas, µm²)."""
        idx = self._index(np.atleast_1d(x_um), np.atleast_1d(y_um))
        area = np.broadcast_to(np.asarray(area_um2, float), idx.shape)
        if self._excluded_um2 is None:
            self._excluded_um2 = np.zeros(self._completeness.size)
        self._excluded_um2 += np.bincount(idx, weights=area, minlength=self._completeness.size)

    def region_area_um2(self) -> np.ndarray:
        """(ny, nx) area of each region inside the slide (edge regions are clipped)."""
        r = self.region_um
        w = np.minimum(r, self.width_um - np.arange(self.nx) * r)
        h = np.minimum(r, self.height_um - np.arange(self.ny) * r)
        return h[:, None] * w[None, :]

    def finish(self) -> RegionMaps:
        """The region maps: channels, labels (local score and heterogeneity clusters) and colours."""
        shape = (self.ny, self.nx)
        classes = self._classes.reshape((len(CELL_CLASSES), *shape))
        counts = classes.sum(axis=0)
        area = self.region_area_um2()
        with np.errstate(invalid="ignore", divide="ignore"):
            has = counts > 0
            channels = {f"fraction_{c}": np.where(has, classes[k] / counts, np.nan) for k, c in enumerate(CELL_CLASSES)}
            channels["mean_completeness"] = np.where(has, self._completeness.reshape(shape) / counts, np.nan)
            channels["mean_membrane_dab_od"] = np.where(has, self._dab.reshape(shape) / counts, np.nan)
            channels["cell_density"] = np.where(has, counts / (area / 1e6), np.nan)
        scored = counts >= self.settings.regions.min_cells
        local = score_counts(np.moveaxis(classes, 0, -1), self.settings.criteria, self.settings.scoring)
        channels["local_score"] = np.where(scored, local, np.nan)
        positive = _positive_regions(classes, self.settings)
        clusters = _label_clusters(positive, counts)
        excluded = None
        if self._excluded_um2 is not None:
            excluded = np.clip(self._excluded_um2.reshape(shape) / area, 0.0, 1.0).astype(np.float32)
        return RegionMaps(
            region_um=self.region_um, origin_um=(0.0, 0.0), mpp_level0=self.mpp_level0,
            counts=counts.astype(np.int32),
            channels={name: channels[name].astype(np.float32) for name in CHANNELS},
            labels={"local_score_class": np.where(scored, local.astype(np.int32) + 1, 0).astype(np.int32),
                    "heterogeneity_regions": clusters},
            label_colours={"local_score_class": dict(SCORE_COLOURS),
                           "heterogeneity_regions": _cluster_colours(int(clusters.max()))},
            excluded=excluded,
        )


def _cluster_colours(n: int) -> dict[int, tuple[int, int, int, int]]:
    return {k: CLUSTER_COLOURS[(k - 1) % len(CLUSTER_COLOURS)] for k in range(1, n + 1)}


# ---------------------------------------------------------------- positive regions and clusters


def _positive_index(settings: Settings) -> int:
    return CELL_CLASSES.index(settings.heterogeneity.positive_class)


def _positive_regions(classes: np.ndarray, settings: Settings) -> np.ndarray:
    """Scored regions in which positive cells make at least ``region_positive_share`` of the cells."""
    counts = classes.sum(axis=0)
    positive = classes[_positive_index(settings):].sum(axis=0)
    scored = counts >= settings.regions.min_cells
    return scored & (positive >= settings.heterogeneity.region_positive_share * counts)


def _label_clusters(positive: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """8-connected clusters of positive regions, labelled 1, 2, ... by decreasing cell count."""
    from scipy import ndimage

    labels, n = ndimage.label(positive, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return labels.astype(np.int32)
    cells = np.bincount(labels.ravel(), weights=weight.ravel(), minlength=n + 1)[1:]
    order = np.lexsort((np.arange(n), -cells))  # largest first, ties by first appearance
    relabel = np.zeros(n + 1, dtype=np.int32)
    relabel[order + 1] = np.arange(1, n + 1)
    return relabel[labels]


# ---------------------------------------------------------------- spatial statistics


def _rook_pairs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Edge-sharing neighbour pairs among the True cells of ``mask``, as compact indices (each join once)."""
    index = np.full(mask.shape, -1, dtype=np.intp)
    index[mask] = np.arange(int(mask.sum()))
    right = mask[:, :-1] & mask[:, 1:]
    down = mask[:-1, :] & mask[1:, :]
    i = np.concatenate([index[:, :-1][right], index[:-1, :][down]])
    j = np.concatenate([index[:, 1:][right], index[1:, :][down]])
    return i, j, int(mask.sum())


def _weight_constants(i: np.ndarray, j: np.ndarray, n: int) -> tuple[float, float, float]:
    """Cliff & Ord S0, S1, S2 of symmetric binary weights given as unordered pairs."""
    degree = np.bincount(np.concatenate([i, j]), minlength=n).astype(float)
    s0 = 2.0 * len(i)
    return s0, 2.0 * s0, float(np.sum((2.0 * degree) ** 2))


def _z(observed: float, expected: float, variance: float) -> float | None:
    return (observed - expected) / math.sqrt(variance) if variance > 0 else None


def morans_i(values: np.ndarray, i: np.ndarray, j: np.ndarray) -> dict[str, float | None] | None:
    """Global Moran's I of ``values`` over the neighbour pairs, with its moments under randomisation.

    Moran (1950); expectation -1/(n-1) and variance from Cliff & Ord (1981). None when
    undefined (fewer than 4 values, no neighbours, or no variation).
    """
    x = np.asarray(values, float)
    n = x.size
    if n < 4 or len(i) == 0:
        return None
    z = x - x.mean()
    m2 = float(np.sum(z**2))
    if m2 <= 0:
        return None
    s0, s1, s2 = _weight_constants(i, j, n)
    value = n / s0 * 2.0 * float(np.sum(z[i] * z[j])) / m2
    expected = -1.0 / (n - 1)
    b2 = n * float(np.sum(z**4)) / m2**2
    second = (n * ((n * n - 3 * n + 3) * s1 - n * s2 + 3 * s0**2)
              - b2 * ((n * n - n) * s1 - 2 * n * s2 + 6 * s0**2)) / ((n - 1) * (n - 2) * (n - 3) * s0**2)
    variance = second - expected**2
    return {"value": value, "expected": expected, "variance": variance, "z": _z(value, expected, variance)}


def join_counts(black: np.ndarray, i: np.ndarray, j: np.ndarray) -> dict[str, dict[str, float | None]] | None:
    """BB, BW and WW join counts of a binary map with expectation, variance and z under
    non-free sampling (randomisation), as Cliff & Ord (1981) and R spdep's joincount.multi.

    None when undefined (fewer than 4 regions or no joins).
    """
    b = np.asarray(black, bool)
    n = b.size
    if n < 4 or len(i) == 0:
        return None
    s0, s1, s2 = _weight_constants(i, j, n)
    nb, nw = int(b.sum()), n - int(b.sum())
    f = [float(n - k) for k in range(4)]  # n, n-1, n-2, n-3: falling factorial terms
    n2, n3, n4 = f[0] * f[1], f[0] * f[1] * f[2], f[0] * f[1] * f[2] * f[3]

    def same(m: int) -> tuple[float, float]:
        e = s0 * m * (m - 1) / (2 * n2)
        v = 0.25 * (s1 * m * (m - 1) / n2 + (s2 - 2 * s1) * m * (m - 1) * (m - 2) / n3
                    + (s0**2 + s1 - s2) * m * (m - 1) * (m - 2) * (m - 3) / n4) - e**2
        return e, v

    e_bw = s0 * nb * nw / n2
    v_bw = 0.25 * (2 * s1 * nb * nw / n2 + (s2 - 2 * s1) * nb * nw * (nb + nw - 2) / n3
                   + 4 * (s0**2 + s1 - s2) * nb * (nb - 1) * nw * (nw - 1) / n4) - e_bw**2
    observed = {"BB": int(np.sum(b[i] & b[j])), "BW": int(np.sum(b[i] != b[j])), "WW": int(np.sum(~b[i] & ~b[j]))}
    moments = {"BB": same(nb), "BW": (e_bw, v_bw), "WW": same(nw)}
    return {k: {"observed": observed[k], "expected": e, "variance": v, "z": _z(observed[k], e, v)}
            for k, (e, v) in moments.items()}


def segregation_index(positive: np.ndarray, total: np.ndarray) -> float:
    """How unevenly positive cells are spread over regions, 0 (as by chance) to 1 (fully apart).

    Bias-corrected Cramér's V (Bergsma 2013) of the regions x {positive, negative} table.
    Cell-by-cell intermixing (mosaic) leaves every region near the slide's positive share:
    chance-level variation, V ≈ 0. Positive cells gathered in some regions and absent from
    others (focal) give V near 1. The correction removes the chance variation of small regions,
    so the index does not grow just because regions hold few cells.
    """
    pos = np.asarray(positive, float).ravel()
    tot = np.asarray(total, float).ravel()
    keep = tot > 0
    pos, tot = pos[keep], tot[keep]
    n, x, r = tot.sum(), pos.sum(), int(keep.sum())
    if r < 2 or x <= 0 or x >= n or n < 3:
        return 0.0
    p = x / n
    phi2 = float(np.sum((pos - tot * p) ** 2 / tot)) / (n * p * (1 - p))  # chi-square / n for an r x 2 table
    phi2_corrected = max(0.0, phi2 - (r - 1) / (n - 1))
    k_tilde, r_tilde = 2 - 1 / (n - 1), r - (r - 1) ** 2 / (n - 1)
    return math.sqrt(phi2_corrected / min(k_tilde - 1, r_tilde - 1))


def _entropy_bits(counts: np.ndarray, axis: int = 0) -> np.ndarray:
    """Shannon entropy (bits) of class counts along ``axis``; 0 where there are no cells."""
    c = np.asarray(counts, float)
    total = c.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, c / total, 0.0)
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=axis)


# ---------------------------------------------------------------- the call


def _class_counts(maps: RegionMaps) -> np.ndarray:
    """(4, ny, nx) integer class counts back from the counts and class fractions."""
    fractions = np.stack([maps.channels[f"fraction_{c}"] for c in CELL_CLASSES]).astype(float)
    return np.rint(np.nan_to_num(fractions) * maps.counts[None]).astype(np.int64)


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _clusters(labels: np.ndarray, classes: np.ndarray, pos_k: int, maps: RegionMaps,
              limit: int) -> list[dict[str, Any]]:
    """Size, cells, bounding box and centroid of the first ``limit`` clusters (label order)."""
    from scipy import ndimage

    n = int(labels.max())
    if n == 0:
        return []
    counts = classes.sum(axis=0)
    total, positive = counts.sum(), classes[pos_k:].sum()
    idx = np.arange(1, n + 1)
    regions = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    cells = ndimage.sum_labels(counts, labels, idx)
    pos_cells = ndimage.sum_labels(classes[pos_k:].sum(axis=0), labels, idx)
    rows, cols = np.indices(labels.shape)
    cy = ndimage.sum_labels(counts * (rows + 0.5), labels, idx) / np.maximum(cells, 1)
    cx = ndimage.sum_labels(counts * (cols + 0.5), labels, idx) / np.maximum(cells, 1)
    top = ndimage.maximum(np.nan_to_num(maps.channels["local_score"], nan=-1.0), labels, idx)
    r, (x0, y0), mpp = maps.region_um, maps.origin_um, maps.mpp_level0
    out = []
    for k, box in enumerate(ndimage.find_objects(labels)[:limit]):  # at most `limit` clusters
        bbox_um = [x0 + box[1].start * r, y0 + box[0].start * r, x0 + box[1].stop * r, y0 + box[0].stop * r]
        centroid_um = [x0 + cx[k] * r, y0 + cy[k] * r]
        out.append({
            "label": k + 1, "regions": int(regions[k]), "area_mm2": _round(regions[k] * r * r / 1e6, 6),
            "cells": int(cells[k]), "positive_cells": int(pos_cells[k]),
            "share_of_tumour_cells": _round(cells[k] / total), "share_of_positive_cells": _round(pos_cells[k] / positive),
            "max_local_score": CELL_CLASSES[int(top[k])] if top[k] >= 0 else None,
            "bbox_um": [_round(v, 2) for v in bbox_um], "bbox_px": [_round(v / mpp, 1) for v in bbox_um],
            "centroid_um": [_round(v, 2) for v in centroid_um], "centroid_px": [_round(v / mpp, 1) for v in centroid_um],
        })
    return out


def call_heterogeneity(maps: RegionMaps, settings: Settings) -> HeterogeneityResult:
    """Homogeneous, focal or mosaic, with the metrics behind the call (see docs/heterogeneity.md).

    1. Positive cells (class >= positive_class) make a heterogeneous subpopulation when their
       share of tumour cells lies in (min_positive_percent, max_positive_percent) — CAP 2009's
       "more than 5% and less than 50%". Otherwise the slide is homogeneous.
    2. A heterogeneous slide is focal when its positive cells are segregated between regions
       (segregation index >= focal_min_segregation); otherwise its positive cells are
       intermixed with negative ones, region by region: mosaic.
    """
    h = settings.heterogeneity
    pos_k = _positive_index(settings)
    classes = _class_counts(maps)
    counts = classes.sum(axis=0)
    positive = classes[pos_k:].sum(axis=0)
    total, n_positive = int(counts.sum()), int(positive.sum())
    positive_percent = 100.0 * n_positive / total if total else 0.0  # reported; the band test below is exact
    scored = counts >= settings.regions.min_cells
    positive_map = _positive_regions(classes, settings)
    labels = _label_clusters(positive_map, counts)
    segregation = segregation_index(positive, counts)

    i, j, _ = _rook_pairs(scored)
    moran = morans_i(positive[scored] / counts[scored], i, j)
    joins = join_counts(positive_map[scored], i, j)
    local = maps.channels["local_score"][scored]
    n_scored = int(scored.sum())
    region_entropy = _entropy_bits(classes, axis=0)
    minority = np.minimum(positive, counts - positive)
    mixed = scored & (minority >= h.mixed_min_share * counts)

    heterogeneous = bool(exceeds_percent(n_positive, total, h.min_positive_percent, strict=True)
                         and not exceeds_percent(n_positive, total, h.max_positive_percent, strict=False))
    share = f"{positive_percent:.1f}% of tumour cells are {h.positive_class} or stronger"
    band = f"> {h.min_positive_percent:g}% and < {h.max_positive_percent:g}%"
    if not heterogeneous:
        pattern, reason = "homogeneous", f"{share}: outside the heterogeneity band ({band})"
    elif segregation >= h.focal_min_segregation:
        where = f"{int(labels.max())} cluster(s) of positive regions" if labels.max() else "foci smaller than one region"
        pattern = "focal"
        reason = (f"{share} (heterogeneous: {band}), gathered apart: segregation {segregation:.2f} "
                  f">= {h.focal_min_segregation:g}; {where}")
    else:
        pattern = "mosaic"
        reason = (f"{share} (heterogeneous: {band}), intermixed with negative cells: segregation "
                  f"{segregation:.2f} < {h.focal_min_segregation:g}")

    clusters = _clusters(labels, classes, pos_k, maps, h.max_listed_clusters)
    region_area_mm2 = maps.region_um**2 / 1e6
    metrics: dict[str, Any] = {
        "reason": reason,
        "positive_class": h.positive_class,
        "positive_percent": _round(positive_percent),
        "tumour_cells": total,
        "region_um": maps.region_um,
        "regions_with_cells": int((counts > 0).sum()),
        "regions_scored": n_scored,
        "local_score_area_share": {c: _round(float(np.sum(local == k)) / n_scored) if n_scored else None
                                   for k, c in enumerate(CELL_CLASSES)},
        "positive_regions": int(positive_map.sum()),
        "positive_area_mm2": _round(float(positive_map.sum()) * region_area_mm2, 6),
        "positive_area_share": _round(float(positive_map.sum()) / n_scored) if n_scored else None,
        "cluster_count": int(labels.max()),
        "largest_cluster_share_of_positive_cells": clusters[0]["share_of_positive_cells"] if clusters else None,
        "segregation": _round(segregation),
        "morans_i": None if moran is None else {k: _round(v, 6) for k, v in moran.items()},
        "join_counts": None if joins is None else {k: {m: _round(v, 6) for m, v in d.items()} for k, d in joins.items()},
        "class_entropy_bits": _round(float(_entropy_bits(classes.reshape(4, -1).sum(axis=1)))),
        "within_region_entropy_bits": _round(float(np.sum(region_entropy * counts) / total)) if total else None,
        "mixed_region_share": _round(float(mixed.sum()) / n_scored) if n_scored else None,
    }
    return HeterogeneityResult(pattern=pattern, metrics=metrics, clusters=clusters)
