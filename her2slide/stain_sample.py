"""The slide's stain sample: small patches spread over its tissue, read once before the tile stream.

Stain vectors, the white point and the QC fold reference describe the whole slide, so they
are estimated before any cell is measured. They are colour statistics, so they need pixels
from all over the tissue rather than many pixels: ``StainSettings.sample_patches`` patches of
``patch_um`` at the working resolution (16 x 128 µm: 1 MP at most, whatever the slide's size,
so the estimate costs the same on a biopsy and on a resection and its memory stays flat).
"""

from __future__ import annotations

import numpy as np

from her2slide.config import Settings
from her2slide.measure import read_box
from her2slide.qc import stain_sample_pixels
from her2slide.slide import SlideReader, TissueMask
from her2slide.stain import StainModel, estimate_stain_model


def sample_patches(reader: SlideReader, tissue: TissueMask, settings: Settings) -> list[np.ndarray]:
    """RGB patches (working resolution) centred on tissue-mask pixels spread evenly over the
    tissue in raster order; patches at the slide's border are shifted inside it."""
    rows, cols = np.nonzero(tissue.mask)
    if len(rows) == 0:
        return []
    picks = np.unique(np.linspace(0, len(rows) - 1, settings.stain.sample_patches).round().astype(int))
    downsample = tissue.mpp / reader.mpp
    side = min(round(settings.stain.patch_um / reader.mpp), *reader.dimensions)  # level-0 px
    work_mpp = settings.tiling.work_mpp
    patches = []
    for row, col in zip(rows[picks], cols[picks]):
        x0 = int(np.clip((col + 0.5) * downsample - side / 2, 0, reader.dimensions[0] - side))
        y0 = int(np.clip((row + 0.5) * downsample - side / 2, 0, reader.dimensions[1] - side))
        patches.append(read_box(reader, (x0, y0, x0 + side, y0 + side), work_mpp))
    return patches


def slide_stain_model(sample: list[np.ndarray], settings: Settings) -> StainModel:
    """Stain vectors and white point from the sample (never normalises); the reference
    vectors when per-slide estimation is off or there is no sample."""
    if not settings.stain.estimate_per_slide or not sample:
        return StainModel.default()
    pixels = stain_sample_pixels(sample, settings)  # without pen ink, which would pull the vectors
    return estimate_stain_model(pixels[None], max_angle_deg=settings.stain.max_angle_deg)
