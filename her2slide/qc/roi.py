"""Regions of interest drawn by a pathologist: score inside, leave out what they exclude.

ASCO/CAP scores invasive tumour only, so a pathologist outlines the invasive carcinoma (or
outlines in-situ carcinoma, normal epithelium and artefacts to leave out) and the score is
computed over the cells inside. The file, a QuPath GeoJSON export or a plain polygon list in
level-0 pixels of the slide, is read into include and exclude regions by
her2slide.qc.roi_geojson (which says what both forms hold and which class names include or
exclude); here they become a :class:`Roi`.

With no include region the whole tissue is scored, minus the exclude regions. The regions are
merged with shapely (overlaps count once); cells are tested against them exactly and
vectorised (``shapely.contains_xy``), and masks on a pixel grid are filled by an even-odd
scanline over the merged outlines (no rasterio or scikit-image needed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from her2slide.config import RoiSettings
from her2slide.errors import InputError
from her2slide.qc.roi_geojson import read_regions, class_role
from her2slide.slide.tiles import TilePlan
from her2slide.slide.tissue import TissueMask

__all__ = ["Roi", "load_roi"]


@dataclass(frozen=True)
class Roi:
    """The merged include and exclude regions of one ROI file (level-0 pixels).

    ``include`` is None when the file has no include region: then everything not excluded
    is in.
    """

    path: Path
    sha256: str
    include: BaseGeometry | None
    exclude: BaseGeometry | None
    n_include: int
    n_exclude: int
    classes: dict[str, int] = field(default_factory=dict)  # annotations per class name ("" = none)
    skipped: int = 0  # features that are not area annotations (detections, points, lines)
    roles: dict[str, str] = field(default_factory=dict)  # class name -> "include" / "exclude"
    unknown: tuple[str, ...] = ()  # classes in neither list, given the role of unknown_rule
    unknown_rule: str = "refuse"

    @property
    def region(self) -> BaseGeometry | None:
        """What is scored: include minus exclude (None: everything but ``exclude``)."""
        if self.include is None:
            return None
        return self.include if self.exclude is None else self.include.difference(self.exclude)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether level-0 points are scored: inside an include region and outside every exclude one."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        inside = np.ones(np.broadcast(x, y).shape, dtype=bool)
        if self.include is not None:
            inside &= shapely.contains_xy(self.include, x, y)
        if self.exclude is not None:
            inside &= ~shapely.contains_xy(self.exclude, x, y)
        return inside

    def intersects_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Whether each level-0 box (x0, y0, x1, y1) holds any scored area (used to skip tiles)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        geoms = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
        region = self.region
        if region is not None:
            return shapely.intersects(region, geoms)
        if self.exclude is None:
            return np.ones(len(boxes), dtype=bool)
        return ~shapely.covers(self.exclude, geoms)

    def restrict(self, plan: TilePlan) -> TilePlan:
        """The plan's tiles whose owned box holds scored area: tiles wholly outside are never read.
        Tiles keep their index, so cells.parquet's ``tile`` means the same with or without an ROI."""
        boxes = np.array([tile.owned for tile in plan.tiles], dtype=np.float64).reshape(-1, 4)
        keep = self.intersects_boxes(boxes)
        return replace(plan, tiles=[tile for tile, k in zip(plan.tiles, keep) if k])

    def mask(self, shape: tuple[int, int], origin_px: tuple[float, float], px_size: float) -> np.ndarray:
        """Scored pixels of a grid whose pixel (r, c) covers level-0
        ``[x0 + c*px_size, x0 + (c+1)*px_size) x [y0 + r*px_size, ...)``, judged at pixel centres."""
        inside = np.ones(shape, dtype=bool)
        if self.include is not None:
            inside &= _rasterise(self.include, shape, origin_px, px_size)
        if self.exclude is not None:
            inside &= ~_rasterise(self.exclude, shape, origin_px, px_size)
        return inside

    def scored_area_um2(self, tissue: TissueMask, mpp_level0: float) -> float:
        """Tissue area inside the ROI, µm² (on the tissue mask's grid, anchored at level-0 (0, 0))."""
        inside = self.mask(tissue.mask.shape, (0.0, 0.0), tissue.mpp / mpp_level0)
        return float((tissue.mask & inside).sum()) * tissue.mpp**2

    def to_dict(self, mpp_level0: float | None = None) -> dict[str, Any]:
        """Provenance: the file, its checksum and what it holds (areas in mm² when the pixel size is given)."""
        def area(geom: BaseGeometry | None) -> float | None:
            if geom is None or mpp_level0 is None:
                return None
            return round(geom.area * mpp_level0**2 / 1e6, 4)

        return {
            "file": str(self.path.resolve()), "sha256": self.sha256,
            "include": {"polygons": self.n_include, "area_mm2": area(self.include)},
            "exclude": {"polygons": self.n_exclude, "area_mm2": area(self.exclude)},
            "whole_tissue": self.include is None,
            "classes": dict(self.classes), "skipped_objects": self.skipped,
            "class_roles": dict(self.roles), "unknown_classes": list(self.unknown),
            "unknown_classes_rule": self.unknown_rule,
        }


