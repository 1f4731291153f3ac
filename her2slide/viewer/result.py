"""One scored slide's output folder, as the viewer serves it.

Everything the viewer shows comes from the files `her2slide score` wrote (report.json,
cells.parquet, maps.zarr, qc_excluded.parquet, roi.geojson) and the slide itself; nothing
here recomputes a score. Each answer is built from fixed names and numbers, never from a
path taken from a request.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from her2slide.errors import InputError, read_json_object
from her2slide.maps.heterogeneity import CLUSTER_COLOURS
from her2slide.maps.region_maps import SCORE_COLOURS
from her2slide.outputs.overlay import label_rgba, scalar_rgba
from her2slide.outputs.review_maps import MAP_INFO, map_style
from her2slide.scoring import CELL_CLASSES
from her2slide.viewer.cell_index import CellIndex

#: How many regions the "regions that decided the score" list shows.
DECIDING_REGIONS = 10
_LABEL_MAPS = {"local_score_class": "local score (the slide rules applied to each region)",
               "heterogeneity_regions": "clusters of positive regions"}


@dataclass(frozen=True)
class RegionGridMaps:
    """maps.zarr level 0: one value per region, with the grid's place on the slide (µm)."""

    region_um: float
    origin_um: tuple[float, float]
    channels: dict[str, np.ndarray]  # name -> (ny, nx) float32
    labels: dict[str, np.ndarray]  # name -> (ny, nx) int32

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.labels.values())).shape  # type: ignore[return-value]

    def region_of(self, x_um: float, y_um: float) -> tuple[int, int] | None:
        row = int(np.floor((y_um - self.origin_um[1]) / self.region_um))
        col = int(np.floor((x_um - self.origin_um[0]) / self.region_um))
        ny, nx = self.shape
        return (row, col) if 0 <= row < ny and 0 <= col < nx else None


