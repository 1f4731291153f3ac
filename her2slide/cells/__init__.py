"""Cells: from a segmenter's per-pixel maps to measured tumour cells.

Two steps with one interface between them (:class:`CellMaps`): a segmenter turns an RGB tile into
maps (:func:`classical_maps` here, the network in her2slide.run.engine); :func:`find_cells` turns maps
into instances and :func:`measure_cells` measures each cell's membrane ring. ``tile_cells`` does both
for one tile of a slide; ``outlines`` draws the cells for QuPath and the viewer.
"""

from her2slide.cells.classical import classical_maps
from her2slide.cells.instances import (find_cells, label_centroids, nuclei_from_centres, nucleus_instances,
                                       nucleus_props, split_nuclei)
from her2slide.cells.maps import CellMaps
from her2slide.cells.membrane import CELL_COLUMNS, measure_cells

__all__ = ["CELL_COLUMNS", "CellMaps", "classical_maps", "find_cells", "label_centroids", "measure_cells",
           "nuclei_from_centres", "nucleus_instances", "nucleus_props", "split_nuclei"]
