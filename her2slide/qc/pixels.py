"""Per-pixel colour maps and per-block statistics of a tile: what every QC check is judged on.

All maps are at the working resolution. A tile's owned box is cut into square blocks of
``QcSettings.block_um`` and each statistic is a percentile over a block's pixels (over its
tissue pixels for the stain statistics), computed with one sort per call.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from her2slide.config import Settings
from her2slide.stain import StainModel, rgb_to_od
from her2slide.stain.white_point import pure_white_is_fill

#: Smoothing before the pixel tests, µm (Gaussian σ): stain and ink tests see structures, not
#: sensor noise; the edge-width test keeps nuclear edges intact.
SMOOTH_UM = 0.5
EDGE_SMOOTH_UM = 0.25
#: Percentiles behind the block statistics (docs/roi_and_qc.md): the palest fifth (fold floor,
#: background DAB), nuclear counterstain, and the contrast range for the edge width.
FLOOR_Q, CONTRAST_Q, COUNTERSTAIN_Q = 20, (5, 99), 95
#: Rim added around ink and clipped pixels before they are kept out of segmentation and stain estimation.
SPOILT_RIM_UM = 2.0

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in working px of a tile's read box


def colour_maps(rgb: np.ndarray, stain: StainModel, settings: Settings) -> dict[str, np.ndarray]:
    """Per-pixel optical density (raw), smoothed stain amounts, tissue, ink and clipped pixels."""
    qc = settings.qc
    od = rgb_to_od(rgb, stain.white)
    sigma = SMOOTH_UM / settings.tiling.work_mpp
    smooth = ndi.gaussian_filter(od, (sigma, sigma, 0), truncate=2.0)
    amounts = smooth @ stain.unmixing.astype(np.float32)
    haem, dab, residual = np.maximum(amounts[..., 0], 0), np.maximum(amounts[..., 1], 0), amounts[..., 2]
    r, g, b = smooth[..., 0], smooth[..., 1], smooth[..., 2]
    norm = np.sqrt(r * r + g * g + b * b)
    darkest = np.minimum(np.minimum(r, g), b)
    ink = (((np.abs(residual) > qc.ink_residual_share * norm) & (norm > qc.ink_min_od))
           | (haem > qc.ink_haematoxylin_od) | (darkest > qc.ink_dark_od))
    clipped = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]) <= qc.saturated_dark_level
    if pure_white_is_fill(stain.white):
        clipped |= np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]) >= 255
    return {"od": od, "haem": haem, "dab": dab, "tissue": (haem + dab) > settings.cells.tissue_od,
            "ink": ink, "clipped": clipped}


def spoilt_pixels(colour: dict[str, np.ndarray], settings: Settings) -> np.ndarray:
    """Ink and clipped pixels with a rim of ``SPOILT_RIM_UM`` (the blurred edge of a pen stroke)."""
    spoilt = colour["ink"] | colour["clipped"]
    if not spoilt.any():
        return spoilt
    return ndi.binary_dilation(spoilt, iterations=max(1, round(SPOILT_RIM_UM / settings.tiling.work_mpp)))


def block_stats(rgb: np.ndarray, stain: StainModel, settings: Settings, window: Window,
                block_px: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-block statistics of the pixels in ``window``, cut into ``block_px`` squares (the last
    row/column may be smaller; None: one block per ``QcSettings.block_um``), and the spoilt pixels
    of all of ``rgb``. Filters run on the whole of ``rgb`` so windows see their context."""
    mpp = settings.tiling.work_mpp
    block_px = block_px or max(1, round(settings.qc.block_um / mpp))
    colour = colour_maps(rgb, stain, settings)
    spoilt = spoilt_pixels(colour, settings)
    sharp = ndi.gaussian_filter(colour["od"] @ stain.unmixing[:, 0].astype(np.float32), EDGE_SMOOTH_UM / mpp)
    gradient = np.hypot(ndi.sobel(sharp, 0), ndi.sobel(sharp, 1)) / (8.0 * mpp)  # OD per µm

    def blocks(a: np.ndarray) -> np.ndarray:
        return cut_blocks(a, window, block_px)

    on_tissue = np.where(blocks(colour["tissue"]) > 0, 1.0, np.nan)
    floor, tissue = haematoxylin_floor(colour, window, block_px)
    lo, hi = nanpercentile(blocks(sharp), CONTRAST_Q)
    steepest = nanpercentile(blocks(gradient), [CONTRAST_Q[1]])[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "tissue": tissue,
            "saturated": np.nanmean(blocks(colour["clipped"]), axis=-1),
            "ink": np.nanmean(blocks(colour["ink"]), axis=-1),
            "floor": floor,
            "counterstain": nanpercentile(blocks(colour["haem"]) * on_tissue, [COUNTERSTAIN_Q])[0],
            "background_dab": nanpercentile(blocks(colour["dab"]) * on_tissue, [FLOOR_Q])[0],
            "contrast": hi - lo,
            "edge_width_um": (hi - lo) / steepest,
        }, spoilt


