"""What a synthetic slide is rendered from: its look (stain, optics, scanner), the designed
membrane stain of every tumour cell (an OD along the DAB unit vector, as :mod:`her2slide.stain`
reads it back), and the scene that holds them with the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..stain import StainModel
from ..stain.white_point import TRAINING_GLASS_RGB
from .layout import Layout

__all__ = ["Look", "Membranes", "Scene"]


class Look(BaseModel):
    """Stain, optics and scanner parameters. Defaults are calibrated on the oesophageal HER2 TMA
    cores (see docs/synthetic.md for the measured numbers beside each default)."""

    model_config = ConfigDict(extra="forbid")

    white: tuple[float, float, float] = TRAINING_GLASS_RGB  # glass RGB of the real cores
    haematoxylin: tuple[float, float, float] | None = None     # unit vectors; None: Ruifrok defaults
    dab: tuple[float, float, float] | None = None
    blur_um: float = 0.45               # scanner point spread (Gaussian σ)
    noise_sd: tuple[float, float, float] = (1.5, 1.5, 2.8)  # sensor noise per channel, 8-bit levels
    membrane_width_um: float = 1.3      # band across a shared boundary; each cell stains its half
    membrane_edge_um: float = 0.4       # soft falloff of the band's edge
    ring_variation: float = 0.12        # relative intensity variation along a membrane
    membrane_grain: float = 0.25        # relative sd of the fine granularity of membrane DAB
    haze_grain: float = 0.6             # relative sd of the granularity of cytoplasmic DAB
    cytoplasm_dab_fraction: float = 0.15  # cytoplasmic haze as a fraction of the membrane OD
    cytoplasm_h_od: float = 0.08
    stroma_h_od: float = 0.04
    stroma_texture: float = 0.025       # sd of the fibrous stroma texture (OD)
    lumen_h_od: float = 0.008
    tissue_dab_od: float = 0.03         # non-specific DAB background in tissue
    chromatin: float = 0.22             # relative sd of the nuclear chromatin texture
    jpeg_quality: int = 90
    # style knobs of the training families (defaults: the calibrated look above, unchanged)
    counterstain: float = 1.0           # multiplies all haematoxylin: pale to heavy counterstain
    nucleus_centre: float = 0.88        # nucleus OD at its centre and the rise at its rim, relative to
    nucleus_rim: float = 0.3            # the nucleus OD: low centre + high rim = vesicular chromatin
    fibre_um: float = 0.7               # grain of the fibrous stroma texture

    def stain_model(self) -> StainModel:
        d = StainModel.default()
        def unit(v: tuple[float, float, float] | None, default: np.ndarray) -> np.ndarray:
            return default if v is None else np.asarray(v, np.float64) / np.linalg.norm(v)

        h, b = unit(self.haematoxylin, d.haematoxylin), unit(self.dab, d.dab)
        return StainModel(h, b, np.asarray(self.white, dtype=np.float64))


@dataclass(frozen=True)
class Membranes:
    """Designed membrane stain of every tumour cell (index = cell id).

    Arcs are angles around the cell's centroid ``(cx, cy)`` in level-0 px: a membrane pixel is
    stained when its angle falls in one of up to three arcs ``[start, start + length)``.
    """

    od: np.ndarray          # DAB OD of the stained membrane
    arc_start: np.ndarray   # (n, 3) radians
    arc_len: np.ndarray     # (n, 3) radians, 0 for unused arcs
    haze: np.ndarray        # cytoplasmic DAB OD
    ring_k: np.ndarray      # (n, 2) harmonic orders of the variation along the ring
    ring_amp: np.ndarray    # (n, 2)
    ring_phase: np.ndarray  # (n, 2)
    cx: np.ndarray          # centroid of the rendered cell, level-0 px
    cy: np.ndarray

    @classmethod
    def blank(cls, n: int, cx: np.ndarray, cy: np.ndarray) -> "Membranes":
        z = np.zeros(n)
        z3, z2 = np.zeros((n, 3)), np.zeros((n, 2))
        return cls(z, z3, z3.copy(), z.copy(), np.ones((n, 2), int), z2, z2.copy(), cx, cy)


@dataclass(frozen=True)
class Scene:
    """Everything needed to render a slide: geometry, membrane design, look, pixel size, seed."""

    layout: Layout
    membranes: Membranes
    look: Look
    mpp: float
    seed: int

    @property
    def shape(self) -> tuple[int, int]:
        """Level-0 (height, width) in pixels."""
        return (int(round(self.layout.height_um / self.mpp)), int(round(self.layout.width_um / self.mpp)))
