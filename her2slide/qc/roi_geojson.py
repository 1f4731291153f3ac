"""Reading an ROI file's JSON into area regions (shapely geometries in level-0 pixels of the
slide) and the role of each region's class; her2slide.qc.roi merges them into a ``Roi``. Two
file forms are read:

* QuPath's GeoJSON export (File > Export objects as GeoJSON): a FeatureCollection, a single
  Feature or a bare list of features. Annotation objects count (``properties.objectType``
  "annotation", the v0.2 ``"id": "PathAnnotationObject"``, or no type at all, as QuPath's own
  reader defaults); detections, cells, tiles and TMA cores are skipped. Its
  ``properties.classification`` name decides its role (:func:`class_role`): a name holding a
  term of ``RoiSettings.exclude_classes`` as whole words ("Exclude", QuPath's "Ignore*", "DCIS",
  "In situ", "Normal", "Necrosis"...; case-insensitive) is an exclude region, so "Carcinoma in
  situ" and "Tumor: DCIS" are never scored as invasive; else a name holding a term of
  ``include_classes`` ("Tumor", "Invasive", QuPath's "Region*"...), or no class at all, is an
  include region; any other class is *unknown*, and ``unknown_classes`` says what happens to it:
  the file is refused naming the class (default), or it is included or excluded and listed in
  report.json. Polygons may have holes.
* A plain polygon list: ``[[[x, y], ...], ...]`` (include regions), or
  ``{"include": [...], "exclude": [...]}``.

Repairing an invalid polygon costs time in proportion to the points where its outline crosses
itself, which a hostile or broken file can make quadratic in its vertices (1 000 random
vertices: ~110 000 crossings, minutes in ``make_valid``). A drawn outline crosses itself a
handful of times, so they are counted first (stopping at :data:`MAX_SELF_CROSSINGS`) and a
polygon with more is refused; the rest are repaired with GEOS's "structure" method, where a
region drawn over itself stays inside (it does not become a hole).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from her2slide.config import RoiSettings
from her2slide.errors import InputError

#: QuPath object types that are not drawn regions (PathObjectTypeAdapters: "objectType", and
#: the v0.2 class names it stored in "id").
_NOT_ANNOTATIONS = {"detection", "cell", "tile", "tmacore", "tma_core", "root", "pathdetectionobject",
                    "pathcellobject", "pathtileobject", "tmacoreobject", "pathrootobject"}
_GEOMETRY_TYPES = {"Polygon", "MultiPolygon", "GeometryCollection", "Point", "MultiPoint", "LineString",
                   "MultiLineString"}
#: An invalid polygon whose outline crosses itself more often than this is refused, not repaired.
MAX_SELF_CROSSINGS = 1000


def read_regions(data: Any, path: Path) -> tuple[list[tuple[BaseGeometry, str | None, str | None]], int]:
    """(geometry, class name, forced role) per area region, and the count of skipped objects."""
    if isinstance(data, dict) and ("include" in data or "exclude" in data) and "type" not in data:
        unknown = set(data) - {"include", "exclude"}
        if unknown:
            raise InputError(path, f"polygon-list ROI has unknown keys {sorted(unknown)}; use 'include' and 'exclude'")
        regions = [(g, None, role) for role in ("include", "exclude")
                   for g in _polygon_list(data.get(role) or [], path, role)]
        return regions, 0
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise InputError(path, "GeoJSON FeatureCollection has no 'features' list")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, dict) and data.get("type") in _GEOMETRY_TYPES:
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    elif isinstance(data, list) and data and all(isinstance(f, dict) for f in data):
        features = data
    elif isinstance(data, list) and data and all(isinstance(p, list) for p in data):
        return [(g, None, "include") for g in _polygon_list(data, path, "include")], 0
    elif isinstance(data, list) and not data:
        raise InputError(path, "ROI file holds no polygons (empty list)")
    else:
        raise InputError(path, "not a QuPath GeoJSON export or a polygon list")

    regions: list[tuple[BaseGeometry, str | None, str | None]] = []
    skipped = 0
    for i, feature in enumerate(features, start=1):
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
            raise InputError(path, f"feature {i} has no geometry")
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict):
            raise InputError(path, f"feature {i} has properties that are not an object")
        name = _class_name(properties.get("classification"))
        if _object_type(feature, properties) in _NOT_ANNOTATIONS:
            skipped += 1
            continue
        what = f"feature {i}" + (f" ({name})" if name else "")
        geom = _polygonal(_shape(feature["geometry"], path, what), path, what)
        if geom is None:
            skipped += 1
            continue
        regions.append((geom, name, None))
    return regions, skipped


def _object_type(feature: dict, properties: dict) -> str:
    """QuPath's object type: ``objectType`` (v0.3+), ``object_type`` or ``type`` aliases, or the v0.2 ``id``."""
    for key in ("objectType", "object_type", "type"):
        if isinstance(properties.get(key), str):
            return properties[key].casefold()
    legacy = feature.get("id")
    return legacy.casefold() if isinstance(legacy, str) else "annotation"


