"""Style families of the synthetic generator: the new architectures make their cells, nucleus
instances are exact, family tiles are consistent and deterministic, and the held-out family has
its own evaluation suite."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from scipy import ndimage as ndi

from her2slide.stain import StainModel, stain_amounts
from her2slide.synth.families import FAMILIES, HELD_OUT, TRAINING_FAMILIES, family_named
from her2slide.synth.layout import KINDS, LayoutParams
from her2slide.synth.render import render_region
from her2slide.synth.slides import build_scene, make_synthetic_slide, suite_specs
from her2slide.synth.spec import SlideSpec
from her2slide.synth.tiles import NUCLEUS_KINDS, make_training_tiles, random_tile_spec, tile_name

FIELD_UM = 120.0  # 480 px at level 0: a few cords, files or dozens of single cells


def _scene(architecture: dict[str, float], seed: int = 2, side_um: float = FIELD_UM, **layout):
    sizes = dict(nest_radius_um=(20.0, 40.0), sheet_radius_um=(35.0, 55.0), trabecular_radius_um=(35.0, 60.0))
    spec = SlideSpec(size_um=(side_um, side_um), full_field=True, seed=seed, score="2+",
                     layout=LayoutParams(architecture=architecture, **{**sizes, **layout}))
    return build_scene(spec, block=1024)


def _render(scene, nuclei: bool = True):
    h, w = scene.shape
    return render_region(scene, 0, 0, h, w, nuclei=nuclei)


def _contacts(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different tumour cells that share an edge between 4-neighbours."""
    pairs = set()
    for a, b in ((labels[:, 1:], labels[:, :-1]), (labels[1:], labels[:-1])):
        touch = (a != b) & (a > 0) & (b > 0)
        pairs |= {(int(min(p, q)), int(max(p, q))) for p, q in zip(a[touch], b[touch])}
    return pairs


# ---------------------------------------------------------------- families


def test_families_are_named_coded_and_one_is_held_out():
    assert len(FAMILIES) >= 5
    assert len({f.code for f in FAMILIES.values()}) == len(FAMILIES)
    assert HELD_OUT in FAMILIES and HELD_OUT not in TRAINING_FAMILIES
    assert set(TRAINING_FAMILIES) | {HELD_OUT} == set(FAMILIES)
    held = FAMILIES[HELD_OUT]
    # it differs in architecture AND look from every training family
    for name in TRAINING_FAMILIES:
        f = FAMILIES[name]
        assert "trabecular" not in f.architecture
        assert f.counterstain[1] > held.counterstain[0] + 0.1
        assert f.stain_tilt_deg[1] <= held.stain_tilt_deg[0]
        assert np.abs(np.subtract(f.white_shift, held.white_shift)).max() >= 5
    # together the training families cover the architectures and a 2.5x counterstain range
    kinds = {k for name in TRAINING_FAMILIES for k in FAMILIES[name].architecture}
    assert {"nest", "sheet", "gland", "single_file", "discohesive"} <= kinds
    lo = min(FAMILIES[n].counterstain[0] for n in TRAINING_FAMILIES)
    hi = max(FAMILIES[n].counterstain[1] for n in TRAINING_FAMILIES)
    assert hi / lo >= 2.5
    with pytest.raises(ValueError, match="trabecular"):
        family_named("papillary")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_draws_stay_in_its_ranges(name):
    f = FAMILIES[name]
    for i in range(3):
        layout, look = f.draw(np.random.default_rng(i))
        assert set(layout.architecture) == set(f.architecture)
        assert f.counterstain[0] <= look.counterstain <= f.counterstain[1]
        assert f.blur_um[0] <= look.blur_um <= f.blur_um[1]
        assert f.jpeg_quality[0] <= look.jpeg_quality <= f.jpeg_quality[1]
        assert f.tumour_fraction[0] <= layout.tumour_fraction <= f.tumour_fraction[1]


