"""A slide reader with the slide's white turned to the colour balance the segmenters were trained on.

A segmenter that looks at RGB sees a scanner's tone (on a warm-tinted real core the first CNN found a
third fewer tumour cells), so the tile stream reads through :class:`WhiteBalancedReader`; optical
densities are unchanged by it because the stain model's white is balanced with the pixels
(her2slide.stain.white_point explains where the white comes from).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from her2slide.slide.reader import SlideReader
from her2slide.stain import SlideStain, StainModel
from her2slide.stain.white_point import TRAINING_GLASS_RGB, balancing_gains, pure_white_is_fill


class WhiteBalancedReader:
    """A slide reader whose pixels are multiplied by per-channel ``gains``; with ``keep_fill``,
    pure-white pixels (a reader's fill) stay pure white. Picklable with the reader it wraps."""

    def __init__(self, reader: SlideReader, gains: np.ndarray, keep_fill: bool) -> None:
        self.reader = reader
        self.gains = np.asarray(gains, dtype=np.float32)
        self.keep_fill = keep_fill
        for name in ("path", "mpp", "mpp_source", "dimensions", "level_dimensions", "level_downsamples",
                     "vendor", "properties"):
            setattr(self, name, getattr(reader, name))

    def _balanced(self, rgb: np.ndarray) -> np.ndarray:
        out = np.clip(np.rint(rgb * self.gains), 0, 255).astype(np.uint8)
        if self.keep_fill:
            out[(rgb == 255).all(axis=-1)] = 255
        return out

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        return self._balanced(self.reader.read_region(x, y, level, width, height))

    def level_for_mpp(self, target_mpp: float) -> int:
        return self.reader.level_for_mpp(target_mpp)

    def read_at_mpp(self, x: int, y: int, width0: int, height0: int, target_mpp: float) -> np.ndarray:
        return self._balanced(self.reader.read_at_mpp(x, y, width0, height0, target_mpp))

    def thumbnail(self, target_mpp: float) -> tuple[np.ndarray, float]:
        rgb, mpp = self.reader.thumbnail(target_mpp)
        return self._balanced(rgb), mpp

    def close(self) -> None:
        self.reader.close()


def balanced_for_segmenter(reader: SlideReader, stain: SlideStain) -> tuple[WhiteBalancedReader, SlideStain]:
    """``reader`` with the slide's white turned to the segmenter's colour balance, and the slide's
    stain with its model's white balanced alike (so no optical density changes; pixels brighter
    than the balanced white clip, which only glass and lumens are)."""
    gains = balancing_gains(stain.white.rgb, TRAINING_GLASS_RGB)
    model = StainModel(stain.model.haematoxylin, stain.model.dab, stain.model.white * gains)
    # Pure white stays a reader's fill only where it was one: on a slide whose own white is
    # (near) pure white it is glass or clipped tissue, and is balanced like every other pixel.
    return WhiteBalancedReader(reader, gains, pure_white_is_fill(stain.white.rgb)), replace(stain, model=model)
