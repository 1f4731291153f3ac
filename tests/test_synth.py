"""Synthetic slides: the SVS opens as Aperio, pixels and truth are what was drawn, generation is
deterministic and independent of the block size, training tiles are consistent."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from her2slide.scoring import CELL_CLASSES
from her2slide.synth.geometry import cell_geometry
from her2slide.synth.render import render_region
from her2slide.synth.slides import _classify, build_scene, make_synthetic_slide
from her2slide.synth.spec import MIXTURES, POSITIVE, SlideSpec
from her2slide.synth.staining import _exact_counts

openslide = pytest.importorskip("openslide")
pq = pytest.importorskip("pyarrow.parquet")

SMALL = dict(size_um=(420.0, 380.0))


def _read_truth(path) -> dict[str, np.ndarray]:
    """Truth parquet as numpy columns (no pandas needed)."""
    return {k: np.asarray(v) for k, v in pq.read_table(path).to_pydict().items()}


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A small focal slide, written once: spec, result, scene, truth columns, full render."""
    spec = SlideSpec(name="t-focal", pattern="focal", score="1+", fraction=0.2, seed=4, **SMALL)
    out = tmp_path_factory.mktemp("synth")
    result = make_synthetic_slide(spec, out, block=1024)
    scene, cells = build_scene(spec)
    h, w = scene.shape
    return spec, result, scene, cells, render_region(scene, 0, 0, h, w)


def test_svs_opens_as_aperio_with_mpp_and_levels(slide):
    spec, result, scene, _, _ = slide
    s = openslide.OpenSlide(str(result.svs))
    assert s.properties["openslide.vendor"] == "aperio"
    assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert float(s.properties["openslide.mpp-y"]) == pytest.approx(0.25)
    assert float(s.properties["openslide.objective-power"]) == 40
    assert s.level_count >= 3
    assert s.dimensions == (scene.shape[1], scene.shape[0])
    assert s.level_downsamples[1] == pytest.approx(4.0, rel=0.01)


def test_pixels_read_back_match_render_within_jpeg_error(slide):
    _, result, scene, _, region = slide
    s = openslide.OpenSlide(str(result.svs))
    h, w = scene.shape
    back = np.asarray(s.read_region((0, 0), 0, (w, h)).convert("RGB")).astype(np.int16)
    diff = np.abs(back - region.rgb.astype(np.int16))
    assert diff.mean() < 2.0
    assert np.percentile(diff, 99) <= 12
    # colour, not only structure: mean colour of tumour pixels agrees channel by channel
    tumour = region.tumour
    assert np.allclose(back[tumour].mean(0), region.rgb[tumour].mean(0), atol=1.5)
    # glass has the white point
    glass = region.cells == 0
    corner = region.rgb[:40, :40].reshape(-1, 3).mean(0)
    assert np.allclose(corner, scene.look.white, atol=2.0) and glass[:40, :40].all()


def test_truth_files(slide):
    spec, result, scene, cells, region = slide
    table = _read_truth(result.truth_parquet)
    for col in ("cell_id", "x", "y", "x_um", "y_um", "area_um2", "intensity", "membrane_dab_od", "completeness",
                "lateral", "cell_class", "region"):
        assert col in table
    truth = json.loads(result.truth_json.read_text())
    assert truth["score"] == result.score and truth["pattern"] == "focal"
    assert truth["mpp"] == 0.25 and (truth["width_px"], truth["height_px"]) == (scene.shape[1], scene.shape[0])
    assert truth["counts"]["tumour_cells"] == len(table["cell_id"])
    assert truth["counts"]["stroma_nuclei"] > 0 and truth["counts"]["lymphocytes"] > 0
    assert truth["gastric_resection"]["score"] in CELL_CLASSES
    assert np.allclose(table["x"], cells["x"]) and list(table["cell_class"]) == list(_classify(cells)["breast"][0])


def test_truth_table_matches_instance_labels(slide):
    _, result, scene, cells, region = slide
    table = _read_truth(result.truth_parquet)
    n = len(table["cell_id"])
    labels = region.cells
    ids = np.unique(labels[labels > 0])
    assert len(ids) == n
    assert np.array_equal(ids - 1, table["cell_id"])
    # centroid = centroid of the rendered region, and it lies inside its own cell
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols]
    count = np.bincount(lab, minlength=n + 1)[1:]
    assert np.allclose(table["area_um2"], count * 0.25**2)
    assert np.allclose(table["x"], np.bincount(lab, weights=cols)[1:] / count)
    assert np.allclose(table["y"], np.bincount(lab, weights=rows)[1:] / count)
    cy, cx = np.rint(table["y"]).astype(int), np.rint(table["x"]).astype(int)
    assert np.array_equal(table["cell_class"], _classify(cells)["breast"][0])
    assert np.all(labels[cy, cx] == table["cell_id"] + 1)
    assert np.allclose(table["x_um"], table["x"] * 0.25)
    # no tumour cell in the glass: tissue does not fill the slide
    assert not labels[:20].any() and not labels[-20:].any()


