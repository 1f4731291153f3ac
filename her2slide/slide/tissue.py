"""Tissue mask on a low-resolution thumbnail (≈ 8 µm/px), so tiles are only cut where cells are.

Tissue absorbs light and glass does not, so the summed RGB optical density separates
them whatever the stain. Otsu (on log OD) picks the split per slide; an absolute floor
keeps blank glass (where Otsu would split noise) empty. Sizes are in µm² so the cleanup means the
same at any thumbnail resolution.

Glass is also featureless, and tissue is not: on a field or crop with no glass at all, Otsu
splits pale stroma from dense epithelium, and the pale part must not be taken for glass (its
border would be taken for a tissue edge). So a region below the threshold is glass only when
its texture is that of glass; a textured one is pale tissue and joins the mask. The mask keeps
that glass (``TissueMask.glass``, lumens included): tissue edges are where tissue meets the glass
around it (``TissueMask.outer_glass``), and the white point is read from all of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from her2slide.stain import brightest_white, rgb_to_od

#: Added before taking the log of OD so glass (OD ≈ 0) stays finite.
_LOG_OFFSET = 0.003
#: Glass texture: a region below the tissue threshold is glass when the median local standard
#: deviation (3 x 3 thumbnail px) of its summed OD is below this. Measured at 8 µm/px: glass
#: around the four real TMA cores 0.0017-0.0022, pale tissue that Otsu split off in crops of
#: them 0.013-0.045, a synthetic thumbnail with 1.5 grey levels of noise per channel 0.0045
#: (docs/roi_and_qc.md, "The tissue edge").
GLASS_MAX_TEXTURE_OD = 0.006


@dataclass(frozen=True)
class TissueMask:
    """Boolean tissue mask with its scale.

    ``mpp`` is µm per mask pixel; ``downsample`` is level-0 pixels per mask pixel.
    """

    mask: np.ndarray
    mpp: float
    downsample: float
    glass: np.ndarray | None = None  # featureless background, lumens too; None: every pixel off the mask

    @property
    def outer_glass(self) -> np.ndarray:
        """The glass around the tissue, where it has an edge (not lumens, which the mask fills;
        the image border is not glass)."""
        return ~self.mask if self.glass is None else self.glass & ~self.mask

    @property
    def area_um2(self) -> float:
        return float(self.mask.sum()) * self.mpp**2

    def fraction_in(self, x0: float, y0: float, x1: float, y1: float) -> float:
        """Tissue fraction of the level-0 box [x0, x1) x [y0, y1) (mask pixels it touches)."""
        h, w = self.mask.shape
        c0, c1 = max(0, math.floor(x0 / self.downsample)), min(w, math.ceil(x1 / self.downsample))
        r0, r1 = max(0, math.floor(y0 / self.downsample)), min(h, math.ceil(y1 / self.downsample))
        if c1 <= c0 or r1 <= r0:
            return 0.0
        return float(self.mask[r0:r1, c0:c1].mean())


def _small_components(mask: np.ndarray, min_px: float) -> np.ndarray:
    """Pixels of connected components of ``mask`` smaller than ``min_px``."""
    labels, n = ndi.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    small = np.bincount(labels.ravel()) < min_px
    small[0] = False
    return small[labels]


def detect_tissue(thumbnail_rgb: np.ndarray, mpp: float, *, level0_mpp: float | None = None,
                  min_od: float = 0.02, smooth_px: float = 1.0, min_object_um2: float = 5_000.0,
                  min_hole_um2: float = 50_000.0) -> TissueMask:
    """Tissue mask of an RGB thumbnail whose pixels are ``mpp`` µm wide.

    Parameters
    ----------
    thumbnail_rgb : (h, w, 3) uint8 image of the whole slide.
    mpp : µm per thumbnail pixel.
    level0_mpp : µm per level-0 pixel of the slide (``reader.mpp``), which sets
        ``downsample``; without it the thumbnail is its own level 0.
    min_od : floor on the summed-RGB optical density threshold. Glass is ≈ 0.005 (JPEG
        banding up to 0.015); the palest real IHC core measured (HER2 0, oesophagus TMA)
        has tissue at 0.02–0.1 on a thumbnail at 8 µm/px.
    smooth_px : Gaussian sigma (thumbnail pixels) applied to the OD before thresholding,
        so pale tissue is not speckled with glass-like pixels.
    min_object_um2, min_hole_um2 : smaller specks are dropped, smaller holes filled (also
        where the image border cuts them).
    """
    px_area = mpp**2
    mask = absorbing(thumbnail_rgb, min_od, smooth_px)
    labels, texture = background_textures(~mask, thumbnail_rgb)
    mask |= (texture > GLASS_MAX_TEXTURE_OD)[labels]  # pale tissue, not glass
    glass = ~mask
    mask &= ~_small_components(mask, min_object_um2 / px_area)
    # Background smaller than a hole is not glass around the tissue, even where the image border
    # cuts it (a lumen at the edge of a field or crop): it is filled.
    mask |= _small_components(~mask, min_hole_um2 / px_area)
    downsample = 1.0 if level0_mpp is None else mpp / level0_mpp
    return TissueMask(mask=mask, mpp=float(mpp), downsample=float(downsample), glass=glass)


def absorbing(thumbnail_rgb: np.ndarray, min_od: float = 0.02, smooth_px: float = 1.0) -> np.ndarray:
    """Pixels whose smoothed summed OD is above the slide's glass/tissue split (see detect_tissue)."""
    # Pure white is usually a reader's fill for unscanned area, not glass: leave it out of
    # the white point, and take the brightest tenth (not the very brightest) so its blurred edge
    # (254, 250, ...) is not taken for glass either; otherwise real glass (often ≈ 240) would
    # count as tissue. Ranked by summed log intensity, so a scanner's colour balance cancels.
    scanned = thumbnail_rgb[(thumbnail_rgb < 255).any(axis=-1)]
    white = brightest_white(scanned if len(scanned) >= 100 else thumbnail_rgb.reshape(-1, 3), share=0.1)
    od_sum = ndi.gaussian_filter(rgb_to_od(thumbnail_rgb, white).sum(axis=-1), smooth_px)
    # Otsu on log OD: glass (≈ 0.005) and pale tissue (≈ 0.02–0.1) are two modes there,
    # while on a linear scale the long tail of dark tissue drags the split into the tissue.
    log_od = np.log(od_sum + _LOG_OFFSET)
    threshold = min_od
    if log_od.max() > log_od.min():
        threshold = max(min_od, float(np.exp(threshold_otsu(log_od)) - _LOG_OFFSET))
    return od_sum > threshold


def background_textures(background: np.ndarray, thumbnail_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the connected regions of ``background`` and each one's median local texture
    (index 0, outside every region, is 0): the standard deviation over 3 x 3 pixels of the summed
    OD against any white (unclipped), so neither the white point nor a scanner's colour balance
    changes it."""
    labels, n = ndi.label(background)
    od = -np.log10(np.maximum(thumbnail_rgb.astype(np.float32), 1.0)).sum(axis=-1)
    mean = ndi.uniform_filter(od, 3)
    texture = np.sqrt(np.maximum(ndi.uniform_filter(od * od, 3) - mean * mean, 0.0))
    medians = ndi.median(texture, labels, index=np.arange(1, n + 1)) if n else []
    return labels, np.concatenate([[0.0], np.asarray(medians, dtype=np.float64)])
