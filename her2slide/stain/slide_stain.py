"""A slide's stain: its model (vectors and white point) and how each part was obtained."""

from __future__ import annotations

from dataclasses import dataclass

from her2slide.stain.deconvolution import StainModel, VectorFit
from her2slide.stain.white_point import WhitePoint


@dataclass(frozen=True)
class SlideStain:
    """A slide's stain model and how each of its parts was obtained (reported with QC)."""

    model: StainModel
    white: WhitePoint
    haematoxylin: VectorFit
    dab: VectorFit

    def to_dict(self) -> dict[str, object]:
        return {"white_point": self.white.to_dict(), "haematoxylin": self.haematoxylin.to_dict(),
                "dab": self.dab.to_dict()}
