"""The slide's white point: the light that reaches the camera where nothing absorbs it.

Optical density is measured against it (``OD = -log10(I / white)``), so it decides every DAB
reading. A scanner's colour balance (a warm or cool tone) multiplies each channel by a gain;
measured against a white point taken from the same scan, the gain cancels exactly. So the white
point is always read from the slide's own pixels, in a way that a per-channel gain carries
through unchanged: pixels are ranked by their summed log intensity (a gain adds the same
constant to every pixel's sum, so the ranking does not move) and the white point is the
per-channel median of the brightest of them.

Where it comes from, in order (``WhitePoint.source``):

``config``  ``stain.white_point``: a lab's measured blank-glass RGB for its scanner;
``glass``   the slide has glass (featureless background on the thumbnail, her2slide.slide.tissue):
            the brighter of the glass's colour and the brightest pixels of the stain sample (lumens
            and glass beside the tissue at the working resolution; on the real TMA cores these are
            brighter than the glass around the core);
``tissue``  no glass anywhere (a field or crop inside the tissue): the brightest pixels of the
            sample, which are the palest tissue. A tone still cancels, but stain present in the
            palest tissue is read as zero: DAB spread evenly over all the tissue cannot be seen,
            and QC says so.

The white point is a property of regions, not of single pixels: it is read from the sample
smoothed at ``WHITE_SMOOTH_UM``. On the real TMA cores (JPEG) the brightest single pixels are
specks of a few pixels at (253-255, 251-254, 255), JPEG overshoot beside dark edges and gaps whose
colour JPEG smears; smoothed at 1 µm the brightest regions are (235-237, 234-235, 242-244), the
glass's colour (docs/roi_and_qc.md, "The slide's white point and stain vectors"). Unsmoothed, the same core through a warm
scanner and its JPEG encoder read 0.02 more DAB everywhere; smoothed, the two agree.

Optical densities need nothing more, but a segmenter that looks at RGB (the membrane CNN) sees
the tone: on a warm-tinted real core it found a third fewer tumour cells. So the tile stream
reads the slide through :class:`her2slide.slide.white_balance.WhiteBalancedReader`, which turns the slide's white into the
white of the glass the segmenter was trained on, so a scanner's colour balance and exposure
reach it undone. Every optical density is unchanged by it (the stain model's white is balanced
with the pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from her2slide.config import Settings
from her2slide.stain.deconvolution import brightest_white, log_brightness

if TYPE_CHECKING:
    from her2slide.slide.tissue import TissueMask

#: Share of the sampled pixels, brightest first, whose per-channel median is the white point:
#: 1% of the stain sample (16 patches of 128 µm at 0.5 µm/px) is about 10 000 pixels, enough
#: that JPEG and sensor noise average out, few enough to stay within lumens and glass.
BRIGHTEST_SHARE = 0.01
#: Gaussian σ applied to the sample before its brightest pixels are taken, µm.
WHITE_SMOOTH_UM = 1.0
#: Where the white point is below this in some channel, pure white (255, 255, 255) is a reader's
#: fill for unscanned area, not glass (every channel of real glass is then below it).
FILL_DISTINCT_BELOW = 250.0
#: Least glass on the thumbnail for the slide to count as having glass (a 70 µm square):
#: smaller featureless specks are lumens or holes, not a background to measure against.
MIN_GLASS_UM2 = 5_000.0

#: The glass of the real cores, the synthetic generator's default white (``synth.scene.Look``): the
#: colour balance every segmenter was trained on, which the tile stream turns each slide's white into.
TRAINING_GLASS_RGB = (234.0, 233.0, 242.0)


@dataclass(frozen=True)
class WhitePoint:
    """RGB intensity of unabsorbed light, and where it was read."""

    rgb: np.ndarray  # (3,) float
    source: str  # "config", "glass", "tissue", or "default" (no sample: 255)

    def to_dict(self) -> dict[str, object]:
        return {"rgb": [round(float(x), 1) for x in self.rgb], "source": self.source}


def slide_white_point(sample: list[np.ndarray], thumbnail: np.ndarray | None, tissue: TissueMask | None,
                      settings: Settings) -> WhitePoint:
    """The white point of a slide from its stain sample (RGB patches at the working resolution)
    and, where it has glass, the glass of its thumbnail (``tissue`` is the thumbnail's mask)."""
    configured = settings.stain.white_point
    if configured is not None:
        return WhitePoint(np.asarray(configured, dtype=np.float64), "config")
    sigma = WHITE_SMOOTH_UM / settings.tiling.work_mpp
    smoothed = [ndi.gaussian_filter(rgb.astype(np.float32), (sigma, sigma, 0)).reshape(-1, 3) for rgb in sample]
    brightest = brightest_white(np.concatenate(smoothed), BRIGHTEST_SHARE) if sample else None
    glass = _glass_colour(thumbnail, tissue)
    if glass is not None:
        if brightest is not None and log_brightness(brightest) > log_brightness(glass):
            return WhitePoint(brightest, "glass")
        return WhitePoint(glass, "glass")
    if brightest is None:
        return WhitePoint(np.full(3, 255.0), "default")
    return WhitePoint(brightest, "tissue")


def _glass_colour(thumbnail: np.ndarray | None, tissue: TissueMask | None) -> np.ndarray | None:
    """Median colour of the thumbnail's glass, lumens included (a reader's pure-white fill left out
    where there is other glass); None where the slide has less than ``MIN_GLASS_UM2`` of glass."""
    if thumbnail is None or tissue is None:
        return None
    glass = thumbnail[~tissue.mask if tissue.glass is None else tissue.glass]
    if len(glass) * tissue.mpp**2 < MIN_GLASS_UM2:
        return None
    scanned = glass[(glass < 255).any(axis=-1)]
    return np.median((scanned if len(scanned) else glass).astype(np.float64), axis=0)


def pure_white_is_fill(white: np.ndarray) -> bool:
    """Whether a pure-white pixel is a reader's fill on a slide with this white point."""
    return float(np.min(white)) < FILL_DISTINCT_BELOW


def balancing_gains(white: np.ndarray, target: tuple[float, float, float]) -> np.ndarray:
    """Per-channel gains that turn ``white`` into ``target``."""
    return np.asarray(target, dtype=np.float64) / np.maximum(np.asarray(white, dtype=np.float64), 1.0)
