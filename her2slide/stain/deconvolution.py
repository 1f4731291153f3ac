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
    """Per-channel decadic optical density of an 8-bit RGB image, float32, clipped at 0 (a white
    point is never darker than the darkest intensity, so a black channel stays finite)."""
    white = np.array([255.0, 255.0, 255.0]) if white is None else np.maximum(np.asarray(white, dtype=np.float64),
                                                                             _MIN_INTENSITY)
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


def log_brightness(rgb: np.ndarray) -> np.ndarray:
    """Summed natural-log intensity of each pixel (…, 3): a per-channel gain shifts it by a constant."""
    return np.log(np.maximum(rgb.astype(np.float32), 1.0)).sum(axis=-1)


def brightest_white(pixels: np.ndarray, share: float) -> np.ndarray | None:
    """Per-channel median of the brightest ``share`` of ``pixels`` (…, 3), ranked by
    :func:`log_brightness`; None without pixels. A per-channel gain (a scanner's colour balance)
    moves neither the ranking nor the median: the result carries the gain exactly."""
    flat = pixels.reshape(-1, 3)
    if len(flat) == 0:
        return None
    k = min(len(flat), max(1, round(share * len(flat))))
    top = np.argpartition(log_brightness(flat), len(flat) - k)[len(flat) - k:]
    return np.median(flat[top].astype(np.float64), axis=0)


def estimate_white_point(rgb: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Glass intensity per channel: a high percentile of bright pixels, never below 200."""
    flat = rgb.reshape(-1, 3)
    bright = flat[flat.sum(axis=1, dtype=np.int32) > 3 * 200]
    if len(bright) < 100:
        return np.array([255.0, 255.0, 255.0])
    return np.clip(np.percentile(bright, percentile, axis=0), 200.0, 255.0)


@dataclass(frozen=True)
class VectorFit:
    """One stain's direction as estimated on a slide, and how far to trust it.

    ``angle_deg`` is the estimate's angle from the reference direction (an estimate further
    than the guard is rejected and the reference kept); ``spread_deg`` the angle between the
    estimates from two halves of the pixels (its own uncertainty); None where there were too
    few stained pixels to estimate at all.
    """

    vector: np.ndarray  # the direction used: the estimate, or the reference where it was rejected
    source: str  # "estimated" or "reference"
    angle_deg: float | None = None
    spread_deg: float | None = None

    def to_dict(self) -> dict[str, object]:
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 2)
        return {"source": self.source, "angle_from_reference_deg": rounded(self.angle_deg),
                "spread_deg": rounded(self.spread_deg)}


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two directions, degrees."""
    return float(np.degrees(np.arccos(np.clip(_unit(a) @ _unit(b), -1.0, 1.0))))


def macenko_directions(od: np.ndarray, references: tuple[np.ndarray, np.ndarray], *, od_threshold: float = 0.15,
                       alpha: float = 1.0, min_pixels: int = 2000) -> tuple[np.ndarray, np.ndarray] | None:
    """The two stain directions of optical densities ``od`` (n, 3) by Macenko's method
    (Macenko et al. 2009), each assigned to the reference it is closer to; None with fewer than
    ``min_pixels`` pixels above ``od_threshold``."""
    od = od[np.linalg.norm(od, axis=1) > od_threshold].astype(np.float64)
    if len(od) < min_pixels:
        return None
    # Plane of the two largest principal directions.
    _, _, vt = np.linalg.svd(od, full_matrices=False)
    plane = vt[:2]
    if plane[0] @ np.ones(3) < 0:
        plane[0] = -plane[0]
    proj = od @ plane.T
    angles = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(angles, [alpha, 100 - alpha])
    c0, c1 = (_unit(np.cos(a) * plane[0] + np.sin(a) * plane[1]) for a in (lo, hi))
    c0, c1 = (c if c.sum() > 0 else -c for c in (c0, c1))
    first, second = references
    if angle_deg(c0, first) + angle_deg(c1, second) > angle_deg(c1, first) + angle_deg(c0, second):
        c0, c1 = c1, c0
    return c0, c1


def fit_stain_vectors(od: np.ndarray, halves: np.ndarray | None = None, *,
                      references: tuple[np.ndarray, np.ndarray] = (HAEMATOXYLIN_RGB_OD, DAB_RGB_OD),
                      max_angle_deg: float = 12.0, **macenko: float) -> tuple[VectorFit, VectorFit]:
    """Per-slide stain directions with their confidence, falling back to the references.

    ``od`` (n, 3) are the sample's optical densities; ``halves`` (n,) bool splits them in two
    (e.g. alternate sample patches) to measure the estimate's spread; without it, alternate
    pixels. An estimate whose angle from its reference, plus its spread, exceeds
    ``max_angle_deg`` is rejected: on the DAB-negative real cores an unguarded fit turns "DAB"
    into a grey direction 16-20° away (noise, not stain) and triples the background DAB; the 12°
    guard keeps the reference there while still adapting on a 2+ core. The spread counts because
    an estimate of noise wanders: on the 1+ core (DAB 16° off, spread 3°) a magenta tint, which
    changes no optical density beyond rounding, moved it to 12.0° and across a guard of the
    angle alone, and with it every membrane reading. A wild DAB vector would change every
    membrane intensity on the slide, which matters more than a perfect fit.
    """
    references = (_unit(references[0]), _unit(references[1]))
    both = macenko_directions(od, references, **macenko)
    if both is None:
        return VectorFit(references[0], "reference"), VectorFit(references[1], "reference")
    split = np.arange(len(od)) % 2 == 0 if halves is None else np.asarray(halves, dtype=bool)
    parts = [macenko_directions(od[split], references, **macenko), macenko_directions(od[~split], references, **macenko)]
    fits = []
    for k, (estimate, reference) in enumerate(zip(both, references)):
        spread = angle_deg(parts[0][k], parts[1][k]) if parts[0] is not None and parts[1] is not None else None
        off = angle_deg(estimate, reference)
        accepted = off + (spread or 0.0) <= max_angle_deg
        fits.append(VectorFit(estimate if accepted else reference, "estimated" if accepted else "reference", off, spread))
    return fits[0], fits[1]


def estimate_stain_model(rgb: np.ndarray, *, white: np.ndarray | None = None, od_threshold: float = 0.15,
                         alpha: float = 1.0, min_pixels: int = 2000, max_angle_deg: float = 12.0) -> StainModel:
    """Per-slide stain directions by Macenko's method (:func:`fit_stain_vectors`), falling back
    to the defaults; ``white`` defaults to :func:`estimate_white_point` of ``rgb``."""
    white = estimate_white_point(rgb) if white is None else np.asarray(white, dtype=np.float64)
    od = rgb_to_od(rgb, white).reshape(-1, 3)
    h, d = fit_stain_vectors(od, od_threshold=od_threshold, alpha=alpha, min_pixels=min_pixels,
                             max_angle_deg=max_angle_deg)
    return StainModel(h.vector, d.vector, white)
