"""Region grid, local score, spatial statistics and the homogeneous / focal / mosaic call."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from her2slide.config import Settings
from her2slide.maps.heterogeneity import RegionGrid, _rook_pairs, call_heterogeneity, join_counts, morans_i, segregation_index
from her2slide.maps.region_maps import CHANNELS, LABELS, SCORE_COLOURS
from her2slide.scoring import CELL_CLASSES, ScoringRules, score_counts, score_slide

SETTINGS = Settings()
R = SETTINGS.regions.region_um


def cells_at(x_um: np.ndarray, y_um: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A cell dict shaped like measure_tile_pixels' output (only the keys the grid reads, plus one)."""
    n = len(x_um)
    return {"x_um": np.asarray(x_um, float), "y_um": np.asarray(y_um, float),
            "cell_class": np.asarray(classes, np.int8), "completeness": rng.uniform(0, 1, n),
            "membrane_dab_od": rng.uniform(0, 1, n), "lateral": np.zeros(n, bool)}


def grid_from_region_classes(per_region: np.ndarray, seed: int = 0) -> RegionGrid:
    """A grid whose region (r, c) holds per_region[k, r, c] cells of class k, scattered inside it."""
    rng = np.random.default_rng(seed)
    _, ny, nx = per_region.shape
    k, r, c = np.nonzero(per_region)
    reps = per_region[k, r, c]
    k, r, c = np.repeat(k, reps), np.repeat(r, reps), np.repeat(c, reps)
    grid = RegionGrid(nx * R, ny * R, 0.25, SETTINGS)
    grid.add(cells_at((c + rng.uniform(0.01, 0.99, c.size)) * R, (r + rng.uniform(0.01, 0.99, r.size)) * R, k, rng))
    return grid


# ---------------------------------------------------------------- grid accumulation


