"""``cells.parquet``: one row per measured tumour cell, appended tile by tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from her2slide.scoring import CELL_CLASSES

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
            values = columns[field.name]
            if field.name == "cell_class":
                arrays.append(pa.DictionaryArray.from_arrays(pa.array(values, type=pa.int8()), _CLASS_DICTIONARY))
            else:
                arrays.append(pa.array(values, type=field.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=CELL_SCHEMA))
        self.rows += len(columns["x"])

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "CellTableWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
