"""Regions of interest: QuPath GeoJSON and polygon lists, include/exclude, holes, bad files,
and a scored slide whose cells are exactly the unrestricted cells inside the ROI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

from her2slide.cli.main import main
from her2slide.config import RoiSettings, Settings
from her2slide.errors import InputError
from her2slide.qc.roi import load_roi
from her2slide.qc.roi_geojson import class_role, self_crossings
from her2slide.run.pipeline import score_slide_file
from her2slide.scoring import CELL_CLASSES
from her2slide.slide.tiles import Tile, TilePlan
from her2slide.slide.tissue import TissueMask
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec

SETTINGS = RoiSettings()
SQUARE = [[100, 100], [900, 100], [900, 900], [100, 900], [100, 100]]
HOLE = [[400, 400], [600, 400], [600, 600], [400, 600], [400, 400]]


def _feature(rings: list, name: str | None = None, object_type: str = "annotation", **extra: object) -> dict:
    properties: dict = {"objectType": object_type}
    if name is not None:
        properties["classification"] = {"name": name, "color": [200, 0, 0]}
    return {"type": "Feature", "id": "1d4b1a8e-5c1f-4b8e-9a7e-0f2c3d4e5f60", "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": properties, **extra}


def _write(tmp_path: Path, data: object, name: str = "roi.geojson") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_qupath_feature_collection_with_hole_and_exclude_class(tmp_path: Path) -> None:
    data = {"type": "FeatureCollection", "features": [
        _feature([SQUARE, HOLE], "Tumor"),
        _feature([[[700, 700], [1200, 700], [1200, 1200], [700, 1200], [700, 700]]], "Ignore*"),
        _feature([[[0, 0], [10, 0], [10, 10], [0, 0]]], object_type="detection"),
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}, "properties": {"objectType": "annotation"}},
    ]}
    roi = load_roi(_write(tmp_path, data), SETTINGS, slide_size=(2000, 2000), mpp=0.25)
    assert (roi.n_include, roi.n_exclude, roi.skipped) == (1, 1, 2)
    x = np.array([200.0, 500.0, 800.0, 1100.0, 50.0, 650.0])
    y = np.array([200.0, 500.0, 800.0, 1100.0, 50.0, 300.0])
    # inside, in the hole, in the excluded square, excluded and outside the include, outside, inside
    np.testing.assert_array_equal(roi.contains(x, y), [True, False, False, False, False, True])
    provenance = roi.to_dict(0.25)
    assert provenance["include"] == {"polygons": 1, "area_mm2": round((800**2 - 200**2) * 0.0625 / 1e6, 4)}
    assert provenance["classes"] == {"Tumor": 1, "Ignore*": 1} and len(provenance["sha256"]) == 64


@pytest.mark.parametrize("data, has_hole", [
    ([_feature([SQUARE, HOLE])], True),  # a bare list of features
    (_feature([SQUARE, HOLE], "Region*"), True),  # a single feature; a class that is not excluded
    ({"type": "Feature", "id": "PathAnnotationObject",  # QuPath v0.2: type in "id", colour as colorRGB
      "geometry": {"type": "MultiPolygon", "coordinates": [[SQUARE, HOLE]]},
      "properties": {"classification": {"name": "Tumor", "colorRGB": -3670016}, "isLocked": False}}, True),
    ({"type": "Polygon", "coordinates": [SQUARE, HOLE]}, True),  # a bare geometry
    ([SQUARE[:-1]], False),  # a plain polygon list
])
def test_other_file_forms_read_the_same_region(tmp_path: Path, data: object, has_hole: bool) -> None:
    roi = load_roi(_write(tmp_path, data), SETTINGS)
    assert roi.n_include == 1 and roi.n_exclude == 0
    np.testing.assert_array_equal(roi.contains(np.array([200.0, 500.0, 950.0]), np.array([200.0, 500.0, 500.0])),
                                  [True, not has_hole, False])


def test_polygon_list_with_include_and_exclude(tmp_path: Path) -> None:
    data = {"include": [SQUARE[:-1]], "exclude": [HOLE[:-1]]}
    roi = load_roi(_write(tmp_path, data, "roi.json"), SETTINGS)
    np.testing.assert_array_equal(roi.contains(np.array([200.0, 500.0]), np.array([200.0, 500.0])), [True, False])


def test_exclusion_only_keeps_the_rest_of_the_tissue(tmp_path: Path) -> None:
    roi = load_roi(_write(tmp_path, [_feature([SQUARE], "DCIS")]), SETTINGS)
    assert roi.include is None and roi.to_dict()["whole_tissue"]
    np.testing.assert_array_equal(roi.contains(np.array([500.0, 1500.0]), np.array([500.0, 50.0])), [False, True])


def test_derived_and_differently_cased_classes_are_excluded(tmp_path: Path) -> None:
    data = [_feature([SQUARE], "tumor: EXCLUDE"), _feature([HOLE], "necrosis")]
    assert load_roi(_write(tmp_path, data), SETTINGS).n_exclude == 2


def test_a_self_crossing_polygon_is_repaired(tmp_path: Path) -> None:
    bowtie = [[0, 0], [100, 100], [100, 0], [0, 100], [0, 0]]
    roi = load_roi(_write(tmp_path, [_feature([bowtie])]), SETTINGS)
    assert roi.include.is_valid and roi.include.area == pytest.approx(5000.0)


@pytest.mark.parametrize("name, role", [
    ("Carcinoma in situ", "exclude"), ("carcinoma in-situ", "exclude"), ("Tumor: DCIS", "exclude"),
    ("LCIS*", "exclude"), ("High-grade dysplasia", "exclude"), ("Invasive carcinoma with DCIS", "exclude"),
    ("Ignore*", "exclude"), ("Stroma", "exclude"),
    ("Tumor", "include"), ("Invasive carcinoma", "include"), ("Region*", "include"), ("Tumour region 2", "include"),
    (None, "include"), ("Fibrosis", None), ("Positive", None), ("Cisplatin-treated", None),
])
def test_class_roles_never_score_in_situ_disease_as_invasive(name: str | None, role: str | None) -> None:
    assert class_role(name, SETTINGS) == role


def test_an_in_situ_only_roi_leaves_its_region_out(tmp_path: Path) -> None:
    roi = load_roi(_write(tmp_path, [_feature([SQUARE], "Carcinoma in situ")]), SETTINGS)
    assert roi.include is None and roi.n_exclude == 1  # the rest of the tissue is scored, never the CIS
    assert roi.to_dict()["class_roles"] == {"Carcinoma in situ": "exclude"}


def test_unknown_classes_are_refused_by_name_or_given_the_configured_role(tmp_path: Path) -> None:
    path = _write(tmp_path, [_feature([SQUARE], "Tumor"), _feature([HOLE], "Fibrosis"), _feature([HOLE], "Other")])
    with pytest.raises(InputError, match="ROI class 'Fibrosis', 'Other' is neither an include nor an exclude class"):
        load_roi(path, SETTINGS)
    roi = load_roi(path, RoiSettings(unknown_classes="exclude"))
    assert (roi.n_include, roi.n_exclude, roi.unknown) == (1, 2, ("Fibrosis", "Other"))
    assert roi.to_dict()["unknown_classes_rule"] == "exclude"
    roi = load_roi(path, RoiSettings(include_classes=("Tumor", "Fibrosis", "Other")))
    assert (roi.n_include, roi.unknown) == (3, ())


@pytest.mark.timeout(60)
def test_a_self_crossing_outline_of_1000_vertices_is_refused_at_once(tmp_path: Path) -> None:
    ring = np.random.default_rng(0).uniform(0, 1800, (1000, 2)).round().tolist()  # ~110 000 self-crossings
    path = _write(tmp_path, [_feature([ring + ring[:1]], "Tumor")])
    assert path.stat().st_size < 20_000
    with pytest.raises(InputError, match="crosses itself more than 1000 times"):
        load_roi(path, SETTINGS)
    assert self_crossings(shapely.Polygon(ring), stop_after=10 ** 9) > 100_000


def test_a_long_outline_that_crosses_itself_once_is_repaired(tmp_path: Path) -> None:
    angles = np.linspace(0, 2 * np.pi, 20_000, endpoint=False)
    ring = np.column_stack([1000 + 800 * np.cos(angles), 1000 + 800 * np.sin(angles)])
    ring[[10, 11]] = ring[[11, 10]]  # a brush stroke that twists once
    roi = load_roi(_write(tmp_path, [_feature([ring.tolist() + ring[:1].tolist()], "Tumor")]), SETTINGS)
    assert roi.include.is_valid and roi.include.area == pytest.approx(np.pi * 800 ** 2, rel=1e-3)


def test_an_roi_nested_100000_deep_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        load_roi(path, SETTINGS)


def test_mask_matches_contains_at_pixel_centres(tmp_path: Path) -> None:
    angles = np.linspace(0, 2 * np.pi, 23, endpoint=False)
    radius = 300 + 150 * np.cos(5 * angles)
    star = np.column_stack([500 + radius * np.cos(angles), 480 + radius * np.sin(angles)]).tolist()
    hole = [[450, 430], [560, 450], [520, 560], [440, 530]]
    far = [[900, 880], [990, 900], [950, 990]]
    data = {"include": [star, far], "exclude": [hole]}
    roi = load_roi(_write(tmp_path, data, "roi.json"), SETTINGS)
    origin, px = (-13.0, 7.0), 9.7
    mask = roi.mask((110, 105), origin, px)
    rows, cols = np.indices(mask.shape)
    expected = roi.contains(origin[0] + (cols + 0.5) * px, origin[1] + (rows + 0.5) * px)
    assert mask.sum() > 1000
    np.testing.assert_array_equal(mask, expected)


def test_restrict_keeps_tiles_touching_the_roi_with_their_indices(tmp_path: Path) -> None:
    tiles = [Tile(i, r, c, (c * 500, r * 500, c * 500 + 500, r * 500 + 500), (c * 500, r * 500, c * 500 + 500, r * 500 + 500))
             for i, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)])]
    plan = TilePlan(tiles, 0.5, 32.0, 2.0)
    roi = load_roi(_write(tmp_path, {"include": [[[100, 100], [450, 100], [450, 700], [100, 700]]]}, "r.json"), SETTINGS)
    assert [t.index for t in roi.restrict(plan)] == [0, 2]
    hole = load_roi(_write(tmp_path, {"exclude": [[[0, 0], [500, 0], [500, 500], [0, 500]]]}, "e.json"), SETTINGS)
    assert [t.index for t in hole.restrict(plan)] == [1, 2, 3]


def test_scored_area_is_tissue_inside_the_roi(tmp_path: Path) -> None:
    roi = load_roi(_write(tmp_path, {"include": [[[0, 0], [320, 0], [320, 640], [0, 640]]]}, "r.json"), SETTINGS)
    tissue = TissueMask(np.ones((4, 4), bool), 8.0, 32.0)  # 8 µm pixels at 0.25 µm/px: 32 level-0 px
    # the ROI is 80 x 160 µm: 10 x 20 mask pixels, of which the 4 x 4 tissue mask holds 4 x 4
    assert roi.scored_area_um2(tissue, 0.25) == pytest.approx(4 * 4 * 64.0)
    half = TissueMask(np.ones((40, 40), bool), 8.0, 32.0)
    assert roi.scored_area_um2(half, 0.25) == pytest.approx(10 * 20 * 64.0)


@pytest.mark.parametrize("content, reason", [
    ("not json at all", "not JSON"),
    ("[]", "no polygons"),
    ('{"type": "FeatureCollection"}', "no 'features' list"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}]}',
     "no polygons (1 non-area objects skipped)"),
    ('{"hello": 1}', "not a QuPath GeoJSON export or a polygon list"),
    ('[[[0, 0], [1, 1]]]', "at least 3 [x, y] points"),
    ('[[[0, 0], [1, 1], [2, 2]]]', "invalid polygon that cannot be repaired"),
    ('[[[0, 0], [1, "a"], [2, 2]]]', "not a list of [x, y] numbers"),
    ('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1]]]}}', "malformed geometry"),
    ('{"include": [[[0, 0], [10, 0], [10, 10]]], "exclude": [[[-1, -1], [20, -1], [20, 20], [-1, 20]]]}',
     "nothing is left to score"),
    ('[[[0, 0], [50000, 0], [50000, 100]]]', "reach outside the slide"),
])
def test_bad_roi_files_give_one_line(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_roi(path, SETTINGS, slide_size=(1000, 1000), mpp=0.25)
    assert reason in info.value.reason and "\n" not in str(info.value)
    assert info.value.path == str(path)


def test_missing_roi_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ROI file not found"):
        load_roi(tmp_path / "nope.geojson", SETTINGS)


# ---------------------------------------------------------------- end to end

# The minimum cell count is lowered because the ROI keeps part of a small slide.
CONFIG = "qc:\n  min_tumour_cells: 20\n"


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Settings]:
    """A 2 x 2-tile synthetic slide, scored without an ROI: (slide, its output folder, settings)."""
    folder = tmp_path_factory.mktemp("roi")
    spec = SlideSpec(name="roislide", pattern="mosaic", score="0", positive="3+", fraction=0.3,
                     size_um=(600.0, 600.0), seed=4)
    slide = make_synthetic_slide(spec, folder).svs
    settings = Settings.model_validate({"qc": {"min_tumour_cells": 20}})
    outcome = score_slide_file(slide, folder / "full", settings)
    return slide, outcome.out_dir, settings


def _cells(out_dir: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(out_dir / "cells.parquet")
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in ("x", "y", "cell_class", "tile")}


def _percent(classes: np.ndarray) -> dict[str, float]:
    return {label: 100.0 * float(np.mean(classes == label)) for label in CELL_CLASSES}


def test_a_qupath_roi_restricts_cells_exactly(scored: tuple[Path, Path, Settings], tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    slide, full_dir, _ = scored
    # level-0 px (0.25 µm): tumour in the left tile column only (tiles are 2048 px), with a hole and an excluded corner
    data = {"type": "FeatureCollection", "features": [
        _feature([[[150, 150], [1900, 250], [1950, 2250], [200, 2200], [150, 150]],
                  [[800, 800], [1200, 800], [1200, 1200], [800, 1200], [800, 800]]], "Tumor"),
        _feature([[[150, 1600], [900, 1600], [900, 2300], [150, 2300], [150, 1600]]], "Exclude"),
    ]}
    roi_path = _write(tmp_path, data)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    assert main(["score", str(slide), "--roi", str(roi_path), "--out", str(tmp_path / "roi"), "--config", str(config)]) == 0
    assert "HER2" in capsys.readouterr().out
    roi_dir = tmp_path / "roi" / slide.stem
    report = json.loads((roi_dir / "report.json").read_text())
    full_report = json.loads((full_dir / "report.json").read_text())

    roi = load_roi(roi_path, SETTINGS)
    full, restricted = _cells(full_dir), _cells(roi_dir)
    inside = roi.contains(full["x"], full["y"])
    assert 0 < inside.sum() < len(inside)
    for name in ("x", "y", "cell_class", "tile"):
        np.testing.assert_array_equal(restricted[name], full[name][inside])
    assert report["cells"]["total"] == int(inside.sum())
    for label, value in _percent(full["cell_class"][inside]).items():
        assert report["cells"]["percent"][label] == pytest.approx(value)
    assert report["cells"]["percent"] != full_report["cells"]["percent"]

    assert report["tissue"]["tiles"] < full_report["tissue"]["tiles"]  # the right-hand tiles were never read
    assert report["roi"]["sha256"] == roi.sha256 and report["roi"]["include"]["polygons"] == 1
    assert report["roi"]["exclude"]["polygons"] == 1
    assert 0 < report["roi"]["scored_area_mm2"] < full_report["tissue"]["area_mm2"]
    assert report["qc"]["cells_removed"]["roi"] > 0


def test_an_exclusion_class_removes_its_region(scored: tuple[Path, Path, Settings], tmp_path: Path) -> None:
    slide, full_dir, settings = scored
    roi_path = _write(tmp_path, [_feature([[[300, 300], [1300, 300], [1300, 1300], [300, 1300], [300, 300]]], "Normal")])
    outcome = score_slide_file(slide, tmp_path, settings, roi=roi_path)
    full, kept = _cells(full_dir), _cells(outcome.out_dir)
    region = shapely.box(300, 300, 1300, 1300)
    inside = shapely.contains_xy(region, full["x"], full["y"])
    assert inside.sum() > 0
    np.testing.assert_array_equal(kept["x"], full["x"][~inside])
    assert outcome.report["roi"]["whole_tissue"] is True


def test_roi_with_several_slides_is_refused(scored: tuple[Path, Path, Settings], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    slide = scored[0]
    roi_path = _write(tmp_path, {"include": [SQUARE[:-1]]}, "r.json")
    assert main(["score", str(slide), str(slide), "--roi", str(roi_path), "--out", str(tmp_path)]) == 1
    assert "--roi outlines one slide" in capsys.readouterr().err


def test_an_roi_outside_the_tissue_is_refused(scored: tuple[Path, Path, Settings], tmp_path: Path) -> None:
    slide, _, settings = scored
    roi_path = _write(tmp_path, {"include": [[[0, 0], [60, 0], [60, 60], [0, 60]]]}, "corner.json")
    with pytest.raises(InputError, match="holds no tissue"):
        score_slide_file(slide, tmp_path, settings, roi=roi_path)
