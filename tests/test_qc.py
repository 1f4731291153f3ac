"""Tile-level QC checks on synthetic fields with painted artefacts, the slide verdict, and a
QC-failed slide end to end (never HER2 0)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from PIL import Image

from her2slide.cells.tile_cells import measure_tile_pixels
from her2slide.cli.main import main
from her2slide.config import Settings
from her2slide.errors import ExitStatus
from her2slide.qc import REASONS, QcTally, TileQc, assess_tile, qc_context, screen_cells, slide_verdict
from her2slide.run.calibrate import Control, measure_controls
from her2slide.run.pipeline import score_slide_file
from her2slide.run.stain_sample import clean_sample_pixels
from her2slide.scoring import CELL_CLASSES, score_slide
from her2slide.slide.tiles import Tile
from her2slide.slide.tissue import TissueMask
from her2slide.stain import SlideStain, StainModel, VectorFit
from her2slide.stain.white_point import WhitePoint
from her2slide.synth.artefacts import Blur, Fold, Ink, with_artefacts
from her2slide.synth.render import render_region
from her2slide.synth.scanner import BY_NAME
from her2slide.synth.scene import Look
from her2slide.synth.slides import build_scene, make_synthetic_slide
from her2slide.synth.spec import SlideSpec

MPP = 0.5  # fields are rendered at the working resolution: level 0 = working pixels
SIDE_UM = 192.0  # 3 x 3 blocks of 64 µm
SETTINGS = Settings()


def _field(score: str = "1+", seed: int = 5, look: Look | None = None, artefacts: tuple = ()) -> tuple[np.ndarray, StainModel]:
    """A tumour-rich synthetic field (no glass), optionally with artefacts painted over it."""
    spec = SlideSpec(pattern="homogeneous", score=score, size_um=(SIDE_UM, SIDE_UM), mpp=MPP, seed=seed,
                     full_field=True, look=look or Look())
    scene, _ = build_scene(spec)
    source = with_artefacts(lambda y, x, h, w: render_region(scene, y, x, h, w).rgb, list(artefacts), MPP,
                            spec.look.white)
    h, w = scene.shape
    return source(0, 0, h, w), spec.look.stain_model()


def _whole(rgb: np.ndarray) -> Tile:
    h, w = rgb.shape[:2]
    return Tile(0, 0, 0, (0, 0, w, h), (0, 0, w, h))


def _context(rgb: np.ndarray, stain: StainModel, tissue: np.ndarray | None = None,
             reference: np.ndarray | None = None):
    """QC context for a field: all tissue on an 8 µm mask unless given; fold reference from ``reference``."""
    h, w = rgb.shape[:2]
    mask = tissue if tissue is not None else np.ones((int(np.ceil(h / 16)), int(np.ceil(w / 16))), bool)
    return qc_context(TissueMask(mask, 8.0, 16.0), MPP, None, stain, [rgb if reference is None else reference],
                      SETTINGS)


def _assess(rgb: np.ndarray, stain: StainModel, cells: bool = False, **context: np.ndarray) -> TileQc:
    tile = _whole(rgb)
    measured = measure_tile_pixels(rgb, tile, 1.0, MPP, stain, SETTINGS) if cells else None
    return assess_tile(rgb, stain, tile, 1.0, MPP, _context(rgb, stain, **context), SETTINGS, measured)


def _count(tile_qc: TileQc, reason: str) -> int:
    return int((tile_qc.codes == REASONS.index(reason) + 1).sum())


@pytest.fixture(scope="module")
def clean() -> tuple[np.ndarray, StainModel]:
    return _field("1+")


def test_a_clean_field_passes_every_check(clean: tuple[np.ndarray, StainModel]) -> None:
    tile_qc = _assess(*clean, cells=True)
    assert tile_qc.codes.shape == (3, 3)
    assert (tile_qc.codes == 0).all()
    assert tile_qc.scope_um2.sum() == pytest.approx(SIDE_UM**2)


def test_blur_is_flagged_and_sharp_is_not(clean: tuple[np.ndarray, StainModel]) -> None:
    blurred, stain = _field("1+", artefacts=(Blur(box_um=(0, 0, SIDE_UM, SIDE_UM), sigma_um=2.5),))
    assert _count(_assess(blurred, stain), "blur") == 9
    assert _count(_assess(*clean), "blur") == 0


@pytest.mark.parametrize("colour", ["green", "blue", "black"])
def test_a_pen_stroke_excludes_the_blocks_it_crosses(colour: str) -> None:
    # a horizontal stroke through the middle row of blocks (y 64-128 µm)
    rgb, stain = _field("1+", artefacts=(Ink(start_um=(0, 96), end_um=(SIDE_UM, 96), width_um=20, colour=colour),))
    tile_qc = _assess(rgb, stain)
    assert (tile_qc.codes[1] == REASONS.index("ink") + 1).all()
    assert (tile_qc.codes[[0, 2]] == 0).all()


def test_a_fold_is_flagged_against_the_slide_reference(clean: tuple[np.ndarray, StainModel]) -> None:
    folded, stain = _field("1+", artefacts=(Fold(box_um=(0, 0, SIDE_UM, SIDE_UM), shift_um=(30.0, 20.0)),))
    assert _count(_assess(folded, stain, reference=clean[0]), "fold") >= 7
    assert _count(_assess(*clean, reference=clean[0]), "fold") == 0


def test_clipped_pixels_are_saturated(clean: tuple[np.ndarray, StainModel]) -> None:
    rgb, stain = clean[0].copy(), clean[1]
    rgb[:64, :256] = 0  # black: half of each of the first two blocks
    rgb[300:, 300:] = 255  # pure-white fill on glass that is not white
    tile_qc = _assess(rgb, stain)
    assert tile_qc.codes[0, 0] == tile_qc.codes[0, 1] == REASONS.index("saturated") + 1
    assert tile_qc.codes[2, 2] == REASONS.index("saturated") + 1
    assert _count(tile_qc, "saturated") == 3


def test_a_strong_membrane_3plus_field_is_not_cytoplasmic_but_diffuse_dab_is() -> None:
    membranous = _assess(*_field("3+"), cells=True)
    assert _count(membranous, "cytoplasmic") == 0
    diffuse = _assess(*_field("2+", look=Look(cytoplasm_dab_fraction=1.5)), cells=True)
    assert _count(diffuse, "cytoplasmic") >= 6


def test_the_tissue_edge_band_is_excluded(clean: tuple[np.ndarray, StainModel]) -> None:
    rgb, stain = clean
    tissue = np.ones((24, 24), bool)
    tissue[:, 16:] = False  # glass beyond x = 128 µm (mask px are 16 level-0 px = 8 µm)
    tile_qc = _assess(rgb, stain, tissue=tissue)
    edge = REASONS.index("edge") + 1
    # block centres at x = 32, 96, 160 µm: 96 µm away, 32 µm away (< 40), and off tissue
    assert (tile_qc.codes[:, 0] == 0).all()
    assert (tile_qc.codes[:, 1:] == edge).all()
    assert tile_qc.scope_um2[:, 2].sum() == 0  # off-tissue blocks carry no area
    assert tile_qc.excluded_um2()["edge"] == pytest.approx(64 * 64 * 3)


def test_screen_cells_removes_exactly_the_cells_in_excluded_blocks(clean: tuple[np.ndarray, StainModel]) -> None:
    rgb, stain = clean
    tile_qc = _assess(rgb, stain)
    tile_qc.codes[0, 0] = REASONS.index("blur") + 1
    cells = measure_tile_pixels(rgb, _whole(rgb), 1.0, MPP, stain, SETTINGS)
    kept, removed = screen_cells(cells, None, tile_qc)
    in_block = (cells["x"] < 128) & (cells["y"] < 128)  # block 0,0 is 128 working px
    assert removed == {"roi": 0, "qc": int(in_block.sum())} and in_block.sum() > 0
    np.testing.assert_array_equal(kept["x"], cells["x"][~in_block])
    assert set(kept) == set(cells)


def test_ink_is_left_out_of_the_stain_estimate() -> None:
    rgb, _ = _field("1+", artefacts=(Ink(start_um=(0, 96), end_um=(SIDE_UM, 96), width_um=60, colour="green"),))
    (kept,) = clean_sample_pixels([rgb], np.array([255.0, 255.0, 255.0]), SETTINGS)
    assert 0.5 * rgb.shape[0] * rgb.shape[1] < len(kept) < 0.75 * rgb.shape[0] * rgb.shape[1]


def _tally(excluded_um2: float, counterstain: float = 0.15, background: float = 0.02) -> QcTally:
    codes = np.array([[0, REASONS.index("blur") + 1]], np.uint8)
    stats = {"counterstain_od": counterstain, "background_dab_od": background}
    tile_qc = TileQc(np.array([0.0, 256, 512]), np.array([0.0, 256]), codes,
                     np.array([[4096.0 * 4 - excluded_um2, excluded_um2]]), 0.25,
                     {name: np.full((1, 2), value) for name, value in stats.items()})
    tally = QcTally()
    tally.add(tile_qc, {"roi": 3, "qc": 4})
    return tally


def _stain(white_source: str = "glass") -> SlideStain:
    reference = StainModel.default()
    return SlideStain(reference, WhitePoint(reference.white, white_source), VectorFit(reference.haematoxylin, "reference"),
                      VectorFit(reference.dab, "reference"))


def _verdict(tally: QcTally, cells: int, settings: Settings = SETTINGS, white_source: str = "glass",
             score: str = "1+") -> dict:
    return slide_verdict(tally.evidence(cells), _stain(white_source), settings, score)


def test_verdict_passes_and_reports_areas() -> None:
    qc = _verdict(_tally(4096.0), 500)
    assert qc["verdict"] == "pass" and qc["flags"] == [] and qc["reasons"] == [] and qc["warnings"] == []
    assert set(qc["excluded"]) == set(REASONS) and qc["excluded"]["blur"] == pytest.approx(0.0041, abs=1e-4)
    assert qc["excluded_fraction"] == 0.25 and qc["scored_area_mm2"] == pytest.approx(0.0123, abs=1e-4)
    assert qc["cells_removed"] == {"roi": 3, "qc": 4}
    assert qc["stain"]["haematoxylin_vector"] == "reference"
    assert qc["stain"]["white_point"] == {"rgb": [255.0, 255.0, 255.0], "source": "glass"}
    json.dumps(qc, allow_nan=False)


@pytest.mark.parametrize("tally, cells, flag", [
    (_tally(4096.0), 10, "few_tumour_cells"),
    (_tally(4096.0 * 3), 500, "too_much_excluded"),
    (_tally(0.0, counterstain=0.06), 500, "washed_out"),
    (_tally(0.0, background=0.12), 500, "background_dab"),
])
def test_verdict_fails_with_a_reason(tally: QcTally, cells: int, flag: str) -> None:
    qc = _verdict(tally, cells)
    assert qc["verdict"] == "fail" and qc["flags"] == [flag] and len(qc["reasons"]) == 1


@pytest.mark.parametrize("tally, cells, flag, says", [
    (_tally(0.0), 154, "few_tumour_cells", "154 tumour cells scored"),
    (_tally(0.0, background=0.07), 500, "background_dab", "check the background and the negative control"),
    (_tally(0.0, counterstain=0.9), 500, "dark_counterstain", "not masked"),
])
def test_what_can_still_be_scored_is_flagged_not_refused(tally: QcTally, cells: int, flag: str, says: str) -> None:
    qc = _verdict(tally, cells)
    assert qc["verdict"] == "pass" and qc["flags"] == [flag] and qc["reasons"] == []
    assert len(qc["warnings"]) == 1 and says in qc["warnings"][0]


def test_a_pale_scan_that_scores_3plus_anyway_is_flagged_not_refused() -> None:
    """A washed-out scan only lowers DAB readings: 3+ from such a scan stands."""
    assert _verdict(_tally(0.0, counterstain=0.06), 500, score="2+")["verdict"] == "fail"
    qc = _verdict(_tally(0.0, counterstain=0.06), 500, score="3+")
    assert qc["verdict"] == "pass" and qc["flags"] == ["washed_out"] and "3+ stands" in qc["warnings"][0]


def test_the_minimum_tumour_cells_depends_on_the_specimen() -> None:
    """20 for a percentage of tumour cells; a gastric biopsy is scored on a cluster of 5."""
    assert _verdict(_tally(0.0), 19)["verdict"] == "fail"
    assert _verdict(_tally(0.0), 20)["verdict"] == "pass"
    biopsy = Settings(criteria="gastric-biopsy")
    assert _verdict(_tally(0.0), 5, biopsy)["verdict"] == "pass"
    assert _verdict(_tally(0.0), 4, biopsy)["verdict"] == "fail"


def test_a_field_without_glass_is_flagged_for_its_background() -> None:
    qc = _verdict(_tally(0.0), 500, white_source="tissue")
    assert qc["verdict"] == "pass" and qc["flags"] == ["no_glass"] and "check the background" in qc["warnings"][0]


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SlideSpec(name="qcfail", pattern="homogeneous", score="0", size_um=(450.0, 450.0), seed=11)
    return make_synthetic_slide(spec, tmp_path_factory.mktemp("qc")).svs


def test_a_slide_failing_qc_is_not_scored_never_zero(small_slide: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "strict.yaml"
    config.write_text("qc:\n  min_tumour_cells: 1000000\n")
    assert main(["score", str(small_slide), "--out", str(tmp_path), "--config", str(config)]) == ExitStatus.NOT_SCORED
    out_dir = tmp_path / small_slide.stem
    report = json.loads((out_dir / "report.json").read_text())
    assert report["score"] is None and report["status"] == "not-scored" and report["category"] is None
    assert report["qc"]["verdict"] == "fail" and report["qc"]["flags"] == ["few_tumour_cells"]
    assert report["reasons"][0].startswith("not scored, QC failed: only")
    assert report["cells"]["total"] > 0  # measured and kept, to show why
    assert pq.read_table(out_dir / "cells.parquet").num_rows == report["cells"]["total"]
    line = capsys.readouterr().out
    assert "not scored (QC failed: only" in line and "HER2" not in line


def _field_file(folder: Path, score: str, size_um: float, washout: float = 0.0) -> Path:
    """A synthetic field with glass around its tissue, as a PNG at 0.25 µm/px (optionally washed out)."""
    spec = SlideSpec(pattern="homogeneous", score=score, size_um=(size_um, size_um), mpp=0.25, seed=3)
    scene, _ = build_scene(spec)
    rgb = render_region(scene, 0, 0, *scene.shape).rgb
    path = folder / f"field-{score.replace('+', 'p')}-{washout:g}.png"
    Image.fromarray(BY_NAME["washout 50%"].apply(rgb) if washout else rgb).save(path)
    return path


def test_a_washed_out_3plus_is_not_scored_and_says_calibrate_or_rescan(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """An over-exposed scan (blended 50% towards white) shrinks every DAB reading: the 3+ field
    would read 2+ with QC passing. It must be refused, with what to do about it."""
    plain = score_slide_file(_field_file(tmp_path, "3+", 600.0), tmp_path / "out", SETTINGS, mpp=0.25).report
    assert plain["score"] == "3+" and plain["qc"]["verdict"] == "pass"
    washed = _field_file(tmp_path, "3+", 600.0, washout=0.5)
    assert main(["score", str(washed), "--out", str(tmp_path / "out"), "--mpp", "0.25"]) == ExitStatus.NOT_SCORED
    report = json.loads((tmp_path / "out" / washed.stem / "report.json").read_text())
    assert report["score"] is None and report["status"] == "not-scored" and "washed_out" in report["qc"]["flags"]
    assert "rescan, or calibrate this scanner" in report["reasons"][0]
    assert "not scored (QC failed: the counterstain" in capsys.readouterr().out


def test_a_washed_out_control_is_still_measured_by_calibrate(tmp_path: Path) -> None:
    """The washed-out check judges a scan against the reference calibration sets, and tells the
    lab to calibrate: so calibrate measures such a control (and takes its counterstain) rather
    than refusing it as failed QC, as it refuses any other QC failure."""
    washed = _field_file(tmp_path, "0", 600.0, washout=0.5)
    measured, failed = measure_controls([Control(washed, "0", 0.25)], SETTINGS)
    assert failed == [] and len(measured) == 1 and len(measured[0].stained_od) > 0
    assert measured[0].counterstain_od < SETTINGS.qc.min_counterstain_ratio * SETTINGS.qc.reference_counterstain_od


def test_a_small_core_is_scored_with_its_cell_count_flagged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A TMA core with fewer than 200 tumour cells is scored (a pathologist would score it) and
    flagged with the count; fewer than 20 would not be."""
    path = _field_file(tmp_path, "2+", 270.0)
    assert main(["score", str(path), "--out", str(tmp_path / "out"), "--mpp", "0.25"]) == 0
    report = json.loads((tmp_path / "out" / path.stem / "report.json").read_text())
    n = report["cells"]["total"]
    assert SETTINGS.qc.min_tumour_cells <= n < SETTINGS.qc.flag_tumour_cells
    assert report["score"] == "2+" and report["qc"]["verdict"] == "pass" and "few_tumour_cells" in report["qc"]["flags"]
    assert any(f"{n} tumour cells scored" in w for w in report["qc"]["warnings"])
    assert "HER2 2+" in (line := capsys.readouterr().out) and "QC flags: few_tumour_cells" in line


