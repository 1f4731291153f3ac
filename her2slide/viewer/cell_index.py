"""A spatial index of a slide's cells, so the viewer draws only the cells in view.

cells.parquet is read once (centroid, class and the outline radii: ~90 bytes a cell, 90 MB
for a million cells) and the cells are sorted into square bins of ``bin_px`` level-0 pixels.
A query visits only the bins that meet the box, so its cost follows the cells in view, not
the slide: a viewport holding 5 000 cells of a million-cell slide touches ~5 000 rows.
Rows keep their cells.parquet row number, so a cell found here is that table's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import shapely

from her2slide.outputs.cells_table import outline_points
from her2slide.scoring import CELL_CLASSES

#: Bin side, level-0 px: 512 px is 128 µm at 0.25 µm/px, about 60 cells of dense tumour.
DEFAULT_BIN_PX = 512


@dataclass(frozen=True)
class CellsInBox:
    """The cells a box query found, in index order, and how many of them have their centroid in the box."""

    rows: np.ndarray  # int64 cells.parquet row numbers
    x: np.ndarray  # float64 centroid, level-0 px (as in cells.parquet)
    y: np.ndarray
    codes: np.ndarray  # uint8 class code (index into CELL_CLASSES)
    radii: np.ndarray  # (n, rays) float32 outline radii, level-0 px
    in_box: int  # cells whose centroid lies in the box (the rest overlap it with their outline)


class CellIndex:
    """Cells binned on a square grid; box, point and count queries in level-0 pixels."""

    def __init__(self, x: np.ndarray, y: np.ndarray, codes: np.ndarray, radii: np.ndarray,
                 bin_px: float = DEFAULT_BIN_PX) -> None:
        self.bin_px = float(bin_px)
        n = len(x)
        bx = np.floor(np.asarray(x) / self.bin_px).astype(np.int64) if n else np.zeros(0, np.int64)
        by = np.floor(np.asarray(y) / self.bin_px).astype(np.int64) if n else np.zeros(0, np.int64)
        self._origin = (int(bx.min(initial=0)), int(by.min(initial=0)))
        self._cols = int(bx.max(initial=0)) - self._origin[0] + 1
        self._rows = int(by.max(initial=0)) - self._origin[1] + 1
        key = (by - self._origin[1]) * self._cols + (bx - self._origin[0])
        order = np.argsort(key, kind="stable")
        self._starts = np.searchsorted(key[order], np.arange(self._rows * self._cols + 1))
        self.rows = order.astype(np.int64)
        self.x = np.asarray(x, np.float64)[order]
        self.y = np.asarray(y, np.float64)[order]
        self.codes = np.asarray(codes, np.uint8)[order]
        self.radii = np.asarray(radii, np.float32)[order]
        #: The farthest any outline reaches from its centroid: a box grown by this finds every cell that touches it.
        self.max_radius = float(self.radii.max(initial=0.0))

    @classmethod
    def from_parquet(cls, path: Path, bin_px: float = DEFAULT_BIN_PX) -> CellIndex:
        table = pq.read_table(path, columns=["x", "y", "cell_class", "outline_radius_px"])
        classes = table.column("cell_class").combine_chunks()
        names = classes.dictionary.to_pylist()
        lookup = np.array([CELL_CLASSES.index(name) for name in names], dtype=np.uint8)
        codes = lookup[classes.indices.to_numpy(zero_copy_only=False)] if len(table) else np.zeros(0, np.uint8)
        radii_column = table.column("outline_radius_px").combine_chunks()
        rays = radii_column.type.list_size
        radii = radii_column.flatten().to_numpy(zero_copy_only=False).reshape(-1, rays)
        return cls(table.column("x").to_numpy(), table.column("y").to_numpy(), codes, radii, bin_px)

    def __len__(self) -> int:
        return len(self.rows)

    def _candidates(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Index positions of every cell in the bins that meet the box."""
        c0 = max(int(np.floor(x0 / self.bin_px)) - self._origin[0], 0)
        c1 = min(int(np.floor(x1 / self.bin_px)) - self._origin[0], self._cols - 1)
        r0 = max(int(np.floor(y0 / self.bin_px)) - self._origin[1], 0)
        r1 = min(int(np.floor(y1 / self.bin_px)) - self._origin[1], self._rows - 1)
        if c1 < c0 or r1 < r0 or len(self.rows) == 0:
            return np.zeros(0, np.int64)
        first = r0 * self._cols + c0
        spans = [(self._starts[first + r * self._cols], self._starts[first + r * self._cols + (c1 - c0) + 1])
                 for r in range(r1 - r0 + 1)]
        return np.concatenate([np.arange(a, b) for a, b in spans])

    def count(self, x0: float, y0: float, x1: float, y1: float) -> int:
        """Cells whose centroid lies in [x0, x1) x [y0, y1)."""
        i = self._candidates(x0, y0, x1, y1)
        return int(_inside(self.x[i], self.y[i], x0, y0, x1, y1).sum())

    def query(self, x0: float, y0: float, x1: float, y1: float) -> CellsInBox:
        """Every cell whose outline may reach into the box, and the count with the centroid in it."""
        m = self.max_radius
        i = self._candidates(x0 - m, y0 - m, x1 + m, y1 + m)
        near = _inside(self.x[i], self.y[i], x0 - m, y0 - m, x1 + m, y1 + m)
        i = i[near]
        in_box = int(_inside(self.x[i], self.y[i], x0, y0, x1, y1).sum())
        return CellsInBox(self.rows[i], self.x[i], self.y[i], self.codes[i], self.radii[i], in_box)

    def class_counts(self, x0: float, y0: float, x1: float, y1: float) -> dict[str, int]:
        """Cells per class with the centroid in the box."""
        i = self._candidates(x0, y0, x1, y1)
        i = i[_inside(self.x[i], self.y[i], x0, y0, x1, y1)]
        counts = np.bincount(self.codes[i], minlength=len(CELL_CLASSES))
        return {name: int(c) for name, c in zip(CELL_CLASSES, counts)}

    def cell_at(self, x: float, y: float) -> int | None:
        """cells.parquet row of the cell whose outline holds the point (the nearest centroid if several)."""
        found = self.query(x, y, x, y)
        if len(found.rows) == 0:
            return None
        polygons = shapely.polygons(outline_points(found.x, found.y, found.radii))
        hit = np.flatnonzero(shapely.contains_xy(polygons, x, y))
        if len(hit) == 0:
            return None
        nearest = hit[np.argmin(np.hypot(found.x[hit] - x, found.y[hit] - y))]
        return int(found.rows[nearest])


def _inside(x: np.ndarray, y: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
