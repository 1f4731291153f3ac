"""Extra DAB painted on training samples, so the v2 network learns that DAB changes nothing.

The nucleus branch sees only the haematoxylin amount, so DAB reaches it only where
deconvolution leaks: a stain vector a few degrees off, or dark pixels quantised to a few grey
levels. Painting membranes (from the sample's own nuclei) and cytoplasmic haze at random
strengths along a DAB vector tilted away from the one deconvolution uses teaches the
network to ignore exactly that leak, while the targets stay those of the unpainted tissue.
"""

from __future__ import annotations

import numpy as np

from her2slide.datasets.nuclei import tilted
from her2slide.stain import DAB_RGB_OD
from her2slide.synth.restain import membrane_dab


def paint_dab(image: np.ndarray, nuclei: np.ndarray, mpp: float, rng: np.random.Generator,
              max_tilt_deg: float = 8.0) -> np.ndarray:
    """``image`` with synthetic membrane DAB between its nuclei (Beer–Lambert: intensities
    multiplied by 10^-OD, so sensor noise and the white point are kept)."""
    dab = membrane_dab(nuclei, mpp, rng)
    vector = np.abs(tilted(DAB_RGB_OD, max_tilt_deg, rng)).astype(np.float32)
    transmitted = np.power(np.float32(10.0), -dab[..., None] * vector)
    return np.clip(np.rint(image.astype(np.float32) * transmitted), 0, 255).astype(np.uint8)