def _class_name(classification: Any) -> str | None:
    """The class name: ``{"name": ...}`` (QuPath), ``{"names": [...]}`` (derived classes), or a string."""
    if isinstance(classification, str):
        return classification or None
    if isinstance(classification, dict):
        if isinstance(classification.get("name"), str):
            return classification["name"] or None
        names = classification.get("names")
        if isinstance(names, list) and names:
            return ": ".join(str(n) for n in names)
    return None


def class_role(name: str | None, settings: RoiSettings) -> str | None:
    """"exclude" when the class name holds an exclude term as whole words (in-situ disease,
    normal tissue, artefacts: never scored as invasive, whatever else the name says);
    "include" when it holds an include term, or there is no class; None when it is unknown."""
    if not name:
        return "include"
    words = _words(name)
    if any(_holds(words, _words(term)) for term in settings.exclude_classes):
        return "exclude"
    if any(_holds(words, _words(term)) for term in settings.include_classes):
        return "include"
    return None


def _words(text: str) -> tuple[str, ...]:
    """Lower-case words: "Carcinoma in-situ*" -> ("carcinoma", "in", "situ"); QuPath's "Ignore*" -> ("ignore",)."""
    return tuple(re.findall(r"[^\W_]+", text.casefold()))


def _holds(words: tuple[str, ...], term: tuple[str, ...]) -> bool:
    n = len(term)
    return n > 0 and any(words[i:i + n] == term for i in range(len(words) - n + 1))


def _shape(geometry: dict, path: Path, what: str) -> BaseGeometry:
    try:
        geom = shapely.geometry.shape(geometry)
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        detail = f"{exc.__class__.__name__}: {_first_line(exc)}"
        raise InputError(path, f"{what} has malformed geometry ({detail})") from None
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        raise InputError(path, f"{what} has coordinates that are not finite numbers")
    return geom


def _polygon_list(polygons: Any, path: Path, role: str) -> list[BaseGeometry]:
    if not isinstance(polygons, list):
        raise InputError(path, f"'{role}' must be a list of polygons, each a list of [x, y] level-0 pixels")
    out = []
    for i, ring in enumerate(polygons, start=1):
        what = f"{role} polygon {i}"
        try:
            coords = np.asarray(ring, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(path, f"{what} is not a list of [x, y] numbers") from None
        if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) < 3:
            raise InputError(path, f"{what} must be a list of at least 3 [x, y] points")
        if not np.isfinite(coords).all():
            raise InputError(path, f"{what} has coordinates that are not finite numbers")
        out.append(_polygonal(shapely.Polygon(coords), path, what))
    return out


def _polygonal(geom: BaseGeometry, path: Path, what: str) -> BaseGeometry | None:
    """The area part of a geometry, repaired with ``make_valid`` if needed; None if it has no area
    by nature (points, lines); an error if it is a polygon that cannot be repaired."""
    area_type = geom.geom_type in ("Polygon", "MultiPolygon", "GeometryCollection")
    if not area_type or geom.is_empty:
        return None
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        if self_crossings(geom, stop_after=MAX_SELF_CROSSINGS) > MAX_SELF_CROSSINGS:
            raise InputError(path, f"{what} is an outline that crosses itself more than {MAX_SELF_CROSSINGS} times, "
                                   "which is not a drawn region; redraw it")
        geom = _area_parts(shapely.make_valid(geom, method="structure"))
        if geom is None:
            raise InputError(path, f"{what} is an invalid polygon that cannot be repaired ({reason})")
        return geom
    parts = _area_parts(geom)
    if parts is None and geom.geom_type != "GeometryCollection":
        raise InputError(path, f"{what} is a polygon with no area")
    return parts


def self_crossings(geom: BaseGeometry, stop_after: int, chunk: int = 64) -> int:
    """Points where the polygon's rings cross (themselves or each other), counted until more than
    ``stop_after`` are found, so the count costs little even when the answer would be huge."""
    segments = []
    for polygon in shapely.get_parts(geom):
        if polygon.geom_type == "Polygon":
            for ring in (polygon.exterior, *polygon.interiors):
                c = shapely.get_coordinates(ring)
                segments.append(np.stack([c[:-1], c[1:]], axis=1))
    if not segments:
        return 0
    lines = shapely.linestrings(np.concatenate(segments))
    tree = shapely.STRtree(lines)
    found = 0
    for start in range(0, len(lines), chunk):
        mine, other = tree.query(lines[start:start + chunk], predicate="crosses")
        found += int(np.sum(mine + start < other))  # each crossing pair once
        if found > stop_after:
            break
    return found


def _area_parts(geom: BaseGeometry) -> BaseGeometry | None:
    polygons = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon") and g.area > 0]
    return shapely.union_all(polygons) if polygons else None


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0][:120]
