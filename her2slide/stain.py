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
    h, d = fit_two_stains(od, default.haematoxylin, default.dab, alpha=alpha, max_angle_deg=max_angle_deg)
    return StainModel(h, d, white)


def vector_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two stain directions, degrees."""
    return float(np.degrees(np.arccos(np.clip(_unit(a) @ _unit(b), -1.0, 1.0))))


def fit_two_stains(od: np.ndarray, first: np.ndarray, second: np.ndarray, *, alpha: float = 1.0,
                   max_angle_deg: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Directions of two stains in optical densities (n, 3) by Macenko's method, each kept
    only within ``max_angle_deg`` of its reference (``first``, ``second``), else the reference.

    The two extremes of the pixels' angles in the plane of their two largest principal
    directions (the ``alpha`` and ``100 - alpha`` percentiles, Macenko et al. 2009) are
    assigned to the references they are closest to. Used for haematoxylin–DAB here and for
    haematoxylin–eosin by her2slide.synth.restain.
    """
    first, second = _unit(first), _unit(second)
    _, _, vt = np.linalg.svd(od, full_matrices=False)
    plane = vt[:2]
    if plane[0] @ np.ones(3) < 0:
        plane[0] = -plane[0]
    proj = od @ plane.T
    angles = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(angles, [alpha, 100 - alpha])
    candidates = [_unit(np.cos(a) * plane[0] + np.sin(a) * plane[1]) for a in (lo, hi)]
    c0, c1 = [c if c.sum() > 0 else -c for c in candidates]
    if vector_angle_deg(c0, first) + vector_angle_deg(c1, second) > vector_angle_deg(c1, first) + vector_angle_deg(c0, second):
        c0, c1 = c1, c0
    return (c0 if vector_angle_deg(c0, first) <= max_angle_deg else first,
            c1 if vector_angle_deg(c1, second) <= max_angle_deg else second)
