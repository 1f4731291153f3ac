"""Table-driven tests of the HER2 IHC rules: cell classes, slide boundaries, open choices, categories."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from her2slide.scoring import (
    CELL_CLASSES,
    Criteria,
    Intensity,
    ScoringRules,
    SlideScore,
    classify_cells,
    intensity_class,
    score_slide,
)
from her2slide.scoring.clusters import largest_cluster_sizes

RULES = ScoringRules()


def cells(n3: int = 0, n2: int = 0, n1: int = 0, total: int = 1000) -> np.ndarray:
    """A slide of ``total`` tumour cells with the given class counts (rest class 0)."""
    n0 = total - n3 - n2 - n1
    assert n0 >= 0
    return np.repeat(np.arange(4, dtype=np.int8), [n0, n1, n2, n3])


def line(n: int, spacing_um: float = 15.0, x0: float = 0.0, y: float = 0.0) -> np.ndarray:
    """``n`` centroids on a horizontal line."""
    return np.column_stack([x0 + spacing_um * np.arange(n), np.full(n, y)])


def cell_class(od: float, comp: float, lateral: bool, criteria: str, rules: ScoringRules = RULES) -> str:
    code = classify_cells(np.array([od]), np.array([comp]), np.array([lateral]), rules, criteria)
    return CELL_CLASSES[int(code[0])]


# ---------------------------------------------------------------- ScoringRules


def test_defaults_are_the_documented_ones() -> None:
    r = ScoringRules()
    assert (r.faint_od, r.moderate_od, r.intense_od) == (0.10, 0.28, 0.55)
    assert (r.complete_fraction, r.min_stained_fraction) == (0.90, 0.10)
    assert (r.breast_percent, r.gastric_percent) == (10.0, 10.0)
    assert r.intense_complete_counts_toward_2plus is True
    assert r.faint_complete_class == "1+"
    assert (r.ultralow_min_percent, r.unusual_min_percent) == (1.0, 1.0)
    assert (r.cluster_min_cells, r.cluster_link_um) == (5, 20.0)


def test_every_field_is_described() -> None:
    for name, info in ScoringRules.model_fields.items():
        assert info.description, name


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"faint_od": 0.3}, id="faint-equals-moderate"),
        pytest.param({"moderate_od": 0.7}, id="moderate-above-intense"),
        pytest.param({"intense_od": 0.2}, id="intense-below-moderate"),
        pytest.param({"faint_od": 0.0}, id="faint-zero"),
        pytest.param({"complete_fraction": 1.1}, id="complete-above-1"),
        pytest.param({"min_stained_fraction": -0.1}, id="stained-negative"),
        pytest.param({"min_stained_fraction": 0.95}, id="stained-above-complete"),
        pytest.param({"breast_percent": 101.0}, id="percent-above-100"),
        pytest.param({"ultralow_min_percent": -1.0}, id="ultralow-negative"),
        pytest.param({"intense_od": float("nan")}, id="nan"),
        pytest.param({"intense_od": float("inf")}, id="inf"),
        pytest.param({"cluster_min_cells": 0}, id="cluster-zero"),
        pytest.param({"cluster_link_um": 0.0}, id="link-zero"),
        pytest.param({"faint_complete_class": "3+"}, id="faint-complete-3plus"),
        pytest.param({"not_a_rule": 1}, id="extra-field"),
    ],
)
def test_invalid_rules_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        ScoringRules(**kwargs)


def test_assignment_is_validated() -> None:
    r = ScoringRules()
    with pytest.raises(ValidationError):
        r.moderate_od = 0.05


def test_rules_round_trip_through_json() -> None:
    r = ScoringRules(faint_complete_class="2+", breast_percent=12.5)
    assert ScoringRules.model_validate_json(r.model_dump_json()) == r


# ---------------------------------------------------------------- per cell


@pytest.mark.parametrize(
    "od, expected",
    [
        pytest.param(-0.05, Intensity.NONE, id="negative-od"),
        pytest.param(0.0999, Intensity.NONE, id="below-faint"),
        pytest.param(0.10, Intensity.FAINT, id="at-faint"),
        pytest.param(0.2799, Intensity.FAINT, id="below-moderate"),
        pytest.param(0.28, Intensity.MODERATE, id="at-moderate"),
        pytest.param(0.55, Intensity.INTENSE, id="at-intense"),
        pytest.param(2.5, Intensity.INTENSE, id="very-dark"),
    ],
)
def test_intensity_class(od: float, expected: Intensity) -> None:
    out = intensity_class(np.array([od]), RULES)
    assert out.dtype == np.int8
    assert out[0] == expected


# (od, completeness, lateral) -> class; 0.05 none, 0.2 faint, 0.4 moderate, 0.8 intense.
BREAST_CELLS = [
    ("none", 0.05, 1.0, False, "0"),
    ("faint-incomplete", 0.2, 0.5, False, "1+"),
    ("faint-complete", 0.2, 1.0, False, "1+"),
    ("faint-lateral", 0.2, 0.5, True, "1+"),
    ("moderate-complete", 0.4, 1.0, False, "2+"),
    ("moderate-incomplete-lateral", 0.4, 0.5, True, "2+"),
    ("moderate-incomplete-scattered", 0.4, 0.5, False, "1+"),
    ("intense-complete", 0.8, 1.0, False, "3+"),
    ("intense-complete-at-0.90", 0.8, 0.90, False, "3+"),
    ("intense-at-0.8999", 0.8, 0.8999, False, "2+"),
    ("intense-incomplete-scattered", 0.8, 0.5, False, "2+"),
    ("intense-incomplete-lateral", 0.8, 0.5, True, "2+"),
    ("intense-speck", 0.8, 0.05, False, "0"),
    ("intense-at-stained-floor", 0.8, 0.10, False, "2+"),
]
GASTRIC_CELLS = [
    ("none", 0.05, 1.0, True, "0"),
    ("faint-incomplete", 0.2, 0.5, False, "1+"),
    ("faint-complete", 0.2, 1.0, False, "1+"),
    ("faint-lateral", 0.2, 0.5, True, "1+"),
    ("moderate-complete", 0.4, 1.0, False, "2+"),
    ("moderate-lateral", 0.4, 0.5, True, "2+"),
    ("moderate-partial", 0.4, 0.5, False, "1+"),
    ("intense-complete", 0.8, 1.0, False, "3+"),
    ("intense-lateral", 0.8, 0.5, True, "3+"),
    ("intense-partial", 0.8, 0.5, False, "1+"),
    ("intense-speck", 0.8, 0.05, True, "0"),
]


@pytest.mark.parametrize("od, comp, lateral, expected", [c[1:] for c in BREAST_CELLS], ids=[c[0] for c in BREAST_CELLS])
def test_breast_cell_classes(od: float, comp: float, lateral: bool, expected: str) -> None:
    assert cell_class(od, comp, lateral, "breast") == expected


@pytest.mark.parametrize("criteria", ["gastric-resection", "gastric-biopsy"])
@pytest.mark.parametrize(
    "od, comp, lateral, expected", [c[1:] for c in GASTRIC_CELLS], ids=[c[0] for c in GASTRIC_CELLS]
)
def test_gastric_cell_classes(od: float, comp: float, lateral: bool, expected: str, criteria: str) -> None:
    assert cell_class(od, comp, lateral, criteria) == expected


def test_classify_cells_is_vectorised_and_broadcasts() -> None:
    od = np.array([0.05, 0.2, 0.4, 0.8])
    out = classify_cells(od, np.ones(4), False, RULES, Criteria.BREAST)
    assert out.dtype == np.int8
    assert out.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "od, comp, message",
    [
        pytest.param([np.nan], [1.0], "intensity_od", id="nan-od"),
        pytest.param([0.5], [1.2], "completeness", id="completeness-above-1"),
        pytest.param([0.5], [np.nan], "completeness", id="nan-completeness"),
    ],
)
def test_classify_cells_rejects_bad_measurements(od: list, comp: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        classify_cells(np.array(od), np.array(comp), np.array([False]), RULES, "breast")


def test_unknown_criteria_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown scoring criteria 'lung'"):
        classify_cells(np.array([0.5]), np.array([1.0]), np.array([False]), RULES, "lung")
    with pytest.raises(ValueError, match="unknown scoring criteria"):
        score_slide(cells(n3=1), "lung", RULES)


# ---------------------------------------------------------------- breast slide boundaries


@pytest.mark.parametrize(
    "counts, score, category",
    [
        pytest.param({"n3": 101}, "3+", "HER2-positive", id="3+-10.1%"),
        pytest.param({"n3": 100}, "2+", "equivocal", id="3+-exactly-10%-is-2+-unusual"),
        pytest.param({"n2": 101}, "2+", "equivocal", id="2+-10.1%"),
        pytest.param({"n2": 100}, "0", "HER2-ultralow", id="2+-exactly-10%-is-not-2+"),
        pytest.param({"n3": 5, "n2": 96}, "2+", "equivocal", id="2+-cumulative-with-3+"),
        pytest.param({"n1": 101}, "1+", "HER2-low", id="1+-10.1%"),
        pytest.param({"n1": 100}, "0", "HER2-ultralow", id="1+-exactly-10%-is-0"),
        pytest.param({"n1": 51, "n2": 50}, "1+", "HER2-low", id="1+-cumulative-with-2+"),
        pytest.param({"n3": 10}, "2+", "equivocal", id="unusual-3+-at-1%"),
        pytest.param({"n3": 9}, "0", "HER2-null", id="unusual-3+-0.9%"),
        pytest.param({"n1": 10}, "0", "HER2-ultralow", id="ultralow-at-1%-floor"),
        pytest.param({"n1": 9}, "0", "HER2-null", id="null-below-floor"),
        pytest.param({}, "0", "HER2-null", id="no-staining"),
    ],
)
def test_breast_boundaries(counts: dict, score: str, category: str) -> None:
    s = score_slide(cells(**counts), "breast", RULES)
    assert (s.score, s.category) == (score, category)
    assert s.status == {"0": "negative", "1+": "negative", "2+": "equivocal", "3+": "positive"}[score]
    assert s.criteria == "breast" and s.total == 1000


def test_exact_rational_comparison_not_float() -> None:
    """101/1000*100 is 10.100000000000001 in floats; exactly 10.1% must not exceed 10.1%."""
    assert 101 / 1000 * 100 > 10.1  # the float trap this guards against
    r = ScoringRules(breast_percent=10.1)
    assert score_slide(cells(n3=101), "breast", r).score != "3+"
    assert score_slide(cells(n3=102), "breast", r).score == "3+"


def test_tiny_excess_over_ten_percent_counts() -> None:
    total = 10_000_000
    assert score_slide(cells(n3=1_000_001, total=total), "breast", RULES).score == "3+"
    s = score_slide(cells(n3=1_000_000, total=total), "breast", RULES)
    assert s.score == "2+"
    assert "10.0% (1000000 of 10000000 cells); rule is > 10%" in s.reasons[0]


# ---------------------------------------------------------------- gastric resection


@pytest.mark.parametrize(
    "counts, score, category",
    [
        pytest.param({"n3": 100}, "3+", "HER2-positive", id="3+-exactly-10%"),
        pytest.param({"n3": 99}, "0", "HER2-negative", id="3+-9.9%"),
        pytest.param({"n3": 99, "n2": 1}, "2+", "equivocal", id="2+-cumulative-10%"),
        pytest.param({"n2": 100}, "2+", "equivocal", id="2+-exactly-10%"),
        pytest.param({"n2": 99}, "0", "HER2-negative", id="2+-9.9%"),
        pytest.param({"n1": 100}, "1+", "HER2-negative", id="1+-exactly-10%"),
        pytest.param({"n1": 50, "n3": 50}, "1+", "HER2-negative", id="1+-cumulative"),
        pytest.param({"n1": 99}, "0", "HER2-negative", id="1+-9.9%"),
    ],
)
def test_gastric_resection_boundaries(counts: dict, score: str, category: str) -> None:
    s = score_slide(cells(**counts), Criteria.GASTRIC_RESECTION, RULES)
    assert (s.score, s.category, s.criteria) == (score, category, "gastric-resection")


# ---------------------------------------------------------------- gastric biopsy clusters


@pytest.mark.parametrize(
    "classes, xy, score",
    [
        pytest.param([3] * 5, line(5), "3+", id="5-cohesive-3+"),
        pytest.param([3] * 4, line(4), "0", id="4-cohesive-3+"),
        pytest.param([3] * 5, line(5, spacing_um=100.0), "0", id="5-not-cohesive"),
        pytest.param([2] * 5, line(5), "2+", id="5-cohesive-2+"),
        pytest.param([3, 3, 2, 2, 2], line(5), "2+", id="mixed-3+-2+-cluster-is-2+"),
        pytest.param([1, 3, 3, 3, 3], line(5), "1+", id="mixed-1+-3+"),
        pytest.param([3, 3, 0, 3, 3, 3], line(6), "0", id="unstained-cell-breaks-cohesion"),
        pytest.param([3] * 5, line(5, spacing_um=20.0), "3+", id="link-exactly-20um"),
        pytest.param([3] * 5, line(5, spacing_um=20.01), "0", id="link-20.01um"),
    ],
)
def test_gastric_biopsy_clusters(classes: list, xy: np.ndarray, score: str) -> None:
    s = score_slide(np.array(classes), "gastric-biopsy", RULES, xy_um=xy)
    assert s.score == score


def test_biopsy_cluster_decides_regardless_of_percentage() -> None:
    """5 cohesive 3+ cells among 2000 unstained ones (0.25%) still make a 3+ biopsy."""
    grid = np.stack(np.meshgrid(np.arange(40), np.arange(50)), -1).reshape(-1, 2) * 15.0
    xy = np.vstack([grid, line(5, y=10_000.0)])
    classes = np.r_[np.zeros(len(grid), dtype=np.int8), np.full(5, 3, dtype=np.int8)]
    s = score_slide(classes, "gastric-biopsy", RULES, xy_um=xy)
    assert (s.score, s.category) == ("3+", "HER2-positive")
    assert "has 5 cells" in s.reasons[0]
    # ... and scattered 3+ cells at 20% without a cluster do not.
    scattered = np.r_[np.zeros(20, dtype=np.int8), np.full(5, 3, dtype=np.int8)]
    xy2 = np.vstack([line(20, y=0.0), line(5, spacing_um=100.0, y=500.0)])
    assert score_slide(scattered, "gastric-biopsy", RULES, xy_um=xy2).score == "0"


def test_largest_cluster_sizes_per_class() -> None:
    classes = np.array([0, 1, 2, 3, 3, 0, 3])
    sizes = largest_cluster_sizes(line(7), classes, 20.0)
    assert sizes.tolist() == [7, 4, 3, 2]


def test_biopsy_needs_coordinates() -> None:
    with pytest.raises(ValueError, match="xy_um"):
        score_slide(cells(n3=5, total=5), "gastric-biopsy", RULES)
    with pytest.raises(ValueError, match="shape"):
        score_slide(cells(n3=5, total=5), "gastric-biopsy", RULES, xy_um=line(4))


# ---------------------------------------------------------------- open choices (flip each)


def test_choice_intense_complete_counts_toward_2plus() -> None:
    counts = cells(n3=5, n2=96)  # 0.5% 3+ (below the unusual floor) + 9.6% 2+ = 10.1%
    assert score_slide(counts, "breast", RULES).score == "2+"
    off = ScoringRules(intense_complete_counts_toward_2plus=False)
    assert score_slide(counts, "breast", off).score == "1+"


def test_choice_faint_complete_class() -> None:
    as_2 = ScoringRules(faint_complete_class="2+")
    assert cell_class(0.2, 1.0, False, "breast") == "1+"
    assert cell_class(0.2, 1.0, False, "breast", as_2) == "2+"
    assert cell_class(0.2, 0.5, False, "breast", as_2) == "1+"  # only complete faint cells move
    # gastric 1+ is "faint ... reactivity" whatever its extent: the breast choice does not apply
    assert cell_class(0.2, 1.0, False, "gastric-resection", as_2) == "1+"
    od, comp = np.full(1000, 0.2), np.r_[np.ones(101), np.zeros(899)]
    for rules, expected in ((RULES, "1+"), (as_2, "2+")):
        classes = classify_cells(od, comp, False, rules, "breast")
        assert score_slide(classes, "breast", rules).score == expected


@pytest.mark.parametrize(
    "floor, n1, category",
    [
        pytest.param(1.0, 10, "HER2-ultralow", id="default-at-floor"),
        pytest.param(1.0, 9, "HER2-null", id="default-below-floor"),
        pytest.param(0.5, 5, "HER2-ultralow", id="lower-floor"),
        pytest.param(1.0, 5, "HER2-null", id="default-same-slide"),
        pytest.param(0.0, 1, "HER2-ultralow", id="literal-any-staining"),
        pytest.param(0.0, 0, "HER2-null", id="literal-no-staining"),
        pytest.param(5.0, 49, "HER2-null", id="higher-floor"),
    ],
)
def test_choice_ultralow_min_percent(floor: float, n1: int, category: str) -> None:
    s = score_slide(cells(n1=n1), "breast", ScoringRules(ultralow_min_percent=floor))
    assert (s.score, s.category) == ("0", category)


def test_choice_unusual_min_percent() -> None:
    one_cell = cells(n3=1)
    assert score_slide(one_cell, "breast", RULES).score == "0"
    assert score_slide(one_cell, "breast", ScoringRules(unusual_min_percent=0.0)).score == "2+"
    assert score_slide(cells(n3=9), "breast", ScoringRules(unusual_min_percent=0.5)).score == "2+"
    # p3 > 0 is always required, even with a zero floor
    assert score_slide(cells(n1=5), "breast", ScoringRules(unusual_min_percent=0.0)).score == "0"


def test_choice_min_stained_fraction() -> None:
    assert cell_class(0.8, 0.05, False, "breast") == "0"
    assert cell_class(0.8, 0.05, False, "breast", ScoringRules(min_stained_fraction=0.0)) == "2+"


def test_choice_complete_fraction() -> None:
    assert cell_class(0.8, 0.85, False, "breast") == "2+"
    assert cell_class(0.8, 0.85, False, "breast", ScoringRules(complete_fraction=0.8)) == "3+"


def test_choice_od_thresholds() -> None:
    assert cell_class(0.5, 1.0, False, "breast") == "2+"
    assert cell_class(0.5, 1.0, False, "breast", ScoringRules(intense_od=0.5)) == "3+"
    assert cell_class(0.08, 1.0, False, "breast", ScoringRules(faint_od=0.05)) == "1+"


def test_choice_breast_and_gastric_percent() -> None:
    assert score_slide(cells(n3=150), "breast", ScoringRules(breast_percent=20.0)).score == "2+"
    assert score_slide(cells(n3=100), "gastric-resection", ScoringRules(gastric_percent=15.0)).score == "0"
    assert score_slide(cells(n3=150), "gastric-resection", ScoringRules(gastric_percent=15.0)).score == "3+"


def test_choice_cluster_min_cells_and_link() -> None:
    four = np.full(4, 3, dtype=np.int8)
    assert score_slide(four, "gastric-biopsy", RULES, xy_um=line(4)).score == "0"
    assert score_slide(four, "gastric-biopsy", ScoringRules(cluster_min_cells=4), xy_um=line(4)).score == "3+"
    five = np.full(5, 3, dtype=np.int8)
    assert score_slide(five, "gastric-biopsy", ScoringRules(cluster_link_um=14.0), xy_um=line(5)).score == "0"
    assert score_slide(five, "gastric-biopsy", RULES, xy_um=line(5, spacing_um=100.0)).score == "0"
    assert score_slide(five, "gastric-biopsy", ScoringRules(cluster_link_um=100.0), xy_um=line(5, 100.0)).score == "3+"


# ---------------------------------------------------------------- inputs and outputs


def test_empty_slide_raises() -> None:
    for criteria in Criteria:
        with pytest.raises(ValueError, match="no tumour cells to score"):
            score_slide(np.array([], dtype=np.int8), criteria, RULES, xy_um=np.empty((0, 2)))


def test_labels_are_accepted_like_codes() -> None:
    codes = cells(n3=150, n2=20, n1=30)
    labels = np.array(CELL_CLASSES)[codes]
    assert score_slide(labels, "breast", RULES) == score_slide(codes, "breast", RULES)
    assert score_slide(list(labels), "breast", RULES).score == "3+"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(np.array([0, 4]), id="code-4"),
        pytest.param(np.array([-1, 0]), id="code-negative"),
        pytest.param(np.array(["3+", "4+"]), id="label-4+"),
        pytest.param(np.array([0.0, 3.0]), id="floats"),
        pytest.param(np.zeros((2, 2), dtype=int), id="2d"),
    ],
)
def test_bad_classes_raise(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        score_slide(bad, "breast", RULES)


def test_slide_score_fields_and_dict() -> None:
    s = score_slide(cells(n3=120, n2=30, n1=50), "breast", RULES)
    assert isinstance(s, SlideScore)
    d = s.to_dict()
    assert d == {
        "score": "3+",
        "status": "positive",
        "category": "HER2-positive",
        "total": 1000,
        "percent": {"0": 80.0, "1+": 5.0, "2+": 3.0, "3+": 12.0},
        "criteria": "breast",
        "reasons": s.reasons,
    }
    assert list(d["percent"]) == list(CELL_CLASSES)
    assert s.reasons == ["3+ met: intense complete membrane staining in 12.0% (120 of 1000 cells); rule is > 10%"]
    d["reasons"].append("x")  # the dict is a copy
    assert len(s.reasons) == 1


def test_reasons_name_every_rule_checked() -> None:
    s = score_slide(cells(n1=10), "breast", RULES)
    assert [r.split(":")[0] for r in s.reasons] == ["3+ not met", "2+ not met", "1+ not met", "HER2-ultralow"]
    assert "1.0% (10 of 1000 cells)" in s.reasons[-1]