def test_held_out_stain_tilts_away_from_eosin():
    """Its stain vectors leave the H-DAB plane further than any training family's, on the side real
    IHC stains do, so the pipeline's H&E check does not refuse its slides."""
    normal = StainModel.default().matrix[2]  # the residual direction her2slide.slide.checks reads
    limit = np.sin(np.radians(5.0)) + 1e-9
    for name, f in FAMILIES.items():
        for i in range(10):
            look = f.draw(np.random.default_rng(i))[1]
            off = np.array([np.asarray(look.haematoxylin) @ normal, np.asarray(look.dab) @ normal])
            if name == HELD_OUT:
                assert np.all(off > np.sin(np.radians(4.0)))
            else:
                assert np.all(np.abs(off) <= limit)


# ---------------------------------------------------------------- architectures


@pytest.mark.parametrize("kind", ["trabecular", "single_file", "discohesive"])
def test_new_architectures_make_their_cells(kind):
    filler = None if kind == "discohesive" else kind
    scene, cells = _scene({kind: 1.0}, filler=filler, tumour_fraction=0.4)
    region = _render(scene, nuclei=False)
    n = len(cells["cell_id"])
    assert n >= 12
    assert set(cells["architecture"]) == {kind}
    assert np.array_equal(np.unique(region.cells[region.cells > 0]) - 1, np.arange(n))
    # shape pixels belong to cells (a cell-less patch of cytoplasm would be a false negative)
    from her2slide.synth.geometry import region_geometry

    h, w = scene.shape
    g = region_geometry(scene.layout, scene.mpp, 0, 0, h, w)
    assert ((g.shape_map >= 0) & (g.labels == 0)).sum() <= 0.01 * (g.shape_map >= 0).sum()
    contacts = _contacts(region.cells)
    degree = np.bincount(np.array(sorted(contacts)).ravel(), minlength=n + 1) if contacts else np.zeros(n + 1)
    if kind == "discohesive":
        assert not contacts  # single cells, none touching another
    if kind == "single_file":
        assert degree.max() <= 2  # a file: each cell has at most a neighbour before and after
        assert degree.sum() > 0
    if kind == "trabecular":
        _assert_cords_are_one_to_three_cells_wide(scene, region)


def _assert_cords_are_one_to_three_cells_wide(scene, region):
    """Walk across each cord (septum to septum) at many places: the cells met are at most the
    cord's ``across`` (+1 where a cell wall runs slanted), and the septa between cords are stroma."""
    shapes, mpp = scene.layout.shapes, scene.mpp
    crossings = 0
    for i in np.flatnonzero([shapes.has_cords(j) for j in range(len(shapes))]):
        angle, period, gap, wave, wave_len, _, phase1, _, across = shapes.cords[i]
        for m in range(-8, 8):
            for v in np.arange(-60.0, 60.0, 7.0):
                s = np.linspace(m * period + gap, (m + 1) * period - gap, 40)
                u = s - wave * np.sin(v / wave_len + phase1)
                x = shapes.cx[i] + u * np.cos(angle) - v * np.sin(angle)
                y = shapes.cy[i] + u * np.sin(angle) + v * np.cos(angle)
                r, c = np.floor(y / mpp).astype(int), np.floor(x / mpp).astype(int)
                inside = (r >= 0) & (r < region.cells.shape[0]) & (c >= 0) & (c < region.cells.shape[1])
                if not inside.all():
                    continue
                lab = region.cells[r, c]
                if (lab > 0).all():
                    crossings += 1
                    assert len(np.unique(lab)) <= across + 1
    assert crossings >= 10


# ---------------------------------------------------------------- nucleus instances


