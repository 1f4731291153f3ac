"""Measure the tumour cells that one tile owns, in level-0 slide coordinates."""

from __future__ import annotations

import numpy as np

from her2slide.cells.classical import classical_maps
from her2slide.cells.instances import find_cells
from her2slide.cells.maps import CellMaps
from her2slide.cells.membrane import measure_cells
from her2slide.cells.outlines import star_outlines
from her2slide.config import Settings
from her2slide.qc import interior_dab_od
from her2slide.scoring import classify_cells, intensity_class
from her2slide.slide.tiles import Tile
from her2slide.stain import StainModel


def measure_tile_pixels(rgb: np.ndarray, tile: Tile, downsample: float, mpp_level0: float,
                        stain: StainModel, settings: Settings) -> dict[str, np.ndarray]:
    """Cells of an already-read tile (RGB at working resolution over ``tile.read``), with the
    classical segmenter's maps."""
    maps = classical_maps(rgb, stain, settings.cells, settings.tiling.work_mpp)
    return measure_tile_maps(maps, tile, downsample, mpp_level0, settings)


def measure_tile_maps(maps: CellMaps, tile: Tile, downsample: float, mpp_level0: float,
                      settings: Settings) -> dict[str, np.ndarray]:
    """Cells of a tile from its segmentation maps (classical or CNN), in level-0 coordinates.

    Only cells whose centroid lies in the tile's owned box are returned, so a cell cut
    by a tile edge is measured once, from the tile that sees it whole.
    """
    work_mpp = settings.tiling.work_mpp
    labels = find_cells(maps, settings.cells, work_mpp)
    cells = measure_cells(labels, maps.dab, settings.cells, work_mpp, settings.scoring.faint_od)
    x, y = level0_xy(tile, cells["cx"], cells["cy"], downsample)
    outline = star_outlines(labels, cells["cx"], cells["cy"])
    outline = np.stack(level0_xy(tile, outline[..., 0], outline[..., 1], downsample), axis=-1)
    keep = tile.owns(x, y)
    rules, criteria = settings.scoring, settings.criteria
    stained_od = cells["stained_dab_od"][keep]
    completeness = cells["completeness"][keep]
    lateral = cells["lateral"][keep]
    return {
        "x": x[keep], "y": y[keep],
        "x_um": x[keep] * mpp_level0, "y_um": y[keep] * mpp_level0,
        "area_um2": cells["area_px"][keep] * work_mpp**2,
        "membrane_dab_od": cells["membrane_dab_od"][keep],
        "completeness": completeness,
        "cell_class": classify_cells(stained_od, completeness, lateral, rules, criteria),
        "membrane_dab_od_p90": cells["membrane_dab_od_p90"][keep],
        "stained_dab_od": stained_od,
        "intensity": intensity_class(stained_od, rules),
        "lateral": lateral,
        "tile": np.full(int(keep.sum()), tile.index, dtype=np.int32),
        "outline": outline[keep],  # (n, rays, 2) level-0 px, for the GeoJSON (not a table column)
        # for the cytoplasmic-DAB QC check (her2slide.qc); not a cells.parquet column
        "cytoplasm_dab_od": interior_dab_od(labels, maps.nucleus > 0.5, maps.dab, settings.cells, work_mpp)[keep],
    }


def level0_xy(tile: Tile, cx: np.ndarray, cy: np.ndarray, downsample: float) -> tuple[np.ndarray, np.ndarray]:
    """Tile working-pixel coordinates (column, row) as level-0 pixel coordinates.

    Working pixel i covers level-0 [x0 + i*ds, x0 + (i+1)*ds); its centre in level-0
    pixel-index coordinates (pixel j centred on j) is x0 + (i + 0.5) * ds - 0.5.
    """
    return (tile.read[0] + (np.asarray(cx) + 0.5) * downsample - 0.5,
            tile.read[1] + (np.asarray(cy) + 0.5) * downsample - 0.5)
