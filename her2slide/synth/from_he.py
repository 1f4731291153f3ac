"""Unstained HER2 0 fields from real H&E images: the eosin taken out in optical-density space.

Haematoxylin is the counterstain of a HER2 slide too, so an H&E field without its eosin is what
the same tissue would look like stained for HER2 with no DAB at all, on the scanner that took it
(its white point, tone, noise and JPEG). Used to measure what DAB-free tissue from other labs
and scanners reads as (scripts/derive_qc_ranges.py).
"""

from __future__ import annotations

import numpy as np

from her2slide.stain import HAEMATOXYLIN_RGB_OD, brightest_white, macenko_directions, od_to_rgb, rgb_to_od

#: Ruifrok & Johnston (2001) eosin direction, the reference for its per-image estimate.
EOSIN_RGB_OD = np.array([0.072, 0.990, 0.105])


def haematoxylin_only(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (H&E, 8-bit) with the eosin removed: per-image haematoxylin and eosin directions
    (Macenko), each pixel's eosin amount set to zero, the residual kept; same white point."""
    white = brightest_white(rgb.reshape(-1, 3), 0.01)
    od = rgb_to_od(rgb, white)
    references = (HAEMATOXYLIN_RGB_OD / np.linalg.norm(HAEMATOXYLIN_RGB_OD), EOSIN_RGB_OD / np.linalg.norm(EOSIN_RGB_OD))
    haematoxylin, eosin = macenko_directions(od.reshape(-1, 3), references) or references
    residual = np.cross(haematoxylin, eosin)
    residual /= np.linalg.norm(residual)
    amounts = od @ np.linalg.inv(np.stack([haematoxylin, eosin, residual]))
    kept = np.maximum(amounts[..., :1], 0.0) * haematoxylin + amounts[..., 2:] * residual
    return od_to_rgb(np.maximum(kept, 0.0), white)