def haematoxylin_floor(colour: dict[str, np.ndarray], window: Window, block_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block: the 20th percentile of haematoxylin over tissue pixels (doubled by a fold), and the tissue share."""
    tissue = cut_blocks(colour["tissue"], window, block_px)
    floor = nanpercentile(cut_blocks(colour["haem"], window, block_px) * np.where(tissue > 0, 1.0, np.nan),
                          [FLOOR_Q])[0]
    with np.errstate(invalid="ignore"):
        return floor, np.nanmean(tissue, axis=-1)


def block_pixels(hit: np.ndarray, window: Window, block_px: int, shape: tuple[int, ...]) -> np.ndarray:
    """Pixel mask (``shape``) of the blocks ``hit`` laid out from ``window``'s corner."""
    x0, y0, x1, y1 = window
    full = np.repeat(np.repeat(hit, block_px, axis=0), block_px, axis=1)[:y1 - y0, :x1 - x0]
    out = np.zeros(shape, dtype=bool)
    out[y0:y0 + full.shape[0], x0:x0 + full.shape[1]] = full[:shape[0] - y0, :shape[1] - x0]
    return out


def cut_blocks(a: np.ndarray, window: Window, block_px: int) -> np.ndarray:
    """(ny, nx, block_px²) view of ``a[y0:y1, x0:x1]`` cut into squares, NaN-padded at the far edges."""
    x0, y0, x1, y1 = window
    crop = a[max(y0, 0):y1, max(x0, 0):x1].astype(np.float32)
    ny, nx = max(1, math.ceil(crop.shape[0] / block_px)), max(1, math.ceil(crop.shape[1] / block_px))
    padded = np.full((ny * block_px, nx * block_px), np.nan, dtype=np.float32)
    padded[:crop.shape[0], :crop.shape[1]] = crop
    return padded.reshape(ny, block_px, nx, block_px).transpose(0, 2, 1, 3).reshape(ny, nx, -1)


def nanpercentile(values: np.ndarray, q: list[float] | tuple[float, ...]) -> np.ndarray:
    """Percentiles (linear interpolation, as numpy) over the last axis ignoring NaN; NaN for
    all-NaN rows. One sort per call (NaN sorts last), not one Python call per block."""
    ordered = np.sort(values, axis=-1)
    n = (~np.isnan(values)).sum(axis=-1)
    out = []
    for p in q:
        pos = np.maximum(n - 1, 0) * (p / 100.0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        a = np.take_along_axis(ordered, lo[..., None], axis=-1)[..., 0]
        b = np.take_along_axis(ordered, hi[..., None], axis=-1)[..., 0]
        out.append(np.where(n > 0, a + (b - a) * (pos - lo), np.nan))
    return np.stack(out)
