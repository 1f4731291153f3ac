"""Refuse slides that open but must not be scored: fluorescence, H&E, no tissue.

A refused slide raises ``UnsuitableSlideError`` so it is never reported as HER2 0. The
checks run on the low-resolution thumbnail and use colour statistics that are far apart
on real files (measured values below), so the thresholds have wide margins.

H&E is told apart in stain space, not by hue. Any mixture of haematoxylin and DAB lies
in the plane of their two optical-density vectors; eosin does not (its OD direction has a
component of -0.63 along the unit vector orthogonal to that plane). So the median signed
share of that orthogonal "residual" direction in the tissue's OD separates H&E from IHC
whatever the amounts of the two stains. (A hue test was tried first and failed: at 8 µm/px
a thin intense DAB membrane averaged with purple haematoxylin looks mauve, so a synthetic
3+ slide had 32% "pink" pixels.)

Measured on thumbnails at 8 µm/px (``../shared/data``, tissue from ``detect_tissue``):

=============================================  =============  ======================
file                                           brightest      median residual share
                                               border median  of tissue OD
=============================================  =============  ======================
fluorescence-dapi.ndpi (DAPI, dark field)      8.0            —
CMU-1-Small-Region.svs (H&E)                   245.0          -0.143
tcga-cr-7395-jpeg2000-no-mpp.svs (H&E, 0.5)    238.7          -0.308
HER2 IHC cores 0, 1+, 2+, 2+ (TMA, 0.25)       236–237        +0.081 to +0.100
synthetic IHC slides, scores 0 / 2+ / 3+       —              +0.011 to +0.032
=============================================  =============  ======================

The threshold, -0.07, sits half-way between the palest H&E and the lowest IHC value.
(The DICOM H&E file is refused earlier for its pixel size.)
"""

from __future__ import annotations

import numpy as np

from her2slide.errors import UnsuitableSlideError
from her2slide.slide.reader import SlideReader
from her2slide.slide.tissue import TissueMask, detect_tissue
from her2slide.stain import StainModel, estimate_white_point, rgb_to_od

FLUORESCENCE_REASON = "looks like a fluorescence image, not brightfield IHC; not scored"
HE_REASON = "looks like H&E (eosin counterstain), not HER2 IHC; not scored"
NO_TISSUE_REASON = "no tissue found"


def background_brightness(thumbnail_rgb: np.ndarray, border_fraction: float = 0.05) -> float:
    """Median brightness (mean of R, G, B) of the brightest of the four border strips.

    Brightfield glass is bright (≈ 240) and dark-field background is black, and at least
    one edge of a slide is usually glass. Pure white (255, 255, 255) is left out: it is
    a reader's fill for unscanned or transparent area and says nothing about the scan.
    """
    brightness = thumbnail_rgb.astype(np.float32).mean(axis=-1)
    scanned = (thumbnail_rgb < 255).any(axis=-1)
    b = max(1, round(min(brightness.shape) * border_fraction))
    strips = [(np.s_[:b], np.s_[:]), (np.s_[-b:], np.s_[:]), (np.s_[:], np.s_[:b]), (np.s_[:], np.s_[-b:])]
    medians = [float(np.median(brightness[r, c][scanned[r, c]]))
               for r, c in strips if scanned[r, c].any()]
    return max(medians, default=255.0)


def residual_share(thumbnail_rgb: np.ndarray, tissue: np.ndarray, min_od: float = 0.05) -> float:
    """Median signed share of the tissue's optical density outside the haematoxylin–DAB plane.

    Near zero for any H–DAB mixture, clearly negative for eosin (see the module docstring).
    """
    pixels = thumbnail_rgb[tissue].reshape(1, -1, 3)
    if pixels.shape[1] == 0:
        return 0.0
    od = rgb_to_od(pixels, estimate_white_point(thumbnail_rgb))[0]
    norm = np.linalg.norm(od, axis=1)
    stained = norm > min_od
    if not stained.any():
        return 0.0
    residual = StainModel.default().matrix[2]
    return float(np.median(od[stained] @ residual / norm[stained]))


def check_suitability(reader: SlideReader, thumbnail_rgb: np.ndarray, mpp: float, *,
                      tissue: TissueMask | None = None, min_background: float = 80.0,
                      min_tissue_um2: float = 20_000.0, min_residual_share: float = -0.07) -> None:
    """Raise ``UnsuitableSlideError`` if the slide is not brightfield HER2 IHC with tissue.

    Parameters
    ----------
    reader : the open slide (named in the error; its mpp scales the tissue mask).
    thumbnail_rgb, mpp : whole-slide thumbnail and its µm per pixel (≈ 8).
    tissue : the tissue mask if the caller already has one.
    min_background : brightest-border median below this is dark field (measured:
        fluorescence 8, brightfield ≥ 226).
    min_tissue_um2 : less tissue than this is "no tissue" (a square about 140 µm a side).
    min_residual_share : H&E when the tissue's median residual share is below this
        (measured: H&E -0.14 and -0.31, IHC +0.01 to +0.10).
    """
    if background_brightness(thumbnail_rgb) < min_background:
        raise UnsuitableSlideError(reader.path, FLUORESCENCE_REASON)
    if tissue is None:
        tissue = detect_tissue(thumbnail_rgb, mpp, level0_mpp=reader.mpp)
    if tissue.area_um2 < min_tissue_um2:
        raise UnsuitableSlideError(reader.path, NO_TISSUE_REASON)
    if residual_share(thumbnail_rgb, tissue.mask) < min_residual_share:
        raise UnsuitableSlideError(reader.path, HE_REASON)
