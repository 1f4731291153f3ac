"""Star-convex cell outlines from an instance label image, for drawing and for QuPath.

A cell outline is stored as ``n_rays`` points at fixed angles around the cell centroid
(the StarDist representation): a fixed-size array per cell, so a tile's outlines are one
``(n, n_rays, 2)`` array and never a list of ragged polygons. Points at strictly
increasing angles with positive radii make a simple polygon that is star-shaped about
the centroid, so the outline is always a valid geometry.
"""

from __future__ import annotations

import numpy as np

#: Half the width of a pixel seen from any direction (a pixel taken as a disc of area ~1).
_PIXEL_HALF_WIDTH = 0.5


def star_outlines(labels: np.ndarray, cx: np.ndarray, cy: np.ndarray, n_rays: int = 16) -> np.ndarray:
    """Outline of every cell ``k = 1..n`` of ``labels`` as ``(n, n_rays, 2)`` (x, y) tile pixels.

    ``cx``, ``cy`` are the cells' centroids in tile pixels (pixel ``j`` centred on ``j``),
    in label order, as :func:`her2slide.cells.measure_cells` returns them. Ray ``k`` points
    at angle ``-pi + (k + 0.5) * 2 pi / n_rays`` (``arctan2(dy, dx)`` with y down), so the
    vertices run counter-clockwise in (x, y) values: positive shoelace area, the RFC 7946
    exterior-ring orientation.

    The ray is cast through the cell's pixels: its length is the farthest projection onto
    the ray of a pixel centre that the ray passes through (within half a pixel of it), plus
    half a pixel to reach that pixel's outer edge, scaled by ``sqrt(s / sin(s))`` (``s = 2 pi / n_rays``) so
    that the polygon of a disc has the disc's area. Taking only the pixels on the ray, not
    the whole angular sector, keeps elongated cells from bulging out at their long ends.
    A ray that meets no pixel of its cell (the centroid of a crescent-shaped cell lies
    outside it) takes the circular linear interpolation of its neighbours.
    """
    if n_rays < 3:
        raise ValueError(f"n_rays must be at least 3, not {n_rays}")
    cx = np.asarray(cx, dtype=np.float64)
    cy = np.asarray(cy, dtype=np.float64)
    n = len(cx)
    if n == 0:
        return np.zeros((0, n_rays, 2), dtype=np.float64)
    rows, cols = np.nonzero((labels > 0) & (labels <= n))
    cell = labels[rows, cols].astype(np.int64) - 1
    dx, dy = cols - cx[cell], rows - cy[cell]
    distance = np.hypot(dx, dy)
    phi = np.arctan2(dy, dx)

    # Rays that pass within half a pixel of each pixel centre: |phi - theta| <= asin(h / r).
    step = 2 * np.pi / n_rays
    spread = np.arcsin(np.minimum(1.0, _PIXEL_HALF_WIDTH / np.maximum(distance, 1e-9)))
    first = np.ceil((phi - spread + np.pi) / step - 0.5).astype(np.int64)
    last = np.floor((phi + spread + np.pi) / step - 0.5).astype(np.int64)
    hits = np.clip(last - first + 1, 0, n_rays)
    pixel = np.repeat(np.arange(len(cell)), hits)
    ray = first[pixel] + (np.arange(len(pixel)) - np.repeat(np.cumsum(hits) - hits, hits))
    theta = -np.pi + (ray + 0.5) * step
    along = distance[pixel] * np.cos(phi[pixel] - theta)

    radius = np.full((n, n_rays), -1.0)
    np.maximum.at(radius, (cell[pixel], ray % n_rays), along)
    # Scaled so that the polygon of a circle has the circle's area (a chord polygon is smaller).
    radius = (_fill_empty_rays(radius) + _PIXEL_HALF_WIDTH) * np.sqrt(step / np.sin(step))
    angle = -np.pi + (np.arange(n_rays) + 0.5) * step
    return np.stack([cx[:, None] + radius * np.cos(angle), cy[:, None] + radius * np.sin(angle)], axis=-1)


def _fill_empty_rays(radius: np.ndarray) -> np.ndarray:
    """Replace negative (empty) entries by circular linear interpolation along each row.

    The row is tiled three times so that the nearest filled ray before and after every
    ray of the middle copy is found with one running max / min, wrapping round. Rows with
    no filled ray at all (a label absent from the image) become 0.
    """
    n, k = radius.shape
    filled = np.tile(radius >= 0, 3)
    position = np.arange(3 * k)
    before = np.maximum.accumulate(np.where(filled, position, -1), axis=1)[:, k:2 * k]
    after = np.minimum.accumulate(np.where(filled, position, 3 * k)[:, ::-1], axis=1)[:, ::-1][:, k:2 * k]
    tiled = np.tile(radius, 3)
    rows = np.arange(n)[:, None]
    before_r = tiled[rows, np.clip(before, 0, 3 * k - 1)]
    after_r = tiled[rows, np.clip(after, 0, 3 * k - 1)]
    t = (position[k:2 * k] - before) / np.maximum(after - before, 1)
    interpolated = before_r + t * (after_r - before_r)
    has_any = (radius >= 0).any(axis=1, keepdims=True)
    return np.where(radius >= 0, radius, np.where(has_any, interpolated, 0.0))
