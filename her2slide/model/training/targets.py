"""Training targets of the v2 cell network, derived from nucleus instance labels.

Targets are made *after* the geometric augmentation, from labels resampled by nearest
neighbour, so the centre map always describes the nuclei the network actually sees.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from her2slide.model.checkpoint import OUTPUTS_V2


def centre_map(nuclei: np.ndarray) -> np.ndarray:
    """Each nucleus's distance to its own edge over its largest such distance (float32, 0–1,
    0 outside nuclei). Touching nuclei are separated by their shared boundary first, so the
    map falls to 0 between them: that dip is what splits them at inference."""
    inner = (nuclei > 0) & ~find_boundaries(nuclei, mode="inner")
    distance = ndi.distance_transform_edt(inner)
    n = int(nuclei.max())
    if n == 0:
        return np.zeros(nuclei.shape, np.float32)
    peak = np.zeros(n + 1)
    np.maximum.at(peak, nuclei.ravel(), distance.ravel())
    scale = np.where(peak > 0, 1.0 / np.maximum(peak, 1e-6), 0.0)
    centre = distance * scale[nuclei]
    # a nucleus of one or two pixels has no interior left: its pixels are its centre
    tiny = (nuclei > 0) & (peak[nuclei] == 0)
    centre[tiny] = 1.0
    return centre.astype(np.float32)


def v2_targets(target: np.ndarray, valid: np.ndarray, nuclei: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(3, H, W) targets and (3,) validity in OUTPUTS_V2 order (nucleus, tumour, centre) from a
    sample's (membrane, nucleus, tumour) targets and, where annotated, its nucleus instances.
    Without instances the nucleus mask is kept and the centre channel is unannotated."""
    out = np.zeros((len(OUTPUTS_V2), *target.shape[1:]), np.float32)
    out[0], out[1] = target[1], target[2]
    flags = np.array([valid[1], valid[2], False])
    if nuclei is not None:
        out[0] = nuclei > 0
        out[2] = centre_map(nuclei)
        flags[0] = flags[2] = True
    return out, flags