def load_roi(path: str | Path, settings: RoiSettings, *, slide_size: tuple[int, int] | None = None,
             mpp: float | None = None) -> Roi:
    """Read an ROI file; with ``slide_size`` (width, height level-0 px) also check it fits the slide.

    Raises ``InputError`` with a one-line reason for anything that is not a usable ROI.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "ROI file not found") from None
    except OSError as exc:
        raise InputError(path, f"ROI file cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InputError(path, "ROI file is not JSON; expected a QuPath GeoJSON export or a polygon list") from None
    except RecursionError:
        raise InputError(path, "ROI file is nested too deeply to be a GeoJSON export or a polygon list") from None

    regions, skipped = read_regions(data, path)
    include: list[BaseGeometry] = []
    exclude: list[BaseGeometry] = []
    classes: dict[str, int] = {}
    roles: dict[str, str] = {}
    unknown: list[str] = []
    for geom, name, forced in regions:
        classes[name or ""] = classes.get(name or "", 0) + 1
        role = forced or class_role(name, settings)
        if role is None:
            unknown += [name] if name not in unknown else []
            role = settings.unknown_classes
        if name:
            roles[name] = role
        (exclude if role == "exclude" else include).append(geom)
    if unknown and settings.unknown_classes == "refuse":
        raise InputError(path, f"ROI class {', '.join(repr(n) for n in unknown)} is neither an include nor an exclude "
                               "class, so its role is unknown; set it with roi.include_classes / roi.exclude_classes "
                               "(or roi.unknown_classes) in a --config (docs/roi_and_qc.md)")
    if not include and not exclude:
        note = f" ({skipped} non-area objects skipped)" if skipped else ""
        raise InputError(path, f"ROI file holds no polygons{note}")
    roi = Roi(path=path, sha256=hashlib.sha256(raw).hexdigest(),
              include=_merge(include), exclude=_merge(exclude), n_include=len(include), n_exclude=len(exclude),
              classes=classes, skipped=skipped, roles=roles, unknown=tuple(unknown),
              unknown_rule=settings.unknown_classes)
    if roi.region is not None and roi.region.is_empty:
        raise InputError(path, "the ROI's exclude regions cover all of its include regions; nothing is left to score")
    if slide_size is not None:
        _check_fits(roi, path, slide_size, settings.outside_tolerance_um / mpp if mpp else 0.0)
    return roi


def _merge(geoms: list[BaseGeometry]) -> BaseGeometry | None:
    if not geoms:
        return None
    merged = shapely.union_all(geoms)
    shapely.prepare(merged)
    return merged


def _check_fits(roi: Roi, path: Path, slide_size: tuple[int, int], tolerance_px: float) -> None:
    width, height = slide_size
    for role, geom in (("include", roi.include), ("exclude", roi.exclude)):
        if geom is None:
            continue
        x0, y0, x1, y1 = geom.bounds
        if x0 < -tolerance_px or y0 < -tolerance_px or x1 > width + tolerance_px or y1 > height + tolerance_px:
            raise InputError(path, f"{role} regions reach outside the slide (x {x0:.0f} to {x1:.0f}, y {y0:.0f} to "
                                   f"{y1:.0f} px; the slide is {width} x {height} px): ROI coordinates must be "
                                   "level-0 pixels of this slide")


# ---------------------------------------------------------------- rasterising


def _rasterise(geom: BaseGeometry, shape: tuple[int, int], origin_px: tuple[float, float],
               px_size: float) -> np.ndarray:
    """Pixels of an (h, w) grid whose centres lie inside ``geom`` (non-overlapping polygons,
    holes allowed), by an even-odd scanline over all rings: O(edges + pixels), vectorised.

    A row's centre line crosses the outlines an even number of times; between the 1st and
    2nd crossing, the 3rd and 4th, ... the row is inside. Each edge covers the rows whose
    centre lies in [min(y), max(y)) (half-open, so a vertex on a centre line counts once).
    """
    h, w = shape
    rings = shapely.get_rings(shapely.get_parts(geom))
    segments = []
    for ring in rings:
        c = shapely.get_coordinates(ring)
        segments.append(np.column_stack([c[:-1], c[1:]]))
    seg = (np.concatenate(segments) - np.array([*origin_px, *origin_px])) / px_size
    u0, v0, u1, v1 = seg.T
    sloped = v0 != v1
    u0, v0, u1, v1 = u0[sloped], v0[sloped], u1[sloped], v1[sloped]
    lo, hi = np.minimum(v0, v1), np.maximum(v0, v1)
    first = np.clip(np.ceil(lo - 0.5), 0, h).astype(np.int64)   # rows r with r + 0.5 >= lo
    stop = np.clip(np.ceil(hi - 0.5), 0, h).astype(np.int64)    # ... and r + 0.5 < hi
    n = np.maximum(stop - first, 0)
    inside = np.zeros(shape, dtype=bool)
    if n.sum() == 0:
        return inside
    edge = np.repeat(np.arange(len(n)), n)
    rows = first[edge] + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    u = u0[edge] + (rows + 0.5 - v0[edge]) * (u1[edge] - u0[edge]) / (v1[edge] - v0[edge])
    order = np.lexsort((u, rows))
    rows, u = rows[order][0::2], u[order]  # crossings pair up within each row: (enter, leave)
    enter = np.clip(np.ceil(u[0::2] - 0.5), 0, w).astype(np.int64)  # first column centre >= u
    leave = np.clip(np.ceil(u[1::2] - 0.5), 0, w).astype(np.int64)
    diff = np.zeros((h, w + 1), dtype=np.int32)
    np.add.at(diff, (rows, enter), 1)
    np.add.at(diff, (rows, leave), -1)
    return np.cumsum(diff, axis=1)[:, :w] > 0