def test_nucleus_instances_are_exact_and_one_per_nucleus():
    """Irregular nuclei, thinned lymphocyte aggregates: every instance is one designed nucleus."""
    scene, cells = _scene({"sheet": 1.0, "nest": 1.0}, side_um=160.0, nucleus_irregularity=0.2, lymphocytes_per_mm2=8000,
                          lymphocyte_aggregate_share=0.6, lymphocyte_spacing_um=4.5, nucleus_major_um=(10.0, 14.0),
                          nucleus_minor_um=(7.0, 10.0), cell_spacing_um=(15.0, 19.0))
    region = _render(scene)
    ids, n = region.nuclei, len(cells["cell_id"])
    assert np.array_equal(ids > 0, region.nucleus)
    # a tumour cell's nucleus carries its cell label and lies in its cell
    tumour = (ids > 0) & (ids <= n)
    assert np.array_equal(region.cells[tumour], ids[tumour])
    assert not ((ids > n) & (region.cells > 0)).any()  # other nuclei never in a tumour cell
    # each instance is centred on its own designed nucleus
    c, o = scene.layout.cells, scene.layout.nuclei
    cx = np.concatenate([c.nx, o.x]) / scene.mpp
    cy = np.concatenate([c.ny, o.y]) / scene.mpp
    design = np.pi * np.concatenate([c.na * c.nb, o.a * o.b]) / scene.mpp**2
    k = np.arange(1, ids.max() + 1)
    area = ndi.sum_labels(np.ones_like(ids), ids, k)
    whole = area >= 0.6 * design[k - 1]  # not clipped by the field edge, its cell or an overlap
    assert whole.sum() > 80 and (o.kind == 2).sum() > 40
    com = np.array(ndi.center_of_mass(np.ones_like(ids), ids, k[whole]))
    err = np.hypot(com[:, 0] - cy[k[whole] - 1] + 0.5, com[:, 1] - cx[k[whole] - 1] + 0.5) * scene.mpp
    assert np.percentile(err, 95) < 1.0 and err.max() < 2.0
    # instances are connected (clipping to a wavy cell wall may cut off a sliver, rarely)
    pieces = np.array([ndi.label(ids == j)[1] for j in k[whole]])
    assert np.mean(pieces == 1) > 0.97


def test_new_features_render_the_same_in_any_block_size():
    scene, _ = _scene({"trabecular": 1.0, "discohesive": 0.5}, filler="trabecular", nucleus_irregularity=0.2)
    whole = _render(scene)
    h, w = scene.shape
    step = 173
    ids = np.zeros_like(whole.nuclei)
    rgb = np.zeros_like(whole.rgb)
    for y in range(0, h, step):
        for x in range(0, w, step):
            r = render_region(scene, y, x, min(step, h - y), min(step, w - x), nuclei=True)
            ids[y:y + step, x:x + step], rgb[y:y + step, x:x + step] = r.nuclei, r.rgb
    assert np.array_equal(ids, whole.nuclei) and np.array_equal(rgb, whole.rgb)


# ---------------------------------------------------------------- tiles


def test_family_tiles_carry_consistent_nuclei_and_their_family(tmp_path):
    names = [HELD_OUT, "pleomorphic", "discohesive"]
    paths = make_training_tiles(3, tmp_path, tile_px=96, family=names, seed=4)
    assert [p.name for p in paths] == [tile_name(i, names[i]) for i in range(3)]
    for p, name in zip(paths, names):
        with np.load(p) as d:
            assert str(d["family"]) == name
            nuclei, cells, kind = d["nuclei"], d["cells"], d["nucleus_kind"]
            assert nuclei.dtype == np.int32 and nuclei.shape == (96, 96)
            assert not (nuclei > 0)[~d["nucleus"]].any()              # within the nucleus mask
            assert (nuclei > 0).sum() >= 0.85 * d["nucleus"].sum()   # and nearly all of it
            labels = np.unique(nuclei[nuclei > 0])
            assert kind.shape[0] > labels.max() and kind[0] == 0
            tumour = nuclei[(nuclei > 0) & (kind[nuclei] == NUCLEUS_KINDS["tumour"])]
            assert tumour.size and np.mean(cells[np.isin(nuclei, tumour)] == nuclei[np.isin(nuclei, tumour)]) > 0.97
            assert set(kind[labels]) <= set(NUCLEUS_KINDS.values())
            # image and labels aligned: nuclei hold more haematoxylin than the tissue around them
            haem = stain_amounts(d["image"], StainModel.default())[..., 0]
            ring = ndi.binary_dilation(nuclei > 0, iterations=3) & ~ndi.binary_dilation(nuclei > 0, iterations=1)
            assert haem[nuclei > 0].mean() > haem[ring].mean() + 0.02
    # tile i is the same alone as in a mix, and again
    (alone,) = make_training_tiles(1, tmp_path / "alone", tile_px=96, family="discohesive", seed=4, first=2)
    with np.load(alone) as a, np.load(paths[2]) as b:
        assert all(np.array_equal(a[k], b[k]) for k in b.files)
    with np.load(make_training_tiles(1, tmp_path / "other", tile_px=96, family="discohesive", seed=5, first=2)[0]) as c, \
            np.load(alone) as a:
        assert not np.array_equal(a["image"], c["image"])