def test_completeness_equals_drawn_arc_fraction(slide):
    """Angular coverage of the stained membrane around each centroid, in 72 bins, equals the stored
    completeness (up to one bin at each end of each of at most 3 arcs)."""
    _, _, _, cells, region = slide
    labels = region.cells
    rows, cols = np.nonzero(region.boundary & (labels > 0))
    c = labels[rows, cols] - 1
    theta = np.mod(np.arctan2(rows - cells["y"][c], cols - cells["x"][c]), 2 * np.pi)
    b = (theta / (2 * np.pi) * 72).astype(int) % 72
    n = len(cells["cell_id"])
    have, stained = np.zeros((n, 72), bool), np.zeros((n, 72), bool)
    have[c, b] = True
    on = region.membrane[rows, cols] > 0
    stained[c[on], b[on]] = True
    measured = stained.sum(1) / have.sum(1)
    assert have.sum(1).min() == 72  # every cell has a membrane all round
    err = np.abs(measured - cells["completeness"])
    assert err.max() <= 6 / 72 + 1e-9
    assert np.all(measured[cells["completeness"] == 1.0] == 1.0)
    assert np.all(measured[cells["membrane_dab_od"] == 0] == 0)
    # lateral cells: one contiguous arc of 55-75 %
    lat = cells["lateral"]
    assert np.all((cells["completeness"][lat] >= 0.55) & (cells["completeness"][lat] <= 0.75))


def test_membrane_od_and_classes_follow_design(slide):
    _, _, _, cells, region = slide
    classes = _classify(cells)["breast"][0]
    od, ph = cells["membrane_dab_od"], cells["phenotype"]
    expect = {"none": "0", "faint_partial": "1+", "faint_complete": "1+", "moderate_complete": "2+",
              "moderate_lateral": "2+", "intense_complete": "3+", "intense_lateral": "2+"}
    for name, cls in expect.items():
        assert np.all(classes[ph == name] == cls), name
    assert np.all((od[cells["intensity"] == 1] >= 0.14) & (od[cells["intensity"] == 1] <= 0.24))
    assert np.all((od[cells["intensity"] == 2] >= 0.38) & (od[cells["intensity"] == 2] <= 0.52))
    assert np.all((od[cells["intensity"] == 3] >= 0.75) & (od[cells["intensity"] == 3] <= 1.10))
    # the rendered membrane carries the designed OD (before blur), up to the variation along the ring
    labels = region.cells
    sel = region.boundary & (region.membrane > 0)
    mean_od = np.bincount(labels[sel], weights=region.membrane[sel], minlength=len(od) + 1)[1:] / \
        np.maximum(np.bincount(labels[sel], minlength=len(od) + 1)[1:], 1)
    stained = od > 0
    assert np.allclose(mean_od[stained], od[stained], rtol=0.25)


@pytest.mark.parametrize("score", ["0", "1+", "2+", "3+"])
def test_homogeneous_truth_score_equals_spec(score):
    spec = SlideSpec(pattern="homogeneous", score=score, seed=20 + len(score), size_um=(360.0, 360.0))
    scene, cells = build_scene(spec, block=1024)
    result = _classify(cells)
    assert result["breast"][1].score == score
    n = len(cells["cell_id"])
    assert n > 100
    want = _exact_counts(MIXTURES[score], n)
    got = {k: int(v) for k, v in zip(*np.unique(cells["phenotype"], return_counts=True))}
    assert got == {k: v for k, v in want.items() if v}


def test_focal_cluster_share_and_mosaic_fraction():
    focal = SlideSpec(pattern="focal", score="0", fraction=0.3, clusters=2, seed=31, **SMALL)
    _, cells = build_scene(focal)
    cluster = cells["region"] == "cluster"
    assert abs(cluster.mean() - 0.3) < 0.01
    assert np.all(cells["phenotype"][cluster] == POSITIVE["3+"])
    # contiguous: every cluster cell has a cluster neighbour within two cell diameters
    xy = np.stack([cells["x_um"], cells["y_um"]], 1)[cluster]
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert d.min(1).max() < 30.0

    mosaic = SlideSpec(pattern="mosaic", score="0", fraction=0.25, positive="2+", seed=32, **SMALL)
    _, cells = build_scene(mosaic)
    pos = cells["region"] == "positive"
    assert abs(pos.mean() - 0.25) < 0.01
    classes = _classify(cells)["breast"][0]
    assert abs(np.mean(classes == "2+") - 0.25) < 0.01


