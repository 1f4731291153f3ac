"""``cells.parquet``: one row per measured tumour cell, appended tile by tile.

Besides the measurements, each row keeps the cell's outline as its star-convex radii
(``outline_radius_px``: the distance from the centroid to the outline along
:data:`OUTLINE_RAYS` rays at fixed angles, her2slide.cells.outlines), so the viewer can draw any
cell from two numbers and a short list, without the GeoJSON.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from her2slide.scoring import CELL_CLASSES

#: Rays per outline (her2slide.cells.outlines.star_outlines' default): ray k points at angle
#: -pi + (k + 1/2) * 2 pi / OUTLINE_RAYS from the centroid, y down.
OUTLINE_RAYS = 16
#: Radii are rounded to 1/16 level-0 pixel: far below what a screen shows, and the zeroed low
#: bits let the column compress to about half.
_RADIUS_STEP_PX = 1 / 16

#: Contract columns first (DESIGN.md), then the extra measurements behind them.
CELL_SCHEMA = pa.schema([
    ("x", pa.float64()), ("y", pa.float64()),
    ("x_um", pa.float64()), ("y_um", pa.float64()),
    ("area_um2", pa.float32()),
    ("membrane_dab_od", pa.float32()),
    ("completeness", pa.float32()),
    ("cell_class", pa.dictionary(pa.int8(), pa.string())),
    ("membrane_dab_od_p90", pa.float32()),
    ("stained_dab_od", pa.float32()),
    ("intensity", pa.int8()),
    ("lateral", pa.bool_()),
    ("tile", pa.int32()),
    ("outline_radius_px", pa.list_(pa.float32(), OUTLINE_RAYS)),
])

_CLASS_DICTIONARY = pa.array(CELL_CLASSES, type=pa.string())


class CellTableWriter:
    """Streams cell chunks to a Parquet file so memory does not grow with the slide."""

    def __init__(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(str(path), CELL_SCHEMA, compression="zstd")
        self.rows = 0

    def append(self, columns: dict[str, np.ndarray]) -> None:
        arrays = []
        for field in CELL_SCHEMA:
            if field.name == "cell_class":
                codes = pa.array(columns["cell_class"], type=pa.int8())
                arrays.append(pa.DictionaryArray.from_arrays(codes, _CLASS_DICTIONARY))
            elif field.name == "outline_radius_px":
                radii = outline_radii(columns["outline"], columns["x"], columns["y"])
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(radii.ravel(), pa.float32()), OUTLINE_RAYS))
            else:
                arrays.append(pa.array(columns[field.name], type=field.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=CELL_SCHEMA))
        self.rows += len(columns["x"])

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "CellTableWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def outline_radii(outline: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, OUTLINE_RAYS) float32 distances from each centroid to its outline points (level-0 px).

    The star outlines of her2slide.cells.outlines are centred on the same centroid as ``x``, ``y``,
    so these radii with the fixed ray angles give back the outline exactly (to 1/16 px).
    """
    outline = np.asarray(outline, dtype=np.float64)
    if outline.ndim != 3 or outline.shape[1:] != (OUTLINE_RAYS, 2):
        raise ValueError(f"outlines must be (n, {OUTLINE_RAYS}, 2), not {outline.shape}")
    radius = np.hypot(outline[..., 0] - np.asarray(x, float)[:, None], outline[..., 1] - np.asarray(y, float)[:, None])
    return (np.round(radius / _RADIUS_STEP_PX) * _RADIUS_STEP_PX).astype(np.float32)


def outline_points(x: np.ndarray, y: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(n, rays, 2) outline vertices from centroids and :func:`outline_radii` (the inverse)."""
    rays = radii.shape[1]
    angle = -np.pi + (np.arange(rays) + 0.5) * 2 * np.pi / rays
    return np.stack([np.asarray(x, float)[:, None] + radii * np.cos(angle),
                     np.asarray(y, float)[:, None] + radii * np.sin(angle)], axis=-1)
