"""The slide's stain sample: small patches spread over its tissue, read once before the tile stream.

The white point, the stain vectors and the QC fold reference describe the whole slide, so they
are estimated before any cell is measured. They are colour statistics, so they need pixels
from all over the tissue rather than many pixels: ``StainSettings.sample_patches`` patches of
``patch_um`` at the working resolution (16 x 128 µm: 1 MP at most, whatever the slide's size,
so the estimate costs the same on a biopsy and on a resection and its memory stays flat).
"""

from __future__ import annotations

import numpy as np

from her2slide.config import Settings
from her2slide.qc.pixels import colour_maps, spoilt_pixels
from her2slide.slide import SlideReader, TissueMask
from her2slide.slide.tiles import read_box
from her2slide.stain import SlideStain, StainModel, VectorFit, fit_stain_vectors, rgb_to_od
from her2slide.stain.white_point import slide_white_point


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


def estimate_slide_stain(sample: list[np.ndarray], settings: Settings, thumbnail: np.ndarray | None = None,
                         tissue: TissueMask | None = None) -> SlideStain:
    """White point (her2slide.stain.white_point) and stain vectors with their confidence, from the
    sample without its pen ink and clipped pixels. Never normalises; the reference vectors
    where per-slide estimation is off or there is no sample."""
    white = slide_white_point(sample, thumbnail, tissue, settings)
    reference = StainModel.default()
    if not settings.stain.estimate_per_slide or not sample:
        return SlideStain(StainModel(reference.haematoxylin, reference.dab, white.rgb), white,
                          VectorFit(reference.haematoxylin, "reference"), VectorFit(reference.dab, "reference"))
    clean = clean_sample_pixels(sample, white.rgb, settings)
    od = np.concatenate([rgb_to_od(pixels, white.rgb) for pixels in clean])
    halves = np.concatenate([np.full(len(pixels), k % 2 == 0) for k, pixels in enumerate(clean)])
    if len(clean) < 2:
        halves = None
    h, d = fit_stain_vectors(od, halves, max_angle_deg=settings.stain.max_angle_deg)
    return SlideStain(StainModel(h.vector, d.vector, white.rgb), white, h, d)


def slide_stain_model(sample: list[np.ndarray], settings: Settings) -> StainModel:
    """The stain model alone (for callers without a thumbnail: the white point then comes from the sample)."""
    return estimate_slide_stain(sample, settings).model


def clean_sample_pixels(sample: list[np.ndarray], white: np.ndarray, settings: Settings) -> list[np.ndarray]:
    """Each patch's pixels (n, 3) fit for estimating stain vectors: without pen ink and clipped
    pixels (judged against the reference vectors) and a 2 µm rim around them. In a test slide a
    green pen stroke drew the haematoxylin estimate 11° off, which changed every cell's DAB reading."""
    reference = StainModel.default()
    stain = StainModel(reference.haematoxylin, reference.dab, white)
    return [rgb[~spoilt_pixels(colour_maps(rgb, stain, settings), settings)] for rgb in sample]