def test_deterministic_for_a_seed():
    spec = SlideSpec(pattern="mosaic", score="1+", fraction=0.4, seed=9, size_um=(300.0, 280.0))
    s1, c1 = build_scene(spec)
    s2, c2 = build_scene(spec)
    for k in c1:
        assert np.array_equal(c1[k], c2[k]), k
    a = render_region(s1, 200, 300, 256, 300)
    b = render_region(s2, 200, 300, 256, 300)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.cells, b.cells)
    _, c3 = build_scene(spec.model_copy(update={"seed": 10}))
    assert len(c3["x"]) != len(c1["x"]) or not np.allclose(c3["x"], c1["x"])


def test_rendering_does_not_depend_on_block_size():
    spec = SlideSpec(pattern="homogeneous", score="3+", seed=5, size_um=(230.0, 200.0))
    scene, cells = build_scene(spec, block=256)
    h, w = scene.shape
    whole = render_region(scene, 0, 0, h, w)
    for by, bx in ((300, 257), (512, 2048)):
        rgb = np.zeros_like(whole.rgb)
        lab = np.zeros_like(whole.cells)
        mem = np.zeros_like(whole.membrane)
        for y in range(0, h, by):
            for x in range(0, w, bx):
                r = render_region(scene, y, x, min(by, h - y), min(bx, w - x))
                rgb[y:y + by, x:x + bx], lab[y:y + by, x:x + bx], mem[y:y + by, x:x + bx] = r.rgb, r.cells, r.membrane
        assert np.array_equal(rgb, whole.rgb)
        assert np.array_equal(lab, whole.cells)
        assert np.array_equal(mem, whole.membrane)
    c1 = cell_geometry(scene.layout, scene.mpp, scene.shape, 256)
    c2 = cell_geometry(scene.layout, scene.mpp, scene.shape, 4096)
    assert all(np.array_equal(a, b) for a, b in zip(c1, c2))


@pytest.mark.parametrize("mpp", [0.5, 0.6])
def test_training_tiles_have_consistent_shapes_and_masks(tmp_path, mpp):
    from scipy import ndimage as ndi

    from her2slide.stain import StainModel, stain_amounts
    from her2slide.synth.tiles import make_training_tiles

    paths = make_training_tiles(2, tmp_path, tile_px=96, mpp=mpp, seed=3)
    assert len(paths) == 2
    for p in paths:
        d = np.load(p)
        assert d["image"].shape == (96, 96, 3) and d["image"].dtype == np.uint8
        for k in ("membrane", "nucleus", "tumour"):
            assert d[k].shape == (96, 96) and d[k].dtype == bool, k
        assert d["cells"].shape == (96, 96) and d["cells"].dtype == np.int32
        assert float(d["mpp"]) == pytest.approx(mpp)
        assert np.array_equal(d["tumour"], d["cells"] > 0)
        # membranes lie on tumour cells; stained membranes are a subset of all membranes
        near = ndi.binary_dilation(d["tumour"], iterations=1)
        assert np.all(near[d["membrane"]])
        assert np.all(d["membrane_all"][d["membrane"]] | ~d["membrane_all"].any())
        # image and masks aligned: tumour nuclei hold more haematoxylin than the rest of the cells
        haem = stain_amounts(d["image"], StainModel.default())[..., 0]
        inside = d["tumour"] & ~ndi.binary_dilation(d["membrane_all"], iterations=1)
        if (d["nucleus"] & inside).sum() > 50 and (~d["nucleus"] & inside).sum() > 50:
            assert haem[d["nucleus"] & inside].mean() > haem[~d["nucleus"] & inside].mean() + 0.05
        labels = np.unique(d["cells"])
        assert d["cell_class"].shape[0] > labels.max() and np.all(d["cell_class"][labels[labels > 0]] >= 0)
    # deterministic
    again = make_training_tiles(1, tmp_path / "again", tile_px=96, mpp=mpp, seed=3)
    assert np.array_equal(np.load(again[0])["image"], np.load(paths[0])["image"])


def test_cli_writes_slide_and_prints_truth(tmp_path, capsys):
    from her2slide.cli.synth import add_parser, run

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--pattern", "homogeneous", "--score", "1+",
                              "--size-um", "260", "240", "--seed", "1", "--name", "cli"])
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "cli.svs" in out and "true HER2 score 1+" in out
    assert (tmp_path / "cli.truth.json").exists()
    bad = parser.parse_args(["synth", "--out", str(tmp_path), "--pattern", "focal", "--score", "3+"])
    assert run(bad) == 1
