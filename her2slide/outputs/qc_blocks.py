"""``qc_excluded.parquet``: every block QC excluded from scoring, with its box and reason.

report.json gives the excluded area per reason for the whole slide and maps.zarr the
excluded share per region; this table says *where* each block was and *why*, so the
viewer can draw the excluded areas over the slide. One row per excluded block, streamed
tile by tile like cells.parquet (a few thousand rows for a large slide).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from her2slide.qc import REASONS, TileQc

#: Block box in level-0 pixels (x0, y0 inclusive; x1, y1 exclusive), the tissue area it took
#: from scoring, and the reason (the first of qc.REASONS that hit it).
QC_BLOCK_SCHEMA = pa.schema([
    ("x0", pa.float64()), ("y0", pa.float64()), ("x1", pa.float64()), ("y1", pa.float64()),
    ("area_um2", pa.float32()),
    ("reason", pa.dictionary(pa.int8(), pa.string())),
])
_REASON_DICTIONARY = pa.array(REASONS, type=pa.string())


class QcBlockWriter:
    """Streams each tile's excluded blocks to ``qc_excluded.parquet``."""

    def __init__(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(str(path), QC_BLOCK_SCHEMA, compression="zstd")
        self.rows = 0

    def append(self, tile_qc: TileQc) -> None:
        """Add the excluded blocks of one tile's final QC grid (blocks with no tissue in scope are left out)."""
        rows, cols = np.nonzero((tile_qc.codes > 0) & (tile_qc.scope_um2 > 0))
        if len(rows) == 0:
            return
        codes = tile_qc.codes[rows, cols].astype(np.int8) - 1
        table = pa.Table.from_arrays([
            pa.array(tile_qc.x_edges[cols], pa.float64()), pa.array(tile_qc.y_edges[rows], pa.float64()),
            pa.array(tile_qc.x_edges[cols + 1], pa.float64()), pa.array(tile_qc.y_edges[rows + 1], pa.float64()),
            pa.array(tile_qc.scope_um2[rows, cols], pa.float32()),
            pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), _REASON_DICTIONARY),
        ], schema=QC_BLOCK_SCHEMA)
        self._writer.write_table(table)
        self.rows += len(rows)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> QcBlockWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
