"""``cells.geojson.gz``: cells and region tiles as QuPath objects (File > Import objects).

The layout follows QuPath's own reader, ``qupath-core/src/main/java/qupath/lib/io/``
``PathObjectTypeAdapters.java`` (``PathObjectTypeAdapter.read``, ``MeasurementListTypeAdapter``),
``GsonTools.java`` (``PathClassTypeAdapter``) and ``ROITypeAdapters.java`` (``parsePolygon``):

- each object is a GeoJSON ``Feature`` with a UUID string ``id`` (QuPath >= 0.4 keeps it);
- ``geometry`` is a ``Polygon`` in level-0 pixels of QuPath's image space, whose pixel
  ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``; ours has pixel ``j`` centred on ``j``
  (cells.parquet), so every coordinate is shifted by +0.5 pixel. Rings are closed (JTS
  ``LinearRing`` refuses open ones) and counter-clockwise in (x, y) values (RFC 7946);
- ``properties.objectType`` is ``"cell"`` (a ``PathCellObject``) or ``"tile"`` (a
  ``PathTileObject``, a detection, so Measure > Show measurement maps colours it);
- ``properties.classification`` is ``{"name", "color": [r, g, b]}`` (the reader's proxy form
  needs both); tiles carry no class but their own ``name`` and ``color``;
- ``properties.measurements`` is an object of name -> number (QuPath >= 0.4; its reader also
  takes the older list of ``{name, value}``). JSON has no NaN: a non-finite measurement
  is left out of that object, and a cell without a finite position or outline is dropped.

Features are formatted a whole chunk at a time with one ``%`` over a repeated template,
never one Python call per cell, and streamed through gzip to a temporary name that is
renamed into place on :meth:`CellGeoJsonWriter.close`.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from pathlib import Path
from types import TracebackType

import numpy as np

from her2slide.maps.region_maps import CHANNELS, LABELS, SCORE_COLOURS, RegionMaps

#: Cell columns that are geometry or class, not measurements.
_NOT_MEASUREMENTS = frozenset({"x", "y", "x_um", "y_um", "outline", "cell_class"})
#: Our pixel j is centred on j; QuPath's pixel j covers [j, j + 1).
_TO_QUPATH = 0.5


class CellGeoJsonWriter:
    """Streams cells, then region tiles, into a gzipped GeoJSON FeatureCollection.

    ``id_seed`` (e.g. the input's SHA-256) makes the feature ids reproducible: every id
    is a UUID built from the seed with the feature's running number in its last 12 hex
    digits. Counts of what was written, dropped (no finite position/outline) and
    repaired (an invalid outline replaced by an equal-area regular polygon) are kept.
    """

    def __init__(self, path: Path, id_seed: str | None = None, decimals: int = 2) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        seed = uuid.uuid5(uuid.NAMESPACE_URL, f"her2slide:{id_seed}") if id_seed is not None else uuid.uuid4()
        self._id_prefix = str(seed)[:24]  # "xxxxxxxx-xxxx-Mxxx-Nxxx-"; the node field counts features
        self._coord = f"[%.{decimals}f,%.{decimals}f]"
        self._raw = open(self._tmp, "wb")
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)
        self._gzip.write(b'{"type":"FeatureCollection","features":[\n')
        self._features = 0
        self.cells = 0
        self.regions = 0
        self.dropped = 0
        self.repaired = 0

    # ------------------------------------------------------------ public API

    def append(self, cells: dict[str, np.ndarray]) -> None:
        """Add a chunk of cells: x, y, outline (n, k, 2) in level-0 px, cell_class codes 0..3, measurements."""
        from her2slide.scoring import CELL_CLASSES

        codes = np.asarray(cells["cell_class"]).astype(np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= len(CELL_CLASSES)):
            raise ValueError(f"cell_class codes must be 0..{len(CELL_CLASSES) - 1}")
        outline = np.asarray(cells["outline"], dtype=np.float64)
        centre = np.column_stack([cells["x"], cells["y"]]).astype(np.float64)
        keep = np.isfinite(outline).all(axis=(1, 2)) & np.isfinite(centre).all(axis=1)
        self.dropped += int((~keep).sum())
        outline, centre, codes = outline[keep], centre[keep], codes[keep]
        outline = self._valid_outlines(outline, centre)
        names = np.array(CELL_CLASSES, dtype=object)[codes]
        colours = np.array([SCORE_COLOURS[k + 1][:3] for k in range(len(CELL_CLASSES))])[codes]
        measurements = {name: np.asarray(values)[keep] for name, values in cells.items()
                        if name not in _NOT_MEASUREMENTS and np.asarray(values).ndim == 1
                        and np.asarray(values).dtype.kind in "biuf"}
        style = '"classification":{"name":"%s","color":[%d,%d,%d]},'
        self._write("cell", outline + _TO_QUPATH, style, [names, *colours.T], measurements)
        self.cells += len(codes)

    def add_regions(self, maps: RegionMaps) -> None:
        """One square ``tile`` per region holding tumour cells, carrying the region's maps as measurements."""
        rows, cols = np.nonzero(maps.counts > 0)
        x0 = (maps.origin_um[0] + cols * maps.region_um) / maps.mpp_level0 + _TO_QUPATH
        y0 = (maps.origin_um[1] + rows * maps.region_um) / maps.mpp_level0 + _TO_QUPATH
        side = maps.region_um / maps.mpp_level0
        # Counter-clockwise in (x, y) values: (x0, y0) -> (x1, y0) -> (x1, y1) -> (x0, y1).
        ring = np.stack([np.stack([x0, x0 + side, x0 + side, x0], axis=1),
                         np.stack([y0, y0, y0 + side, y0 + side], axis=1)], axis=-1)
        score = maps.labels["local_score_class"][rows, cols]
        colours = np.array([(160, 160, 160)] + [SCORE_COLOURS[k][:3] for k in (1, 2, 3, 4)])[np.clip(score, 0, 4)]
        names = np.char.add(np.char.add("region r", rows.astype(str)), np.char.add(" c", cols.astype(str)))
        measurements: dict[str, np.ndarray] = {"tumour_cells": maps.counts[rows, cols]}
        measurements.update({name: maps.channels[name][rows, cols] for name in CHANNELS})
        measurements.update({name: maps.labels[name][rows, cols] for name in LABELS})
        if maps.excluded is not None:
            measurements["excluded"] = maps.excluded[rows, cols]
        style = '"name":"%s","color":[%d,%d,%d],'
        self._write("tile", ring, style, [names.astype(object), *colours.T], measurements)
        self.regions += len(rows)

    def close(self) -> None:
        """Finish the FeatureCollection and rename the file into place."""
        if self._raw.closed:
            return
        self._gzip.write(b"\n]}\n")
        self._gzip.close()
        self._raw.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Discard everything written so far; nothing appears at ``path``."""
        if not self._raw.closed:
            self._gzip.close()
            self._raw.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> CellGeoJsonWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    # ------------------------------------------------------------ formatting

    def _valid_outlines(self, outline: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Counter-clockwise outlines; an invalid one becomes an equal-area regular polygon on the centroid."""
        import shapely

        if len(outline) == 0:
            return outline
        area = _shoelace(outline)
        outline = np.where((area < 0)[:, None, None], outline[:, ::-1], outline)
        valid = shapely.is_valid(shapely.polygons(np.concatenate([outline, outline[:, :1]], axis=1)))
        if not valid.all():
            k = outline.shape[1]
            angle = 2 * np.pi * np.arange(k) / k
            radius = np.sqrt(np.maximum(np.abs(area[~valid]), np.pi) / (0.5 * k * np.sin(2 * np.pi / k)))
            outline = outline.copy()
            outline[~valid] = centre[~valid, None, :] + radius[:, None, None] * np.stack(
                [np.cos(angle), np.sin(angle)], axis=-1)
            self.repaired += int((~valid).sum())
        return outline

    def _write(self, object_type: str, rings: np.ndarray, style: str, style_values: list[np.ndarray],
               measurements: dict[str, np.ndarray]) -> None:
        """Format features with one template per pattern of finite measurements and stream them out."""
        n = len(rings)
        if n == 0:
            return
        closed = np.concatenate([rings, rings[:, :1]], axis=1)
        names = list(measurements)
        values = [np.asarray(measurements[name]) for name in names]
        finite = (np.column_stack([np.isfinite(v.astype(np.float64)) for v in values]) if names
                  else np.ones((n, 0), dtype=bool))
        patterns, which = np.unique(finite, axis=0, return_inverse=True)
        ids = np.arange(self._features, self._features + n)
        head = ('{"type":"Feature","id":"' + self._id_prefix + '%012x","geometry":{"type":"Polygon","coordinates":[['
                + ",".join([self._coord] * closed.shape[1]) + ']]},"properties":{"objectType":"' + object_type + '",'
                + style)
        chunks = []
        for p, pattern in enumerate(patterns):
            rows = np.flatnonzero(which.ravel() == p)
            kept = [i for i, ok in enumerate(pattern) if ok]
            template = head + '"measurements":{' + ",".join(
                json.dumps(names[i]).replace("%", "%%") + ":" + _number_format(values[i]) for i in kept) + "}}}"
            columns = [ids[rows], *closed[rows].reshape(len(rows), -1).T, *(s[rows] for s in style_values),
                       *(values[i][rows] for i in kept)]
            table = np.empty((len(rows), len(columns)), dtype=object)
            for j, column in enumerate(columns):
                table[:, j] = column.tolist() if column.dtype.kind != "b" else column.astype(np.int8).tolist()
            chunks.append(",\n".join([template] * len(rows)) % tuple(table.ravel().tolist()))
        text = ",\n".join(chunks)
        self._gzip.write(((",\n" if self._features else "") + text).encode("utf-8"))
        self._features += n


def _number_format(values: np.ndarray) -> str:
    return "%d" if values.dtype.kind in "biu" else "%.6g"


def _shoelace(rings: np.ndarray) -> np.ndarray:
    """Signed area of (n, k, 2) rings; positive when counter-clockwise in (x, y) values."""
    x, y = rings[..., 0], rings[..., 1]
    return 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
