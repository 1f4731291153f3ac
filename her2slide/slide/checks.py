"""Refuse slides that open but must not be scored: fluorescence, H&E, no tissue.

A refused slide raises ``UnsuitableSlideError`` so it is never reported as HER2 0. The
checks run on the low-resolution thumbnail and use colour statistics that are far apart
on real files (measured values below), so the thresholds have wide margins.

Measured on thumbnails at 8 µm/px (``/work/shared/data``; tissue from ``detect_tissue``,
shares with saturation ≥ 0.08):

=============================================  =============  ===========  ===========
file                                           brightest      pink share   brown share
                                               border median  of tissue    of tissue
=============================================  =============  ===========  ===========
fluorescence-dapi.ndpi (DAPI, dark field)      8.0            —            —
CMU-1-Small-Region.svs (H&E)                   245.0          0.635        0.000
tcga-cr-7395-jpeg2000-no-mpp.svs (H&E, 0.5)    238.7          0.954        0.000
dicom-multiframe.dcm (H&E, haematoxylin-rich)  226.7          0.074–0.106  0.000
HER2 IHC core 0 (oesophagus TMA, 0.25)         237.3          0.000        0.000
HER2 IHC core 1+                               236.3          0.000        0.000
HER2 IHC core 2+ (0123a214)                    237.3          0.000        0.164
HER2 IHC core 2+ (726fa489)                    237.0          0.000        0.000
=============================================  =============  ===========  ===========

(The DICOM file is refused earlier for its pixel size; its pink share, over thumbnails
of 4–16 µm/px with a guessed mpp, is the lowest of the H&E slides and sets the pink
threshold at 0.05: still 50x the largest IHC value, 0.001 at 4 µm/px.)
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2hsv

from her2slide.errors import UnsuitableSlideError
from her2slide.slide.reader import SlideReader
from her2slide.slide.tissue import TissueMask, detect_tissue

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


def hue_shares(thumbnail_rgb: np.ndarray, tissue: np.ndarray, min_saturation: float = 0.08) -> tuple[float, float]:
    """Shares of tissue pixels that are eosin pink (hue 300–360°) and DAB brown (hue 0–60°).

    Haematoxylin is blue-violet (220–300°) and pale or grey pixels (saturation below
    ``min_saturation``) count as neither.
    """
    pixels = thumbnail_rgb[tissue]
    if len(pixels) == 0:
        return 0.0, 0.0
    hsv = rgb2hsv(pixels[:, None, :])[:, 0]
    hue, coloured = hsv[:, 0] * 360.0, hsv[:, 1] >= min_saturation
    pink = np.mean(coloured & (hue >= 300.0))
    brown = np.mean(coloured & (hue < 60.0))
    return float(pink), float(brown)


def check_suitability(reader: SlideReader, thumbnail_rgb: np.ndarray, mpp: float, *,
                      tissue: TissueMask | None = None, min_background: float = 80.0,
                      min_tissue_um2: float = 20_000.0, max_pink_share: float = 0.05,
                      max_brown_share_for_he: float = 0.05, min_saturation: float = 0.08) -> None:
    """Raise ``UnsuitableSlideError`` if the slide is not brightfield HER2 IHC with tissue.

    Parameters
    ----------
    reader : the open slide (named in the error; its mpp scales the tissue mask).
    thumbnail_rgb, mpp : whole-slide thumbnail and its µm per pixel (≈ 8).
    tissue : the tissue mask if the caller already has one.
    min_background : brightest-border median below this is dark field (measured:
        fluorescence 8, brightfield ≥ 226).
    min_tissue_um2 : less tissue than this is "no tissue" (a square about 140 µm a side).
    max_pink_share, max_brown_share_for_he : H&E when more than ``max_pink_share`` of
        tissue is eosin pink while at most ``max_brown_share_for_he`` is DAB brown
        (measured pink: H&E 0.07–0.95, HER2 IHC cores ≤ 0.001).
    """
    if background_brightness(thumbnail_rgb) < min_background:
        raise UnsuitableSlideError(reader.path, FLUORESCENCE_REASON)
    if tissue is None:
        tissue = detect_tissue(thumbnail_rgb, mpp, level0_mpp=reader.mpp)
    if tissue.area_um2 < min_tissue_um2:
        raise UnsuitableSlideError(reader.path, NO_TISSUE_REASON)
    pink, brown = hue_shares(thumbnail_rgb, tissue.mask, min_saturation)
    if pink > max_pink_share and brown <= max_brown_share_for_he:
        raise UnsuitableSlideError(reader.path, HE_REASON)