class ResultFolder:
    """The files of ``DIR/<slide>/`` loaded for viewing; raises InputError naming what is missing."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.report = _read_json(self.folder / "report.json")
        slide = (self.report.get("provenance") or {}).get("slide") or {}
        if not slide.get("mpp"):
            raise InputError(self.folder / "report.json", "no slide pixel size in its provenance")
        self.mpp = float(slide["mpp"])
        self.cells_path = self._need("cells.parquet")
        self.maps = _read_maps(self._need("maps.zarr"))
        self._cells_file = pq.ParquetFile(self.cells_path)
        self._group_starts = np.cumsum([0] + [self._cells_file.metadata.row_group(i).num_rows
                                              for i in range(self._cells_file.num_row_groups)])

    def _need(self, name: str) -> Path:
        path = self.folder / name
        if not path.exists():
            raise InputError(path, "not found: is this a scored slide's output folder (her2slide score --out DIR)?")
        return path

    @cached_property
    def cells(self) -> CellIndex:
        """The spatial index of the cells, built on first use (seconds for a million cells)."""
        if "outline_radius_px" not in self._cells_file.schema_arrow.names:
            raise InputError(self.cells_path, "has no cell outlines (outline_radius_px): it was scored by an "
                                              "earlier version; score the slide again to review its cells")
        return CellIndex.from_parquet(self.cells_path)

    # ------------------------------------------------------------ cells and regions

    def cell(self, row: int) -> dict[str, Any] | None:
        """All measurements of cells.parquet row ``row`` (None for no such row)."""
        if not 0 <= row < self._group_starts[-1]:
            return None
        group = int(np.searchsorted(self._group_starts, row, side="right") - 1)
        columns = [name for name in self._cells_file.schema_arrow.names if name != "outline_radius_px"]
        table = self._cells_file.read_row_group(group, columns=columns)
        values = table.slice(row - int(self._group_starts[group]), 1).to_pylist()[0]
        return {"row": row, **{k: _finite(v) for k, v in values.items()}}

    def region_at(self, x: float, y: float) -> dict[str, Any] | None:
        """The region holding level-0 point (x, y): its class counts (from the cells) and its map values."""
        place = self.maps.region_of(x * self.mpp, y * self.mpp)
        if place is None:
            return None
        return self.region(*place)

    def region(self, row: int, col: int) -> dict[str, Any]:
        r = self.maps.region_um
        x0_um, y0_um = self.maps.origin_um[0] + col * r, self.maps.origin_um[1] + row * r
        box = [x0_um / self.mpp, y0_um / self.mpp, (x0_um + r) / self.mpp, (y0_um + r) / self.mpp]
        counts = self.cells.class_counts(*box)
        local = int(self.maps.labels["local_score_class"][row, col])
        cluster = int(self.maps.labels["heterogeneity_regions"][row, col])
        return {
            "row": row, "col": col, "box_px": box, "region_um": r,
            "cells": counts, "total": sum(counts.values()),
            "local_score": CELL_CLASSES[local - 1] if local > 0 else None,
            "cluster": cluster or None,
            "maps": {name: _finite(float(values[row, col])) for name, values in self.maps.channels.items()},
        }

    def deciding_regions(self) -> dict[str, Any]:
        """The regions holding the most cells of the class that decided the score.

        For a 1+, 2+ or 3+ slide: cells of that class or stronger; for a 0 slide, the stained
        cells (1+ or stronger) that stayed below the threshold; none for a slide not scored.
        """
        score = self.report.get("score")
        if score not in CELL_CLASSES:
            return {"classes": [], "regions": []}
        first = max(CELL_CLASSES.index(score), 1)
        classes = list(CELL_CLASSES[first:])
        cells = self.cells
        wanted = cells.codes >= first
        ny, nx = self.maps.shape
        r = self.maps.region_um
        col = np.floor((cells.x[wanted] * self.mpp - self.maps.origin_um[0]) / r).astype(np.int64)
        row = np.floor((cells.y[wanted] * self.mpp - self.maps.origin_um[1]) / r).astype(np.int64)
        ok = (row >= 0) & (row < ny) & (col >= 0) & (col < nx)
        counts = np.bincount(row[ok] * nx + col[ok], minlength=ny * nx)
        top = [int(i) for i in np.argsort(-counts, kind="stable")[:DECIDING_REGIONS] if counts[i] > 0]
        regions = [{**self.region(i // nx, i % nx), "deciding_cells": int(counts[i])} for i in top]
        return {"classes": classes, "regions": regions}

    # ------------------------------------------------------------ layers

    def layers(self) -> list[dict[str, Any]]:
        """The map layers the viewer offers: name, caption, unit and display range."""
        out = [{"name": name, "caption": caption, "kind": "labels"} for name, caption in _LABEL_MAPS.items()]
        for name, values in self.maps.channels.items():
            if name in MAP_INFO:
                caption, unit, top = map_style(name, values)
                out.append({"name": name, "caption": caption, "unit": unit.strip(), "range": [0.0, top],
                            "kind": "scalar"})
        return out

    def map_png(self, name: str) -> bytes | None:
        """One map as a PNG with one pixel per region (transparent where there is nothing); None if unknown."""
        if name == "local_score_class":
            rgba = label_rgba(self.maps.labels[name], SCORE_COLOURS)
        elif name == "heterogeneity_regions":
            labels = self.maps.labels[name]
            rgba = label_rgba(labels, {k: CLUSTER_COLOURS[(k - 1) % len(CLUSTER_COLOURS)]
                                       for k in range(1, int(labels.max(initial=0)) + 1)})
        elif name in self.maps.channels and name in MAP_INFO:
            values = self.maps.channels[name]
            rgba = scalar_rgba(values, 0.0, map_style(name, values)[2])
        else:
            return None
        buffer = io.BytesIO()
        Image.fromarray(rgba).save(buffer, format="PNG")
        return buffer.getvalue()

    def qc_blocks(self) -> dict[str, Any]:
        """Excluded QC blocks [x0, y0, x1, y1, reason index] with the reason names, and the report's totals."""
        qc = self.report.get("qc") if isinstance(self.report.get("qc"), dict) else {}
        path = self.folder / "qc_excluded.parquet"
        reasons: list[str] = []
        boxes: list[list[float]] = []
        if path.exists():
            table = pq.read_table(path)
            column = table.column("reason").combine_chunks()
            reasons = column.dictionary.to_pylist()
            codes = column.indices.to_numpy(zero_copy_only=False)
            xy = np.column_stack([table.column(k).to_numpy() for k in ("x0", "y0", "x1", "y1")] + [codes])
            boxes = xy.tolist()
        return {"reasons": reasons, "blocks": boxes, "excluded_mm2": qc.get("excluded") or {},
                "cells_removed": qc.get("cells_removed") or {}, "available": path.exists()}

    def roi(self) -> dict[str, Any] | None:
        """The scored ROI (roi.geojson) and what report.json says of it; None when the slide had none."""
        if not self.report.get("roi"):
            return None
        path = self.folder / "roi.geojson"
        features = _read_json(path).get("features", []) if path.exists() else []
        return {"summary": self.report["roi"], "features": features}


def _read_maps(path: Path) -> RegionGridMaps:
    import zarr

    try:
        root = zarr.open_group(str(path), mode="r")
        meta = root.attrs["her2slide"]
        level0 = np.asarray(root["s0"][:], dtype=np.float32)
        labels = {name: np.asarray(root[f"labels/{name}/s0"][:], dtype=np.int32) for name in _LABEL_MAPS}
    except (KeyError, OSError, ValueError) as exc:
        raise InputError(path, f"cannot be read as her2slide maps ({exc})") from exc
    channels = {name: level0[i] for i, name in enumerate(meta["channels"])}
    return RegionGridMaps(float(meta["region_um"]), tuple(meta["origin_um"]), channels, labels)


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, "not found: is this a scored slide's output folder?")


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become None."""
    return None if isinstance(value, float) and not np.isfinite(value) else value