def test_v1_tiles_keep_their_names_and_gain_nucleus_labels(tmp_path):
    (path,) = make_training_tiles(1, tmp_path, tile_px=64, seed=1)
    assert path.name == "tile_00000.npz"
    with np.load(path) as d:
        assert str(d["family"]) == "v1"
        assert not (d["nuclei"] > 0)[~d["nucleus"]].any()


def test_tile_spec_of_a_family_carries_its_label_and_unknown_names_fail(tmp_path):
    spec = random_tile_spec(np.random.default_rng(0), 80.0, 1, family="glandular")
    assert spec.family == "glandular" and spec.full_field
    with pytest.raises(ValueError, match="unknown style family"):
        make_training_tiles(1, tmp_path, family=["cohesive", "solid"])


# ---------------------------------------------------------------- held-out suite


def test_held_out_suite_covers_scores_and_patterns():
    specs = suite_specs(10, 0, family=HELD_OUT)
    assert [s.name for s in specs] == [f"{HELD_OUT}{i:03d}" for i in range(10)]
    assert {s.score for s in specs if s.pattern == "homogeneous"} == {"0", "1+", "2+", "3+"}
    assert {s.pattern for s in specs} == {"homogeneous", "focal", "mosaic"}
    assert all(s.family == HELD_OUT and "trabecular" in s.layout.architecture for s in specs)
    held = FAMILIES[HELD_OUT]
    assert all(held.counterstain[0] <= s.look.counterstain <= held.counterstain[1] for s in specs)
    # the same class maps and sizes as the default suite; other seeds
    default = suite_specs(10, 0)
    assert [(s.pattern, s.score, s.fraction, s.size_um) for s in specs] == \
        [(s.pattern, s.score, s.fraction, s.size_um) for s in default]
    assert not {s.seed for s in specs} & {s.seed for s in default}


def test_held_out_slide_is_written_with_truth(tmp_path):
    import json

    from her2slide.slide.checks import residual_share
    from her2slide.slide import open_slide
    from her2slide.slide.tissue import detect_tissue

    spec = suite_specs(7, 0, family=HELD_OUT)[6].model_copy(update={"size_um": (320.0, 300.0)})  # a 3+ slide
    slide = make_synthetic_slide(spec, tmp_path, block=1024)
    reader = open_slide(slide.svs)
    thumb, mpp = reader.thumbnail(2.0)
    assert residual_share(thumb, detect_tissue(thumb, mpp, level0_mpp=reader.mpp).mask) > 0.02  # IHC, not H&E
    truth = json.loads(slide.truth_json.read_text())
    assert truth["spec"]["family"] == HELD_OUT and truth["score"] == slide.score
    assert truth["counts"]["tumour_shapes"]["trabecular"] >= 1
    assert slide.n_cells > 50


def test_cli_family_options(tmp_path, capsys):
    from her2slide.cli.synth import add_parser, run

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--tiles", "2", "--tile-px", "48", "--family",
                              "training"])
    assert run(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [tile_name(i, TRAINING_FAMILIES[i]) for i in range(2)]
    bad = parser.parse_args(["synth", "--out", str(tmp_path), "--tiles", "1", "--family", "solid"])
    assert run(bad) == 1
    assert "unknown style family 'solid'" in capsys.readouterr().err
    single = parser.parse_args(["synth", "--out", str(tmp_path), "--family", HELD_OUT])
    assert run(single) == 1


def test_kinds_cover_the_new_architectures():
    assert {"trabecular", "single_file", "discohesive"} <= set(KINDS)
    with pytest.raises(ValueError):
        LayoutParams(architecture={"papillary": 1.0})
