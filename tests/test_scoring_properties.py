"""Property tests: more staining never lowers a score, less never raises it, cell order is irrelevant."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from her2slide.scoring import CELL_CLASSES, ScoringRules, classify_cells, score_slide

RANK = {label: i for i, label in enumerate(CELL_CLASSES)}
PERCENT_CRITERIA = ("breast", "gastric-resection")
SPACING_UM = 15.0

settings.register_profile("her2slide-scoring", deadline=None, max_examples=120)
settings.load_profile("her2slide-scoring")
fewer = settings(max_examples=50)  # biopsy examples build a neighbour graph: keep the suite fast

# The open choices, drawn; intense_complete_counts_toward_2plus stays True: with False, the
# breast score is not monotone (see test_exclusive_2plus_count_is_not_monotone).
rules_st = st.builds(
    ScoringRules,
    breast_percent=st.sampled_from([5.0, 10.0, 12.5, 30.0]),
    gastric_percent=st.sampled_from([5.0, 10.0, 12.5, 30.0]),
    unusual_min_percent=st.sampled_from([0.0, 0.5, 1.0, 5.0]),
    ultralow_min_percent=st.sampled_from([0.0, 1.0, 2.0]),
    faint_complete_class=st.sampled_from(["1+", "2+"]),
    cluster_min_cells=st.integers(1, 6),
)
classes_st = st.lists(st.integers(0, 3), min_size=1, max_size=300).map(lambda v: np.array(v, dtype=np.int8))


@st.composite
def biopsy_st(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Cells on a small 15 um lattice (so clusters form often), classes and centroids."""
    n = draw(st.integers(1, 80))
    classes = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.int8)
    xy = np.array(draw(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=n, max_size=n)))
    return classes, xy.astype(float) * SPACING_UM


def rank(classes: np.ndarray, criteria: str, rules: ScoringRules, xy: np.ndarray | None = None) -> int:
    return RANK[score_slide(classes, criteria, rules, xy_um=xy).score]


# ---------------------------------------------------------------- adding intense complete cells


@given(classes=classes_st, extra=st.integers(1, 200), rules=rules_st, criteria=st.sampled_from(PERCENT_CRITERIA))
def test_adding_3plus_cells_never_lowers_score(
    classes: np.ndarray, extra: int, rules: ScoringRules, criteria: str
) -> None:
    more = np.r_[classes, np.full(extra, 3, dtype=np.int8)]
    assert rank(more, criteria, rules) >= rank(classes, criteria, rules)


@fewer
@given(cells=biopsy_st(), added=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=20),
       rules=rules_st)
def test_adding_3plus_cells_never_lowers_biopsy_score(
    cells: tuple[np.ndarray, np.ndarray], added: list, rules: ScoringRules
) -> None:
    classes, xy = cells
    more_xy = np.vstack([xy, np.array(added, dtype=float) * SPACING_UM])
    more = np.r_[classes, np.full(len(added), 3, dtype=np.int8)]
    assert rank(more, "gastric-biopsy", rules, more_xy) >= rank(classes, "gastric-biopsy", rules, xy)


# ---------------------------------------------------------------- downgrading cells


@given(data=st.data(), classes=classes_st, rules=rules_st, criteria=st.sampled_from(PERCENT_CRITERIA))
def test_downgrading_cells_never_raises_score(
    data: st.DataObject, classes: np.ndarray, rules: ScoringRules, criteria: str
) -> None:
    drop = np.array(data.draw(st.lists(st.integers(0, 3), min_size=len(classes), max_size=len(classes))))
    less = np.maximum(classes - drop, 0).astype(np.int8)
    assert rank(less, criteria, rules) <= rank(classes, criteria, rules)


@fewer
@given(data=st.data(), cells=biopsy_st(), rules=rules_st)
def test_downgrading_cells_never_raises_biopsy_score(
    data: st.DataObject, cells: tuple[np.ndarray, np.ndarray], rules: ScoringRules
) -> None:
    classes, xy = cells
    drop = np.array(data.draw(st.lists(st.integers(0, 3), min_size=len(classes), max_size=len(classes))))
    less = np.maximum(classes - drop, 0).astype(np.int8)
    assert rank(less, "gastric-biopsy", rules, xy) <= rank(classes, "gastric-biopsy", rules, xy)


# ---------------------------------------------------------------- cell order


@fewer
@given(cells=biopsy_st(), seed=st.integers(0, 2**32 - 1), rules=rules_st,
       criteria=st.sampled_from(("breast", "gastric-resection", "gastric-biopsy")))
def test_score_is_invariant_to_cell_order(
    cells: tuple[np.ndarray, np.ndarray], seed: int, rules: ScoringRules, criteria: str
) -> None:
    classes, xy = cells
    order = np.random.default_rng(seed).permutation(len(classes))
    before = score_slide(classes, criteria, rules, xy_um=xy)
    after = score_slide(classes[order], criteria, rules, xy_um=xy[order])
    assert after == before


# ---------------------------------------------------------------- per cell: less stain, no higher class

measurement_st = st.tuples(
    st.floats(-0.1, 1.5, allow_nan=False),  # OD
    st.floats(0.0, 1.0, allow_nan=False),  # completeness
    st.booleans(),  # lateral
)


@given(a=measurement_st, b=measurement_st, rules=rules_st,
       criteria=st.sampled_from(("breast", "gastric-resection", "gastric-biopsy")))
def test_less_staining_never_raises_cell_class(a: tuple, b: tuple, rules: ScoringRules, criteria: str) -> None:
    """The cell with the lower OD, lower completeness and no-more-lateral pattern never scores higher."""
    weak = (min(a[0], b[0]), min(a[1], b[1]), a[2] and b[2])
    strong = (max(a[0], b[0]), max(a[1], b[1]), a[2] or b[2])
    od, comp, lat = (np.array(v) for v in zip(weak, strong))
    out = classify_cells(od, comp, lat, rules, criteria)
    assert out[0] <= out[1]


# ---------------------------------------------------------------- why the 2+ count is cumulative by default


def test_exclusive_2plus_count_is_not_monotone() -> None:
    """With intense_complete_counts_toward_2plus=False, more (or stronger) staining can lower a breast score."""
    exclusive = ScoringRules(intense_complete_counts_toward_2plus=False)
    base = np.repeat(np.arange(4, dtype=np.int8), [899, 0, 101, 0])  # 10.1% 2+: equivocal
    more = np.r_[base, np.full(10, 3, dtype=np.int8)]  # + 10 intense complete cells: 2+ now 10.0%, 3+ 0.99%
    assert score_slide(base, "breast", exclusive).score == "2+"
    assert score_slide(more, "breast", exclusive).score == "1+"
    assert score_slide(more, "breast", ScoringRules()).score == "2+"
    downgraded = np.repeat(np.arange(4, dtype=np.int8), [895, 0, 100, 5])
    upgraded = downgraded.copy()
    upgraded[-1] = 2  # one 3+ cell downgraded to 2+ raises the exclusive score from 1+ to 2+
    assert score_slide(downgraded, "breast", exclusive).score == "1+"
    assert score_slide(upgraded, "breast", exclusive).score == "2+"
