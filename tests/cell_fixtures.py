"""A tiny hand-drawn tile with known cells, for testing the measurement without the generator."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from her2slide.stain import StainModel, compose_rgb

MPP = 0.5
CELL_PITCH_UM = 16.0


def grid_tile(rows: int = 6, cols: int = 6, dab_od: float = 0.8, arc_fraction: float = 1.0,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB tile at 0.5 µm/px: a sheet of square-ish cells on a jittered grid, in white glass.

    Every cell's membrane (its own 1 µm band along its Voronoi outline) is stained with
    ``dab_od`` over the arc ``[0, arc_fraction)`` of the circumference measured from the
    cell's nucleus. Returns the image, the true nucleus centres (x, y in pixels) and the
    true label image.
    """
    rng = np.random.default_rng(seed)
    pitch = CELL_PITCH_UM / MPP
    size = int((max(rows, cols) + 2) * pitch)
    centres = np.array([((c + 1.5) * pitch, (r + 1.5) * pitch) for r in range(rows) for c in range(cols)])
    centres += rng.uniform(-2, 2, centres.shape)
    seeds = np.zeros((size, size), dtype=np.int32)
    seeds[np.rint(centres[:, 1]).astype(int), np.rint(centres[:, 0]).astype(int)] = np.arange(1, len(centres) + 1)
    dist, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[iy, ix]
    labels[dist > 0.6 * pitch] = 0
    yy, xx = np.indices(labels.shape)
    boundary = (ndi.minimum_filter(labels, 3) != ndi.maximum_filter(labels, 3)) & (labels > 0)
    own = labels.clip(1) - 1
    angle = np.arctan2(yy - centres[own, 1], xx - centres[own, 0])
    in_arc = ((angle + np.pi) / (2 * np.pi)) < arc_fraction
    dab = np.where(boundary & in_arc, dab_od, 0.0)
    nucleus = np.hypot(yy - centres[own, 1], xx - centres[own, 0]) < 3.5 / MPP
    haem = np.where(nucleus & (labels > 0), 0.45, np.where(labels > 0, 0.04, 0.0))
    dab = ndi.gaussian_filter(dab, 0.6)
    rgb = compose_rgb(haem, dab, StainModel.default())
    return rgb, centres, labels
