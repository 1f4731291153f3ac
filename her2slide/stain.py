"""Colour deconvolution of brightfield haematoxylin–DAB images into stain optical densities.

Convention used throughout the project (renderer and measurement alike):

* optical density is decadic, per RGB channel: ``OD = -log10(I / I0)`` with ``I0`` the
  background (glass) white point of the slide;
* a stain vector is the unit-length RGB optical-density direction of one stain;
* a stain *amount* (what we call "DAB OD") is the coefficient ``c`` in
  ``OD_rgb = c_H * v_H + c_DAB * v_DAB + c_res * v_res``, so it is in OD units along a
  unit vector and does not depend on the vector's length.

Stain vectors may be estimated per slide (Macenko); intensities are never normalised,
because the DAB amount is the quantity that separates 1+, 2+ and 3+.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Ruifrok & Johnston (2001) haematoxylin and DAB directions, as used by scikit-image.
HAEMATOXYLIN_RGB_OD = np.array([0.650, 0.704, 0.286])
DAB_RGB_OD = np.array([0.268, 0.570, 0.776])

#: Smallest intensity used before taking logs, so saturated black pixels stay finite.
_MIN_INTENSITY = 1.0


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64) / np.linalg.norm(v)


@dataclass(frozen=True)
class StainModel:
    """Stain directions and the white point of one slide."""

    haematoxylin: np.ndarray
    dab: np.ndarray
    white: np.ndarray  # RGB intensity of empty glass, shape (3,)

    @classmethod
    def default(cls) -> "StainModel":
        return cls(_unit(HAEMATOXYLIN_RGB_OD), _unit(DAB_RGB_OD), np.array([255.0, 255.0, 255.0]))

    @property
    def matrix(self) -> np.ndarray:
        """Rows: haematoxylin, DAB, residual (orthogonal to both)."""
        h, d = _unit(self.haematoxylin), _unit(self.dab)
        residual = _unit(np.cross(h, d))
        return np.stack([h, d, residual])

    @property
    def unmixing(self) -> np.ndarray:
        """Matrix that maps RGB optical density (…, 3) to stain amounts (…, 3)."""
        return np.linalg.inv(self.matrix)

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "haematoxylin": [round(float(x), 4) for x in self.haematoxylin],
            "dab": [round(float(x), 4) for x in self.dab],
            "white": [round(float(x), 2) for x in self.white],
        }


def rgb_to_od(rgb: np.ndarray, white: np.ndarray | None = None) -> np.ndarray:
    """Per-channel decadic optical density of an 8-bit RGB image, float32, clipped at 0."""
    white = np.array([255.0, 255.0, 255.0]) if white is None else np.asarray(white, dtype=np.float64)
    intensity = np.maximum(rgb.astype(np.float32), _MIN_INTENSITY)
    od = -np.log10(intensity / white.astype(np.float32))
    return np.maximum(od, 0.0, out=od)


def od_to_rgb(od: np.ndarray, white: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`rgb_to_od` (Beer–Lambert), rounded to 8-bit."""
    white = np.array([255.0, 255.0, 255.0]) if white is None else np.asarray(white, dtype=np.float64)
    rgb = white * np.power(10.0, -od)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def stain_amounts(rgb: np.ndarray, model: StainModel) -> np.ndarray:
    """Haematoxylin, DAB and residual amounts (…, 3) of an RGB image, float32.

    Negative amounts (noise around zero, or colours outside the H–DAB plane) are kept
    for the residual but clipped to zero for the two stains.
    """
    od = rgb_to_od(rgb, model.white)
    amounts = od @ model.unmixing.astype(np.float32)
    np.maximum(amounts[..., :2], 0.0, out=amounts[..., :2])
    return amounts


def compose_rgb(haematoxylin: np.ndarray, dab: np.ndarray, model: StainModel,
                background_od: np.ndarray | float = 0.0) -> np.ndarray:
    """Render stain amounts to RGB by Beer–Lambert mixing (used by the synthetic generator)."""
    od = haematoxylin[..., None] * model.haematoxylin + dab[..., None] * model.dab
    od = od + np.asarray(background_od)[..., None] if np.ndim(background_od) else od + background_od
    return od_to_rgb(od, model.white)


def estimate_white_point(rgb: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Glass intensity per channel: a high percentile of bright pixels, never below 200."""
    flat = rgb.reshape(-1, 3)
    bright = flat[flat.sum(axis=1, dtype=np.int32) > 3 * 200]
    if len(bright) < 100:
        return np.array([255.0, 255.0, 255.0])
    return np.clip(np.percentile(bright, percentile, axis=0), 200.0, 255.0)


def estimate_stain_model(rgb: np.ndarray, *, od_threshold: float = 0.15, alpha: float = 1.0,
                         min_pixels: int = 2000, max_angle_deg: float = 12.0) -> StainModel:
    """Per-slide stain directions by Macenko's method, falling back to the defaults.

    Robust to tiles of glass only: with too few stained pixels, or with an estimate
    further than ``max_angle_deg`` from the reference direction, the default vector is
    kept. On the DAB-negative real cores an unguarded fit turns "DAB" into a grey
    direction 17–20° away (noise, not stain) and triples the background DAB; the 12°
    guard keeps the reference there while still adapting on a 2+ core (3° shift). This matters more than a perfect fit: a wild DAB vector would change every
    membrane intensity on the slide.
    """
    white = estimate_white_point(rgb)
    default = StainModel.default()
    od = rgb_to_od(rgb, white).reshape(-1, 3).astype(np.float64)
    od = od[np.linalg.norm(od, axis=1) > od_threshold]
    if len(od) < min_pixels:
        return StainModel(default.haematoxylin, default.dab, white)
    # Plane of the two largest principal directions, as in Macenko et al. 2009.
    _, _, vt = np.linalg.svd(od, full_matrices=False)
    plane = vt[:2]
    if plane[0] @ np.ones(3) < 0:
        plane[0] = -plane[0]
    proj = od @ plane.T
    angles = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(angles, [alpha, 100 - alpha])
    candidates = [_unit(np.cos(a) * plane[0] + np.sin(a) * plane[1]) for a in (lo, hi)]
    candidates = [c if c.sum() > 0 else -c for c in candidates]

    def angle(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.degrees(np.arccos(np.clip(a @ b, -1.0, 1.0))))

    # Assign the two extremes to the stains they are closest to.
    h_ref, d_ref = default.haematoxylin, default.dab
    c0, c1 = candidates
    if angle(c0, h_ref) + angle(c1, d_ref) > angle(c1, h_ref) + angle(c0, d_ref):
        c0, c1 = c1, c0
    h = c0 if angle(c0, h_ref) <= max_angle_deg else h_ref
    d = c1 if angle(c1, d_ref) <= max_angle_deg else d_ref
    return StainModel(h, d, white)