def test_grid_matches_brute_force_over_several_tiles() -> None:
    rng = np.random.default_rng(1)
    width, height = 730.0, 415.0  # edge regions are partial
    n = 3000
    x, y = rng.uniform(0, width, n), rng.uniform(0, height, n)
    x[:3], y[:3] = width, height  # points exactly on the far edge go to the last region
    cells = cells_at(x, y, rng.integers(0, 4, n), rng)
    grid = RegionGrid(width, height, 0.25, SETTINGS)
    for part in np.array_split(np.arange(n), 5):  # streamed as five tiles
        grid.add({k: v[part] for k, v in cells.items()})
    maps = grid.finish()
    assert maps.shape == (5, 8) and list(maps.channels) == list(CHANNELS) and set(maps.labels) == set(LABELS)
    assert maps.counts.sum() == n
    col, row = np.minimum(x // R, 7).astype(int), np.minimum(y // R, 4).astype(int)
    for r, c in itertools.product(range(5), range(8)):  # brute force, region by region
        inside = (row == r) & (col == c)
        assert maps.counts[r, c] == inside.sum()
        if not inside.any():
            assert all(np.isnan(maps.channels[name][r, c]) for name in CHANNELS)
            continue
        for k, label in enumerate(CELL_CLASSES):
            assert maps.channels[f"fraction_{label}"][r, c] == pytest.approx(np.mean(cells["cell_class"][inside] == k))
        assert maps.channels["mean_completeness"][r, c] == pytest.approx(cells["completeness"][inside].mean(), rel=1e-6)
        assert maps.channels["mean_membrane_dab_od"][r, c] == pytest.approx(cells["membrane_dab_od"][inside].mean(), rel=1e-6)
        area_mm2 = (min(R, width - c * R) * min(R, height - r * R)) / 1e6
        assert maps.channels["cell_density"][r, c] == pytest.approx(inside.sum() / area_mm2, rel=1e-6)
        expected = score_slide(cells["cell_class"][inside], "breast", SETTINGS.scoring).score
        if inside.sum() >= SETTINGS.regions.min_cells:
            assert CELL_CLASSES[int(maps.channels["local_score"][r, c])] == expected
            assert maps.labels["local_score_class"][r, c] == CELL_CLASSES.index(expected) + 1
        else:
            assert np.isnan(maps.channels["local_score"][r, c]) and maps.labels["local_score_class"][r, c] == 0
    assert maps.label_colours["local_score_class"] == SCORE_COLOURS
    assert maps.excluded is None


def test_excluded_area_becomes_a_share_of_each_region() -> None:
    grid = RegionGrid(250.0, 100.0, 0.5, SETTINGS)  # regions 100, 100 and a 50 µm wide edge region
    grid.add_excluded(np.array([10.0, 20.0, 120.0, 240.0]), np.array([10.0, 50.0, 50.0, 50.0]),
                      np.array([2500.0, 2500.0, 1e5, 1250.0]))
    maps = grid.finish()
    np.testing.assert_allclose(maps.excluded, [[0.5, 1.0, 0.25]])  # 5000/1e4; capped at 1; 1250/5000


def test_empty_slide_gives_nan_maps_and_a_valid_homogeneous_report() -> None:
    maps = RegionGrid(300.0, 200.0, 0.25, SETTINGS).finish()
    assert maps.counts.sum() == 0 and all(np.isnan(v).all() for v in maps.channels.values())
    assert all((v == 0).all() for v in maps.labels.values())
    result = call_heterogeneity(maps, SETTINGS)
    assert result.pattern == "homogeneous" and result.clusters == []
    json.dumps(result.to_dict(), allow_nan=False)


def test_grid_refuses_a_slide_without_size() -> None:
    with pytest.raises(ValueError):
        RegionGrid(0.0, 100.0, 0.25, SETTINGS)


# ---------------------------------------------------------------- local score == slide rules

rules_st = st.builds(
    ScoringRules,
    breast_percent=st.sampled_from([5.0, 10.0, 10.1, 12.5, 30.0]),
    gastric_percent=st.sampled_from([5.0, 10.0, 10.1, 12.5, 30.0]),
    unusual_min_percent=st.sampled_from([0.0, 0.5, 1.0, 5.0]),
    intense_complete_counts_toward_2plus=st.booleans(),
)
counts_st = st.lists(st.tuples(*[st.integers(0, 40)] * 4), min_size=1, max_size=30).map(
    lambda rows: np.array(rows, dtype=np.int64).T)


@settings(max_examples=150, deadline=None)
@given(counts=counts_st, rules=rules_st, criteria=st.sampled_from(["breast", "gastric-resection"]))
def test_vectorised_local_score_equals_score_slide(counts: np.ndarray, rules: ScoringRules, criteria: str) -> None:
    local = score_counts(counts.T, criteria, rules)
    for column, got in zip(counts.T, local):
        if column.sum() == 0:
            continue
        classes = np.repeat(np.arange(4, dtype=np.int8), column)
        assert CELL_CLASSES[got] == score_slide(classes, criteria, rules).score


@settings(max_examples=40, deadline=None)
@given(counts=counts_st, rules=rules_st)
def test_biopsy_local_score_uses_the_resection_percentages(counts: np.ndarray, rules: ScoringRules) -> None:
    np.testing.assert_array_equal(score_counts(counts.T, "gastric-biopsy", rules),
                                  score_counts(counts.T, "gastric-resection", rules))


# ---------------------------------------------------------------- Moran's I and join counts


def _grid_stat(values: np.ndarray) -> dict:
    i, j, _ = _rook_pairs(np.ones(values.shape, bool))
    return morans_i(values.ravel(), i, j)


def test_morans_i_checkerboard_is_minus_one() -> None:
    board = np.indices((6, 6)).sum(axis=0) % 2
    assert _grid_stat(board.astype(float))["value"] == pytest.approx(-1.0)


def test_morans_i_half_split_by_hand() -> None:
    # 4 x 4, left half 1: 24 joins, 4 cross the split; z = ±0.5, so
    # I = n/S0 * 2*(20 - 4)*0.25 / (16*0.25) = 16/48 * 8/4 = 2/3
    half = np.zeros((4, 4))
    half[:, :2] = 1
    stat = _grid_stat(half)
    assert stat["value"] == pytest.approx(2 / 3) and stat["z"] > 3


def test_morans_i_of_random_values_is_near_its_expectation() -> None:
    rng = np.random.default_rng(3)
    values = [_grid_stat(rng.normal(size=(12, 12)))["value"] for _ in range(200)]
    assert np.mean(values) == pytest.approx(-1 / 143, abs=0.01)


def test_morans_i_moments_equal_exact_permutation_moments() -> None:
    mask = np.ones((2, 4), bool)
    mask[1, 3] = False  # 7 regions, an irregular graph
    i, j, n = _rook_pairs(mask)
    x = np.array([0.0, 1.0, 3.0, 0.5, 2.0, 7.0, 1.5])
    stats = np.array([morans_i(np.array(p), i, j)["value"] for p in itertools.permutations(x)])
    moments = morans_i(x, i, j)
    assert moments["expected"] == pytest.approx(stats.mean()) == pytest.approx(-1 / (n - 1))
    assert moments["variance"] == pytest.approx(stats.var())


def test_join_counts_on_a_hand_worked_2x2_grid() -> None:
    # [[B, B], [W, W]]: one BB join, one WW join, two BW joins. Of the six ways to place two
    # black regions, four are adjacent (BB 1, BW 2) and two diagonal (BB 0, BW 4):
    # E[BB] = 2/3, Var[BB] = 4/6 - 4/9 = 2/9; E[BW] = 8/3, Var[BW] = (4*4 + 2*16)/6 - 64/9 = 8/9.
    i, j, _ = _rook_pairs(np.ones((2, 2), bool))
    jc = join_counts(np.array([1, 1, 0, 0], bool), i, j)
    assert (jc["BB"]["observed"], jc["BW"]["observed"], jc["WW"]["observed"]) == (1, 2, 1)
    assert jc["BB"]["expected"] == pytest.approx(2 / 3) and jc["BB"]["variance"] == pytest.approx(2 / 9)
    assert jc["BW"]["expected"] == pytest.approx(8 / 3) and jc["BW"]["variance"] == pytest.approx(8 / 9)
    assert jc["WW"]["expected"] == pytest.approx(2 / 3)


def test_join_count_moments_equal_exact_enumeration_on_3x3() -> None:
    i, j, n = _rook_pairs(np.ones((3, 3), bool))
    draws = []
    for black in itertools.combinations(range(n), 4):
        b = np.zeros(n, bool)
        b[list(black)] = True
        draws.append([join_counts(b, i, j)[k]["observed"] for k in ("BB", "BW", "WW")])
    draws = np.array(draws, float)
    jc = join_counts(np.arange(n) < 4, i, j)
    for col, key in enumerate(("BB", "BW", "WW")):
        assert jc[key]["expected"] == pytest.approx(draws[:, col].mean())
        assert jc[key]["variance"] == pytest.approx(draws[:, col].var())


# ---------------------------------------------------------------- segregation


def test_segregation_is_one_when_apart_and_near_zero_when_intermixed() -> None:
    assert segregation_index(np.array([30, 0]), np.array([30, 70])) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    total = np.full(100, 20)
    mixed = [segregation_index(rng.binomial(total, 0.3), total) for _ in range(50)]
    assert np.mean(mixed) < 0.1
    assert segregation_index(np.zeros(5), np.full(5, 10)) == 0.0  # no positive cells: nothing to segregate


# ---------------------------------------------------------------- the call on constructed maps


def _regions(ny: int, nx: int, per_region: int, positive: np.ndarray) -> np.ndarray:
    """(4, ny, nx) class counts: ``positive`` 3+ cells per region, the rest 0 or 1+ alternately."""
    classes = np.zeros((4, ny, nx), np.int64)
    classes[3] = positive
    rest = per_region - positive
    classes[0] = rest // 2
    classes[1] = rest - rest // 2
    return classes


def test_uniform_negative_and_uniform_positive_slides_are_homogeneous() -> None:
    for positive in (0, 14):  # 0% and 70% positive cells, everywhere
        maps = grid_from_region_classes(_regions(10, 10, 20, np.full((10, 10), positive))).finish()
        assert call_heterogeneity(maps, SETTINGS).pattern == "homogeneous"


def test_intermixed_positive_cells_are_mosaic() -> None:
    rng = np.random.default_rng(4)
    maps = grid_from_region_classes(_regions(12, 12, 20, rng.binomial(20, 0.25, (12, 12)))).finish()
    result = call_heterogeneity(maps, SETTINGS)
    assert result.pattern == "mosaic", result.metrics["reason"]
    assert result.metrics["segregation"] < SETTINGS.heterogeneity.focal_min_segregation
    assert result.metrics["mixed_region_share"] > 0.9


def test_a_positive_block_is_focal_with_its_cluster_located() -> None:
    positive = np.zeros((12, 12), int)
    positive[2:6, 3:7] = 20  # 16 of 144 regions: 11% of cells
    positive[9:11, 9:11] = 20  # a second, smaller focus
    maps = grid_from_region_classes(_regions(12, 12, 20, positive)).finish()
    result = call_heterogeneity(maps, SETTINGS)
    assert result.pattern == "focal", result.metrics["reason"]
    assert result.metrics["cluster_count"] == 2 and result.metrics["segregation"] > 0.9
    assert result.metrics["morans_i"]["z"] > 5 and result.metrics["join_counts"]["BB"]["z"] > 5
    big, small = result.clusters
    assert (big["label"], big["regions"], small["regions"]) == (1, 16, 4)
    assert big["bbox_um"] == [300.0, 200.0, 700.0, 600.0] and big["bbox_px"] == [1200.0, 800.0, 2800.0, 2400.0]
    assert big["centroid_um"] == pytest.approx([500.0, 400.0]) and big["max_local_score"] == "3+"
    assert big["share_of_positive_cells"] == pytest.approx(0.8)
    labels = maps.labels["heterogeneity_regions"]
    assert (labels[2:6, 3:7] == 1).all() and (labels[9:11, 9:11] == 2).all() and (labels > 0).sum() == 20
    assert set(maps.label_colours["heterogeneity_regions"]) == {1, 2}
    assert result.metrics["local_score_area_share"]["3+"] == pytest.approx(20 / 144, abs=1e-4)
    json.dumps(result.to_dict(), allow_nan=False)


# ---------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def focal_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from her2slide.synth.slides import make_synthetic_slide
    from her2slide.synth.spec import SlideSpec

    spec = SlideSpec(name="focal-tiny", pattern="focal", score="0", fraction=0.3, size_um=(450.0, 450.0), seed=11)
    return make_synthetic_slide(spec, tmp_path_factory.mktemp("het")).svs


def test_pipeline_reports_the_pattern_and_keeps_the_maps(focal_slide: Path, tmp_path: Path) -> None:
    from her2slide.run.pipeline import score_slide_file

    outcome = score_slide_file(focal_slide, tmp_path, SETTINGS)
    report = json.loads((outcome.out_dir / "report.json").read_text())
    assert report["heterogeneity"]["pattern"] in ("homogeneous", "focal", "mosaic")
    assert report["heterogeneity"] == json.loads(json.dumps(outcome.heterogeneity.to_dict()))
    assert outcome.maps.counts.sum() == report["cells"]["total"] and outcome.maps.shape == (5, 5)
    assert "heterogeneity" in report["timings"]
    assert math.isclose(report["heterogeneity"]["positive_percent"],
                        report["cells"]["percent"]["2+"] + report["cells"]["percent"]["3+"], abs_tol=1e-3)
