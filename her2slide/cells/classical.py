"""The classical segmenter: cell maps from colour deconvolution alone, the baseline a network must beat."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.filters import gaussian, threshold_otsu

from her2slide.cells.instances import nucleus_props, split_nuclei
from her2slide.cells.maps import CellMaps
from her2slide.config import CellSettings
from her2slide.stain import StainModel, stain_amounts


def classical_maps(rgb: np.ndarray, stain: StainModel, settings: CellSettings, mpp: float) -> CellMaps:
    """Maps from colour deconvolution alone: the baseline the CNN has to beat.

    Nuclei are haematoxylin above a per-tile Otsu threshold (clipped to a plausible band:
    real counterstain varies several-fold between labs); membranes are thin DAB lines (white
    top-hat at the membrane's scale); tumour epithelium is where large, round, cohesive
    nuclei are, on tissue.
    """
    amounts = stain_amounts(rgb, stain)
    haem = gaussian(amounts[..., 0], sigma=0.5 / mpp, preserve_range=True)
    dab = amounts[..., 1]
    tissue = gaussian(amounts[..., 0] + amounts[..., 1], sigma=1.0 / mpp, preserve_range=True) > settings.tissue_od
    nucleus_mask = haem > _nucleus_threshold(haem, tissue, settings)
    nuclei = split_nuclei(nucleus_mask, mpp, min_area_px=settings.min_nucleus_um2 / mpp**2 / 2)
    # Thin bright lines survive a white top-hat narrower than a cell; cytoplasmic haze does not.
    ridge = ndi.white_tophat(dab, size=2 * int(round(1.5 / mpp)) + 1)
    membrane = np.clip(ridge / 0.2, 0.0, 1.0).astype(np.float32)
    props = nucleus_props(nuclei)
    tumour = _classical_tumour_map(nuclei, props, settings, mpp) & tissue
    return CellMaps(nucleus_mask.astype(np.float32), membrane, tumour.astype(np.float32), dab.astype(np.float32),
                    nuclei, props)


def _nucleus_threshold(haem: np.ndarray, tissue: np.ndarray, settings: CellSettings) -> float:
    values = haem[tissue]
    if values.size < 1000:
        return settings.nucleus_od_max
    return float(np.clip(threshold_otsu(values), settings.nucleus_od_min, settings.nucleus_od_max))


def _classical_tumour_map(nuclei: np.ndarray, props: dict[str, np.ndarray], settings: CellSettings,
                          mpp: float) -> np.ndarray:
    """Epithelium = discs around nuclei that are tumour-sized, round and cohesive."""
    area_um2 = props["area"] * mpp**2
    keep = (area_um2 >= settings.tumour_min_area_um2) & (area_um2 <= settings.max_nucleus_um2)
    keep &= props["elongation"] <= settings.max_nucleus_elongation
    xy = np.column_stack([props["cx"], props["cy"]])[keep] * mpp
    if len(xy):
        neighbours = cKDTree(xy).query_ball_point(xy, settings.tumour_neighbour_radius_um, return_length=True) - 1
        xy = xy[neighbours >= settings.tumour_min_neighbours]
    seeds = np.zeros(nuclei.shape, dtype=bool)
    cols, rows = np.rint(xy / mpp).astype(int).T
    seeds[np.clip(rows, 0, nuclei.shape[0] - 1), np.clip(cols, 0, nuclei.shape[1] - 1)] = True
    return ndi.distance_transform_edt(~seeds) * mpp <= settings.max_cell_radius_um
