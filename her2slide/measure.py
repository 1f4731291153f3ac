"""Measure the tumour cells that one tile owns, in level-0 slide coordinates."""

from __future__ import annotations

import numpy as np

from her2slide.cells import classical_maps, find_cells, measure_cells
from her2slide.config import Settings
from her2slide.scoring import classify_cells, intensity_class
from her2slide.slide import SlideReader, Tile
from her2slide.stain import StainModel


def measure_tile_pixels(rgb: np.ndarray, tile: Tile, downsample: float, mpp_level0: float,
                        stain: StainModel, settings: Settings) -> dict[str, np.ndarray]:
    """Cells of an already-read tile (RGB at working resolution over ``tile.read``).

    Only cells whose centroid lies in the tile's owned box are returned, so a cell cut
    by a tile edge is measured once, from the tile that sees it whole.
    """
    work_mpp = settings.tiling.work_mpp
    maps = classical_maps(rgb, stain, settings.cells, work_mpp)
    labels = find_cells(maps, settings.cells, work_mpp)
    cells = measure_cells(labels, maps.dab, settings.cells, work_mpp, settings.scoring.faint_od)
    # Working pixel i covers level-0 [x0 + i*ds, x0 + (i+1)*ds); its centre in level-0
    # pixel-index coordinates (pixel j centred on j) is x0 + (i + 0.5) * ds - 0.5.
    x = tile.read[0] + (cells["cx"] + 0.5) * downsample - 0.5
    y = tile.read[1] + (cells["cy"] + 0.5) * downsample - 0.5
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
    }


def read_tile(reader: SlideReader, tile: Tile, work_mpp: float) -> np.ndarray:
    x0, y0, x1, y1 = tile.read
    return reader.read_at_mpp(x0, y0, x1 - x0, y1 - y0, work_mpp)
