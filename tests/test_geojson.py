"""cells.geojson.gz: what QuPath's GeoJSON reader accepts, with no NaN and valid geometries.

The rules checked here come from reading QuPath's reader (qupath/qupath, qupath-core/src/main/
java/qupath/lib/io/): PathObjectTypeAdapters.java (PathObjectTypeAdapter.read: "id" parsed with
UUID.fromString, "properties.objectType" "cell" -> PathCellObject and "tile" -> PathTileObject,
"measurements" an object or a list of {name, value}, "color" an int or [r, g, b];
MeasurementListTypeAdapter.read: the object form is a map of name -> Double),
GsonTools.java (PathClassTypeAdapter.read: an object classification needs "name" (or "names")
*and* "color"; the colour array has 3 or 4 entries) and ROITypeAdapters.java (parsePolygon:
each ring becomes a JTS LinearRing, which must be closed with at least 4 positions).
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import shapely

from her2slide.maps.region_maps import CHANNELS, SCORE_COLOURS
from her2slide.outputs.geojson import CellGeoJsonWriter
from her2slide.scoring import CELL_CLASSES
from region_maps_fixtures import MPP, ORIGIN_UM, REGION_UM, make_maps


def _cells(n: int = 6, offset: float = 0.0) -> dict[str, np.ndarray]:
    angle = -np.pi + (np.arange(16) + 0.5) * 2 * np.pi / 16
    x = 1000.0 + offset + 40.0 * np.arange(n)
    y = np.full(n, 2000.0)
    outline = np.stack([x[:, None] + 12 * np.cos(angle), y[:, None] + 12 * np.sin(angle)], axis=-1)
    return {
        "x": x, "y": y, "x_um": x * MPP, "y_um": y * MPP, "outline": outline,
        "cell_class": (np.arange(n) % 4).astype(np.int8),
        "completeness": np.linspace(0, 1, n).astype(np.float32),
        "membrane_dab_od": np.linspace(0.05, 0.9, n).astype(np.float32),
        "area_um2": np.full(n, 80.0, dtype=np.float32),
        "lateral": np.arange(n) % 2 == 0,
        "intensity": (np.arange(n) % 4).astype(np.int8),
        "tile": np.zeros(n, dtype=np.int32),
    }


def _strict_load(path: Path) -> dict:
    """Parse as strict JSON: NaN, Infinity and -Infinity are errors, not numbers."""
    def refuse(token: str) -> None:
        raise ValueError(f"non-JSON number {token}")

    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle, parse_constant=refuse)


@pytest.fixture()
def written(tmp_path: Path) -> tuple[Path, CellGeoJsonWriter]:
    first = _cells()
    first["outline"][1] = first["outline"][1][::-1]  # clockwise: must be turned round
    first["outline"][2, 3] = first["outline"][2, 11]  # self-intersecting: must be repaired
    first["completeness"][3] = np.nan  # left out of that cell's measurements
    first["x"][4] = np.nan  # no position: dropped
    path = tmp_path / "cells.geojson.gz"
    with CellGeoJsonWriter(path, id_seed="slide-sha") as writer:
        writer.append(first)
        writer.append(_cells(3, offset=5000.0))  # a second chunk: the stream must stay one valid document
        writer.add_regions(make_maps(excluded=True))
    return path, writer


def test_feature_collection_follows_qupaths_reader(written: tuple[Path, CellGeoJsonWriter]) -> None:
    path, writer = written
    data = _strict_load(path)
    assert data["type"] == "FeatureCollection"
    features = data["features"]
    assert len(features) == writer.cells + writer.regions == 8 + int((make_maps().counts > 0).sum())
    assert (writer.dropped, writer.repaired) == (1, 1)
    ids = [uuid.UUID(f["id"]) for f in features]
    assert len(set(ids)) == len(ids)
    for feature in features:
        assert feature["type"] == "Feature"
        geometry = feature["geometry"]
        assert geometry["type"] == "Polygon" and len(geometry["coordinates"]) == 1
        ring = geometry["coordinates"][0]
        assert len(ring) >= 4 and ring[0] == ring[-1]
        assert all(len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in ring)
        polygon = shapely.geometry.shape(geometry)
        assert polygon.is_valid and polygon.area > 0
        assert polygon.exterior.is_ccw  # RFC 7946 orientation in (x, y) values
        properties = feature["properties"]
        assert properties["objectType"] in ("cell", "tile")
        measurements = properties["measurements"]
        assert isinstance(measurements, dict)
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in measurements.values())


def test_cells_carry_class_colour_and_measurements(written: tuple[Path, CellGeoJsonWriter]) -> None:
    path, _ = written
    cells = [f for f in _strict_load(path)["features"] if f["properties"]["objectType"] == "cell"]
    assert len(cells) == 8
    for feature in cells:
        classification = feature["properties"]["classification"]
        code = CELL_CLASSES.index(classification["name"])
        assert classification["color"] == list(SCORE_COLOURS[code + 1][:3])
        measurements = feature["properties"]["measurements"]
        assert {"membrane_dab_od", "area_um2", "lateral", "intensity", "tile"} <= set(measurements)
        assert not {"x", "y", "x_um", "y_um", "cell_class"} & set(measurements)
    without = [f for f in cells if "completeness" not in f["properties"]["measurements"]]
    assert len(without) == 1  # the NaN was left out, not written
    # Coordinates are QuPath's (pixel j covers [j, j + 1)): our pixel-centred x, y move by +0.5.
    first = min(cells, key=lambda f: shapely.geometry.shape(f["geometry"]).centroid.x)
    centroid = shapely.geometry.shape(first["geometry"]).centroid
    assert (centroid.x, centroid.y) == pytest.approx((1000.5, 2000.5), abs=0.02)


def test_region_tiles_sit_on_their_regions(written: tuple[Path, CellGeoJsonWriter]) -> None:
    path, _ = written
    maps = make_maps(excluded=True)
    features = _strict_load(path)["features"]
    tiles = {f["properties"]["name"]: f for f in features if f["properties"]["objectType"] == "tile"}
    assert len(tiles) == int((maps.counts > 0).sum())
    row, col = 3, 4
    tile = tiles[f"region r{row} c{col}"]
    x0 = (ORIGIN_UM[0] + col * REGION_UM) / MPP + 0.5
    y0 = (ORIGIN_UM[1] + row * REGION_UM) / MPP + 0.5
    assert shapely.geometry.shape(tile["geometry"]).bounds == pytest.approx(
        (x0, y0, x0 + REGION_UM / MPP, y0 + REGION_UM / MPP))
    measurements = tile["properties"]["measurements"]
    assert measurements["tumour_cells"] == maps.counts[row, col]
    assert measurements["heterogeneity_regions"] == 1
    assert measurements["excluded"] == pytest.approx(0.25)
    for name in CHANNELS:
        assert measurements[name] == pytest.approx(float(maps.channels[name][row, col]), rel=1e-5)
    assert tile["properties"]["color"] == list(SCORE_COLOURS[int(maps.labels["local_score_class"][row, col])][:3])


def test_ids_are_reproducible_from_the_seed(tmp_path: Path) -> None:
    def ids(name: str) -> list[str]:
        with CellGeoJsonWriter(tmp_path / name, id_seed="same") as writer:
            writer.append(_cells())
        return [f["id"] for f in _strict_load(tmp_path / name)["features"]]

    assert ids("a.geojson.gz") == ids("b.geojson.gz")


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cells.geojson.gz"
    with pytest.raises(RuntimeError), CellGeoJsonWriter(path) as writer:
        writer.append(_cells())
        raise RuntimeError("worker killed")
    assert list(tmp_path.iterdir()) == []


def test_bad_class_codes_are_refused(tmp_path: Path) -> None:
    cells = _cells()
    cells["cell_class"][0] = 7
    with CellGeoJsonWriter(tmp_path / "c.geojson.gz") as writer, pytest.raises(ValueError, match="cell_class"):
        writer.append(cells)
    assert _strict_load(tmp_path / "c.geojson.gz")["features"] == []
