"""Slide artefacts painted onto rendered synthetic pixels: out-of-focus patches, folds, pen ink.

Quality control has to be tested on slides whose damaged regions are known exactly, so the
generator can spoil chosen regions of an otherwise perfect slide. Each artefact acts on the
rendered level-0 RGB, the way the real one acts on the light reaching the scanner:

* ``Blur``: a rectangle out of focus (the image there convolved with a Gaussian);
* ``Fold``: a band where the tissue lies twice: the tissue ``shift_um`` away is added in
  optical density (Beer–Lambert: two layers absorb like one layer of summed density);
* ``Ink``: a straight pen stroke whose dye adds its optical density (green, blue or black).

The tissue edge needs no painting: every synthetic slide has one.
Artefacts are wrapped around any region source (``(y0, x0, h, w) -> RGB``), so the slide is still
written block by block; a block near an artefact is rendered with the margin the artefact reaches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi

from ..stain import od_to_rgb, rgb_to_od

__all__ = ["Artefact", "Blur", "Fold", "Ink", "INK_OD", "artefact_polygon_um", "with_artefacts"]

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in µm
RegionSource = Callable[[int, int, int, int], np.ndarray]

#: Optical density (R, G, B) of each ink at ``strength`` 1: what a marker pen laid on a coverslip
#: transmits (green ≈ RGB 40/140/70 over white, blue ≈ 40/80/170, black ≈ 40/40/45).
INK_OD: dict[str, tuple[float, float, float]] = {
    "green": (0.80, 0.26, 0.56),
    "blue": (0.80, 0.50, 0.18),
    "black": (0.80, 0.80, 0.75),
}


class _Artefact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Blur(_Artefact):
    """A rectangle out of focus."""

    kind: Literal["blur"] = "blur"
    box_um: Box
    sigma_um: float = Field(3.0, gt=0, description="Gaussian σ of the defocus blur")


class Fold(_Artefact):
    """A band where the tissue ``shift_um`` (dx, dy) away lies folded over the tissue here."""

    kind: Literal["fold"] = "fold"
    box_um: Box
    shift_um: tuple[float, float] = (0.0, 40.0)


class Ink(_Artefact):
    """A straight pen stroke from ``start_um`` to ``end_um``."""

    kind: Literal["ink"] = "ink"
    start_um: tuple[float, float]
    end_um: tuple[float, float]
    width_um: float = Field(30.0, gt=0)
    colour: Literal["green", "blue", "black"] = "green"
    strength: float = Field(1.0, gt=0, description="multiplies the ink's optical density")


Artefact = Annotated[Union[Blur, Fold, Ink], Field(discriminator="kind")]


def artefact_polygon_um(a: Blur | Fold | Ink) -> list[list[float]]:
    """Outline of the region an artefact damages, as [[x, y], ...] µm (closed implicitly)."""
    if isinstance(a, Ink):
        (x0, y0), (x1, y1) = a.start_um, a.end_um
        length = max(np.hypot(x1 - x0, y1 - y0), 1e-9)
        nx, ny = -(y1 - y0) / length * a.width_um / 2, (x1 - x0) / length * a.width_um / 2
        return [[x0 + nx, y0 + ny], [x1 + nx, y1 + ny], [x1 - nx, y1 - ny], [x0 - nx, y0 - ny]]
    x0, y0, x1, y1 = a.box_um
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _reach_px(a: Blur | Fold | Ink, mpp: float) -> int:
    """Pixels outside its region that an artefact reads."""
    if isinstance(a, Blur):
        return int(np.ceil(4 * a.sigma_um / mpp)) + 1
    if isinstance(a, Fold):
        return int(np.ceil(max(abs(a.shift_um[0]), abs(a.shift_um[1])) / mpp)) + 1
    return 0


def _bounds_px(a: Blur | Fold | Ink, mpp: float) -> tuple[float, float, float, float]:
    poly = np.asarray(artefact_polygon_um(a)) / mpp
    return poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max()


def _inside(a: Blur | Fold | Ink, xs: np.ndarray, ys: np.ndarray, mpp: float) -> np.ndarray:
    """Pixels (level-0 centres, broadcast grids) inside the artefact's region."""
    if isinstance(a, Ink):
        (x0, y0), (x1, y1) = np.asarray(a.start_um) / mpp, np.asarray(a.end_um) / mpp
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
        return np.hypot(xs - x0 - t * dx, ys - y0 - t * dy) <= a.width_um / mpp / 2
    x0, y0, x1, y1 = np.asarray(a.box_um) / mpp
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def _apply(a: Blur | Fold | Ink, rgb: np.ndarray, y0: int, x0: int, mpp: float, white: np.ndarray) -> np.ndarray:
    """``rgb`` (a rendered window whose top-left pixel is level-0 (y0, x0)) with ``a`` painted in."""
    h, w = rgb.shape[:2]
    ys, xs = (y0 + np.arange(h) + 0.5)[:, None], (x0 + np.arange(w) + 0.5)[None, :]
    inside = _inside(a, xs, ys, mpp)
    if not inside.any():
        return rgb
    out = rgb.copy()
    if isinstance(a, Blur):
        sigma = a.sigma_um / mpp
        blurred = np.stack([ndi.gaussian_filter(rgb[..., c].astype(np.float32), sigma) for c in range(3)], -1)
        out[inside] = np.clip(np.rint(blurred[inside]), 0, 255).astype(np.uint8)
        return out
    od = rgb_to_od(rgb, white)
    if isinstance(a, Fold):
        dx, dy = (int(round(s / mpp)) for s in a.shift_um)
        shifted = np.zeros_like(od)
        src = od[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        shifted[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
        od[inside] += shifted[inside]
    else:
        od[inside] += a.strength * np.asarray(INK_OD[a.colour], np.float32)
    out[inside] = od_to_rgb(od[inside], white)
    return out


def with_artefacts(source: RegionSource, artefacts: list[Blur | Fold | Ink], mpp: float,
                   white: tuple[float, float, float]) -> RegionSource:
    """A region source that paints ``artefacts`` (in order) over what ``source`` renders.

    Blocks away from every artefact are passed through untouched; a block near one is
    rendered with the margin its artefacts read (blur kernel, fold shift) and cropped.
    """
    if not artefacts:
        return source
    white_arr = np.asarray(white, np.float64)
    reach = [_reach_px(a, mpp) for a in artefacts]
    bounds = [_bounds_px(a, mpp) for a in artefacts]

    def render(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        near = [i for i, (bx0, by0, bx1, by1) in enumerate(bounds)
                if bx0 < x0 + w and bx1 > x0 and by0 < y0 + h and by1 > y0]
        if not near:
            return source(y0, x0, h, w)
        m = max(reach[i] for i in near)
        rgb = source(y0 - m, x0 - m, h + 2 * m, w + 2 * m)
        for i in near:
            rgb = _apply(artefacts[i], rgb, y0 - m, x0 - m, mpp, white_arr)
        return rgb[m:m + h, m:m + w]

    return render
