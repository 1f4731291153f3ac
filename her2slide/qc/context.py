"""What every tile's QC needs from the whole slide: the scope, the tissue edge, the fold reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from her2slide.config import Settings
from her2slide.qc.pixels import colour_maps, haematoxylin_floor
from her2slide.slide.tissue import TissueMask
from her2slide.stain import StainModel

if TYPE_CHECKING:
    from her2slide.qc.roi import Roi

#: A block needs this tissue share for the fold and blur tests, and for the slide's stain statistics.
MIN_TISSUE_FOR_TESTS, MIN_TISSUE_FOR_STAIN = 0.25, 0.5


@dataclass(frozen=True)
class QcContext:
    """What every tile's QC needs from the whole slide, on the tissue mask's grid."""

    scope: np.ndarray  # bool: tissue inside the ROI (what is scored)
    edge_um: np.ndarray  # float32: distance of each mask pixel centre to glass, µm (0 on glass)
    mask_downsample: float  # level-0 px per mask pixel
    mask_mpp: float  # µm per mask pixel
    haematoxylin_floor: float | None  # slide reference: median palest-fifth haematoxylin of sampled blocks
    tissue: np.ndarray  # bool: the tissue mask before the ROI

    def outside_roi(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres (µm) and areas (µm²) of the tissue-mask pixels the ROI leaves out."""
        rows, cols = np.nonzero(self.tissue & ~self.scope)
        return (cols + 0.5) * self.mask_mpp, (rows + 0.5) * self.mask_mpp, np.full(len(rows), self.mask_mpp**2)


def qc_context(tissue: TissueMask, mpp_level0: float, roi: Roi | None, stain: StainModel,
               sample: list[np.ndarray], settings: Settings) -> QcContext:
    """Slide-wide QC inputs: scope (tissue ∩ ROI), distances to the tissue edge, and the fold
    reference from ``sample`` (RGB patches at the working resolution: the stain sample,
    her2slide.run.stain_sample).

    The tissue edge is where tissue meets the glass around it (``TissueMask.outer_glass``): never the image
    border (a field or crop cut out of tissue has no edge there), and never pale tissue that
    the mask left out.
    """
    downsample = tissue.mpp / mpp_level0
    scope = tissue.mask if roi is None else tissue.mask & roi.mask(tissue.mask.shape, (0.0, 0.0), downsample)
    away_from_glass = np.pad(~tissue.outer_glass, 1, constant_values=True)
    inside = ndi.distance_transform_edt(away_from_glass)[1:-1, 1:-1]
    edge_um = (np.maximum(inside - 0.5, 0.0) * tissue.mpp).astype(np.float32)
    block_px = max(1, round(settings.qc.block_um / settings.tiling.work_mpp))
    values = [np.zeros(0)]
    for rgb in sample:
        floor, share = haematoxylin_floor(colour_maps(rgb, stain, settings), (0, 0, rgb.shape[1], rgb.shape[0]), block_px)
        values.append(floor[share >= MIN_TISSUE_FOR_STAIN])
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    return QcContext(scope=scope, edge_um=edge_um, mask_downsample=downsample, mask_mpp=tissue.mpp,
                     haematoxylin_floor=float(np.median(values)) if len(values) else None, tissue=tissue.mask)