@pytest.mark.slow
def test_artefacts_are_excluded_and_the_clean_part_scores_its_truth(tmp_path: Path) -> None:
    artefacts = [Blur(box_um=(250, 250, 430, 400), sigma_um=3.0),
                 Fold(box_um=(500, 260, 680, 400), shift_um=(0.0, 60.0)),
                 Ink(start_um=(260, 600), end_um=(660, 640), width_um=40, colour="green")]
    spec = SlideSpec(name="artefacts", pattern="homogeneous", score="1+", size_um=(1000.0, 1000.0), seed=3,
                     artefacts=artefacts)
    slide = make_synthetic_slide(spec, tmp_path / "synth")
    report = score_slide_file(slide.svs, tmp_path / "out", Settings()).report

    qc = report["qc"]
    assert qc["verdict"] == "pass"
    for reason in ("blur", "fold", "ink", "edge"):
        assert qc["excluded"][reason] > 0, reason
    truth_json = json.loads(slide.truth_json.read_text())
    polygons = {a["kind"]: shapely.Polygon(a["polygon_px"]) for a in truth_json["artefacts"]}
    assert qc["excluded"]["ink"] * 1e6 >= polygons["ink"].area * spec.mpp**2  # every block the stroke crosses
    assert qc["excluded"]["blur"] * 1e6 >= 0.7 * polygons["blur"].area * spec.mpp**2

    cells = pq.read_table(tmp_path / "out" / slide.svs.stem / "cells.parquet")
    x, y = cells.column("x").to_numpy(), cells.column("y").to_numpy()
    for kind in ("blur", "ink"):  # cells well inside these regions are gone
        core = polygons[kind].buffer(-5 / spec.mpp) if kind == "ink" else polygons[kind].buffer(-64 / spec.mpp)
        assert not shapely.contains_xy(core, x, y).any(), kind

    truth = pq.read_table(slide.truth_parquet)
    tx, ty = truth.column("x").to_numpy(), truth.column("y").to_numpy()
    spoilt = np.zeros(len(tx), bool)
    for polygon in polygons.values():
        spoilt |= shapely.contains_xy(polygon, tx, ty)
    clean = score_slide(truth.column("cell_class").to_numpy(zero_copy_only=False)[~spoilt], "breast", Settings().scoring)
    assert report["score"] == clean.score
    for label in CELL_CLASSES:
        assert report["cells"]["percent"][label] == pytest.approx(clean.percent[label], abs=10.0)


def test_block_percentiles_equal_numpy_with_and_without_nan() -> None:
    """The per-block percentile helper (one sort, NaN last) against
    numpy.nanpercentile, on blocks that are full, partly NaN and all NaN."""
    from her2slide.qc.pixels import nanpercentile

    rng = np.random.default_rng(4)
    values = rng.normal(size=(3, 4, 257)).astype(np.float32)
    values[0, 1, rng.random(257) < 0.3] = np.nan
    values[1, 2] = np.nan
    values[2, 3, :256] = np.nan
    q = (5, 20, 95, 99)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):  # numpy warns on the all-NaN block
        expected = np.nanpercentile(values.astype(np.float64), q, axis=-1)
    np.testing.assert_allclose(nanpercentile(values, q), expected, rtol=1e-6, atol=1e-6, equal_nan=True)
