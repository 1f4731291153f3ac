"""Exact pointwise geometry of any rectangle of a synthetic slide: tumour cell labels, shapes,
gland lumens and tissue, and every tumour cell's pixel count and centroid.

Every pixel is a function of its global level-0 coordinate alone (Voronoi labels, shape tests),
so the result does not depend on the window it is computed in, and a slide's cells are measured
block by block, never holding level 0 in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import Layout

__all__ = ["Geometry", "cell_geometry", "region_geometry", "iter_blocks"]

NO_KEY = np.iinfo(np.int64).max
_ID_BITS = 24         # Voronoi key = quantised d² << 24 | cell index


@dataclass(frozen=True)
class Geometry:
    labels: np.ndarray     # int32, tumour cell id + 1 (0: no tumour cell)
    shape_map: np.ndarray  # int32, tumour shape index or -1
    lumen: np.ndarray      # bool, gland lumen
    tissue: np.ndarray     # bool


STEP = 4  # outlines are evaluated on a global grid of 4 px (1 µm) and interpolated bilinearly


def _outline(blobs, i: int, mpp: float, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(outer, inner) signed radial distances of shape ``i`` over a level-0 window: exact on a
    global coarse grid, bilinear in between (pointwise, so independent of the window)."""
    gy = np.arange(y0 // STEP, (y0 + h - 1) // STEP + 2)
    gx = np.arange(x0 // STEP, (x0 + w - 1) // STEP + 2)
    outer, inner = blobs.polar(i, (gx * STEP * mpp)[None, :], (gy * STEP * mpp)[:, None])
    fy = (y0 + np.arange(h)) / STEP - gy[0]
    fx = (x0 + np.arange(w)) / STEP - gx[0]
    return lerp(outer, fy, fx), (lerp(inner, fy, fx) if blobs.thickness[i] > 0 else None)


def lerp(c: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """Separable bilinear interpolation of grid ``c`` at fractional rows ``fy`` × columns ``fx``."""
    c = c.astype(np.float32)
    iy, ix = fy.astype(np.int64), fx.astype(np.int64)
    ty, tx = (fy - iy).astype(np.float32)[:, None], (fx - ix).astype(np.float32)[None, :]
    rows = c[:, ix] * (1 - tx) + c[:, ix + 1] * tx
    return rows[iy] * (1 - ty) + rows[iy + 1] * ty


def _tissue_mask(layout: Layout, mpp: float, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    t = layout.tissue
    xs = np.array([x0, x0 + w - 1]) * mpp - t.cx[0]
    ys = np.array([y0, y0 + h - 1]) * mpp - t.cy[0]
    margin = 2 * STEP * mpp
    if np.hypot(np.abs(xs).max(), np.abs(ys).max()) < t.rmin()[0] - margin:
        return np.ones((h, w), bool)
    near_x = 0.0 if xs[0] <= 0 <= xs[1] else np.abs(xs).min()
    near_y = 0.0 if ys[0] <= 0 <= ys[1] else np.abs(ys).min()
    if np.hypot(near_x, near_y) > t.rmax()[0] + margin:
        return np.zeros((h, w), bool)
    return _outline(t, 0, mpp, y0, x0, h, w)[0] < 0


def _shape_maps(layout: Layout, mpp: float, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Shape index (-1: none) and lumen mask of a level-0 window."""
    s = layout.shapes
    shape_map = np.full((h, w), -1, np.int32)
    lumen = np.zeros((h, w), bool)
    rmax = s.rmax() / mpp + 2 * STEP
    cx, cy = s.cx / mpp, s.cy / mpp
    hit = (cx + rmax >= x0) & (cx - rmax < x0 + w) & (cy + rmax >= y0) & (cy - rmax < y0 + h)
    for i in np.flatnonzero(hit):
        c0, c1 = max(int(cx[i] - rmax[i]), x0), min(int(cx[i] + rmax[i]) + 1, x0 + w)
        r0, r1 = max(int(cy[i] - rmax[i]), y0), min(int(cy[i] + rmax[i]) + 1, y0 + h)
        outer, inner = _outline(s, i, mpp, r0, c0, r1 - r0, c1 - c0)
        inside = outer < 0
        wall = inside & (inner > 0) if inner is not None else inside
        win = (slice(r0 - y0, r1 - y0), slice(c0 - x0, c1 - x0))
        shape_map[win][wall] = i
        if inner is not None:
            lumen[win] |= inside & ~wall
    return shape_map, lumen


def _disk(r: int) -> tuple[np.ndarray, ...]:
    """Integer offsets within radius ``r`` + 1 and cos/sin of 2θ and 3θ of each offset."""
    oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
    keep = oy**2 + ox**2 <= (r + 1) ** 2
    oy, ox = oy[keep], ox[keep]
    t = np.arctan2(oy, ox)
    trig = [np.cos(2 * t), np.sin(2 * t), np.cos(3 * t), np.sin(3 * t)]
    return (oy, ox, *(v.astype(np.float32) for v in trig))


def _labels(layout: Layout, mpp: float, y0: int, x0: int, shape_map: np.ndarray) -> np.ndarray:
    """Restricted Voronoi labels by a z-buffer: each cell writes (d², id) into the pixels within its
    maximum radius and its own shape; the smallest key wins (ties: lowest id), pointwise exact.

    d is the distance to the seed divided by ``1 + a2 cos(2θ + φ2) + a3 cos(3θ + φ3)`` (per-cell
    a, φ; θ of the pixel's offset from the seed's pixel), which bends the straight Voronoi walls
    into the uneven outlines of real cells."""
    h, w = shape_map.shape
    c = layout.cells
    sx, sy, rm = c.x / mpp, c.y / mpp, c.rmax / mpp
    near = np.flatnonzero((sx + rm >= x0) & (sx - rm < x0 + w) & (sy + rm >= y0) & (sy - rm < y0 + h))
    key = np.full(h * w, NO_KEY, np.int64)
    if len(near):
        # wobble as a·cos(kθ + φ) = (a cos φ) cos kθ - (a sin φ) sin kθ
        a, ph = c.wobble_amp, c.wobble_phase
        coef = np.stack([a[:, 0] * np.cos(ph[:, 0]), -a[:, 0] * np.sin(ph[:, 0]),
                         a[:, 1] * np.cos(ph[:, 1]), -a[:, 1] * np.sin(ph[:, 1])], 1).astype(np.float32)
        radius = np.ceil(rm[near]).astype(int)
        flat_shape = shape_map.ravel()
        iy, ix = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
        fy, fx = (sy - iy).astype(np.float32), (sx - ix).astype(np.float32)
        for r in np.unique(radius):
            oy, ox, *trig = _disk(int(r))
            for b in range(0, int((radius == r).sum()), 256):
                g = near[radius == r][b:b + 256]
                dy = oy[None].astype(np.float32) - fy[g, None]
                dx = ox[None].astype(np.float32) - fx[g, None]
                d2 = dy * dy + dx * dx
                wob = 1.0 + sum(coef[g, j, None] * trig[j][None] for j in range(4))
                rr = iy[g, None] + oy[None] - y0
                cc = ix[g, None] + ox[None] - x0
                ok = (d2 <= (rm[g, None] ** 2).astype(np.float32)) & (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
                flat = (rr * w + cc)[ok]
                ids = np.broadcast_to(g[:, None], ok.shape)[ok]
                same = flat_shape[flat] == c.shape[ids]
                k = (((d2 / (wob * wob))[ok][same] * 256).astype(np.int64) << _ID_BITS) | ids[same]
                np.minimum.at(key, flat[same], k)
    lab = np.where(key == NO_KEY, 0, (key & ((1 << _ID_BITS) - 1)) + 1).astype(np.int32)
    return lab.reshape(h, w)


def region_geometry(layout: Layout, mpp: float, y0: int, x0: int, h: int, w: int) -> Geometry:
    """Tumour cell labels, shapes, lumens and tissue of a level-0 rectangle (no margin needed)."""
    shape_map, lumen = _shape_maps(layout, mpp, y0, x0, h, w)
    labels = _labels(layout, mpp, y0, x0, shape_map)
    return Geometry(labels, shape_map, lumen, _tissue_mask(layout, mpp, y0, x0, h, w))


def iter_blocks(shape: tuple[int, int], block: int):
    """(y0, x0, h, w) of the blocks tiling a (height, width) image row by row."""
    for y in range(0, shape[0], block):
        for x in range(0, shape[1], block):
            yield y, x, min(block, shape[0] - y), min(block, shape[1] - x)


def cell_geometry(layout: Layout, mpp: float, shape: tuple[int, int],
                  block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact pixel count and centroid (x, y in level-0 px) of every tumour cell, block by block
    (integer sums, so independent of the block size)."""
    n = len(layout.cells)
    count = np.zeros(n + 1, np.int64)
    sx = np.zeros(n + 1, np.int64)
    sy = np.zeros(n + 1, np.int64)
    for y0, x0, h, w in iter_blocks(shape, block):
        lab = region_geometry(layout, mpp, y0, x0, h, w).labels
        if not lab.any():
            continue
        rows, cols = np.nonzero(lab)
        ids = lab[rows, cols]
        count += np.bincount(ids, minlength=n + 1)
        sx += np.bincount(ids, weights=cols + x0, minlength=n + 1).astype(np.int64)
        sy += np.bincount(ids, weights=rows + y0, minlength=n + 1).astype(np.int64)
    count, sx, sy = count[1:], sx[1:], sy[1:]
    safe = np.maximum(count, 1)
    return count, sx / safe, sy / safe
