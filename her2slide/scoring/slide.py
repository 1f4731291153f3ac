"""Slide-level HER2 IHC score, status and category from per-cell classes.

Rules (see docs/scoring.md): breast ASCO/CAP 2018 (affirmed 2023), gastric resection
(">= 10% of tumour cells") and gastric biopsy ("a cluster of >= 5 cohesive tumour cells").
Percent rules compare integer counts with exact rational arithmetic, so that exactly 10%
is exactly 10% and float rounding never decides between 10% and 10.1%. Counts are
cumulative ("at least class k"), so stronger cells also count toward weaker categories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .clusters import largest_cluster_sizes
from .rules import CELL_CLASSES, Criteria, ScoringRules, parse_criteria

__all__ = ["SlideScore", "score_slide", "STATUS"]

#: Clinical status of each IHC score (2+ goes to ISH).
STATUS: dict[str, str] = {"0": "negative", "1+": "negative", "2+": "equivocal", "3+": "positive"}
_GASTRIC_CATEGORY = {"0": "HER2-negative", "1+": "HER2-negative", "2+": "equivocal", "3+": "HER2-positive"}
_BREAST_CATEGORY = {"1+": "HER2-low", "2+": "equivocal", "3+": "HER2-positive"}  # "0": null/ultralow


@dataclass(frozen=True)
class SlideScore:
    """A slide's HER2 IHC result and the reasons for it, as a pathologist would read them."""

    score: str
    status: str
    category: str
    total: int
    percent: dict[str, float]  # keys CELL_CLASSES, % of tumour cells in each class
    criteria: str
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (copies, so the result stays immutable)."""
        return {
            "score": self.score,
            "status": self.status,
            "category": self.category,
            "total": self.total,
            "percent": dict(self.percent),
            "criteria": self.criteria,
            "reasons": list(self.reasons),
        }


# ---------------------------------------------------------------- exact percentages


def exact_decimal(x: float) -> Fraction:
    """The decimal a person wrote (10.1 -> 101/10), not its binary approximation."""
    return Fraction(repr(float(x)))


def _pct(n: int, total: int) -> Fraction:
    return Fraction(100 * n, total)


def _num(x: float) -> str:
    return f"{x:g}"


def _pct_text(n: int, total: int, threshold: Fraction) -> str:
    """Percent with enough decimals that its rounding never seems to contradict the rule."""
    exact = _pct(n, total)
    for d in range(1, 7):
        text = f"{float(exact):.{d}f}"
        if (Fraction(text) == threshold) == (exact == threshold):
            break
    return f"{text}% ({n} of {total} cells)"


def _percent_rule(
    reasons: list[str], score: str, what: str, n: int, total: int, threshold: float, strict: bool
) -> bool:
    """Evaluate 'n of total > (or >=) threshold %' exactly and record the sentence."""
    thr = exact_decimal(threshold)
    pct = _pct(n, total)
    ok = pct > thr if strict else pct >= thr
    rule = ">" if strict else "≥"
    verdict = "met" if ok else "not met"
    reasons.append(f"{score} {verdict}: {what} in {_pct_text(n, total, thr)}; rule is {rule} {_num(threshold)}%")
    return ok


# ---------------------------------------------------------------- input


def class_codes(cell_classes: np.ndarray) -> np.ndarray:
    """Integer codes 0..3 from codes or from the labels "0", "1+", "2+", "3+" (as in cells.parquet)."""
    arr = np.asarray(cell_classes)
    if arr.ndim != 1:
        raise ValueError(f"cell_classes must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "USO":
        labels, inverse = np.unique(arr.astype(str), return_inverse=True)
        unknown = [s for s in labels if s not in CELL_CLASSES]
        if unknown:
            raise ValueError(f"unknown cell class labels {unknown}; expected {list(CELL_CLASSES)}")
        lut = np.array([CELL_CLASSES.index(s) for s in labels], dtype=np.int8)
        return lut[inverse.reshape(-1)]
    if arr.dtype.kind not in "iu":
        raise ValueError(f"cell_classes must hold integer codes 0..3 or class labels, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 3):
        raise ValueError("cell class codes must lie in 0..3")
    return arr.astype(np.int8, copy=False)


# ---------------------------------------------------------------- rule sets


def _breast(counts: np.ndarray, at_least: np.ndarray, total: int, rules: ScoringRules, reasons: list[str]) -> str:
    bp = rules.breast_percent
    if _percent_rule(reasons, "3+", "intense complete membrane staining", int(counts[3]), total, bp, True):
        return "3+"
    if rules.intense_complete_counts_toward_2plus:
        n2, what2 = int(at_least[2]), "weak-moderate complete, intense incomplete or stronger staining (2+ or 3+ cells)"
    else:
        n2, what2 = int(counts[2]), "weak-moderate complete or intense incomplete staining (2+ cells, 3+ not counted)"
    if _percent_rule(reasons, "2+", what2, n2, total, bp, True):
        return "2+"
    n3 = int(counts[3])
    if n3 > 0 and _percent_rule(
        reasons,
        "2+",
        f"intense complete staining (3+ cells; present but ≤ {_num(bp)}%, the unusual 2+ pattern)",
        n3,
        total,
        rules.unusual_min_percent,
        False,
    ):
        return "2+"
    if _percent_rule(reasons, "1+", "any membrane staining (1+ or stronger)", int(at_least[1]), total, bp, True):
        return "1+"
    return "0"


def _breast_zero_category(at_least: np.ndarray, total: int, rules: ScoringRules, reasons: list[str]) -> str:
    n = int(at_least[1])
    if n == 0:
        reasons.append("HER2-null: no tumour cell shows membrane staining")
        return "HER2-null"
    thr = exact_decimal(rules.ultralow_min_percent)
    ok = _pct(n, total) >= thr
    label = "HER2-ultralow" if ok else "HER2-null"
    rule = "≥" if ok else "<"
    reasons.append(
        f"{label}: membrane staining of any kind (1+ or stronger cells) in {_pct_text(n, total, thr)}, "
        f"{rule} the {_num(rules.ultralow_min_percent)}% floor for ultralow"
    )
    return label


def _gastric_resection(at_least: np.ndarray, total: int, rules: ScoringRules, reasons: list[str]) -> str:
    gp = rules.gastric_percent
    ladder = (
        ("3+", 3, "intense complete, basolateral or lateral staining"),
        ("2+", 2, "weak-moderate or stronger complete, basolateral or lateral staining"),
        ("1+", 1, "any membrane staining (1+ or stronger)"),
    )
    for score, k, what in ladder:
        if _percent_rule(reasons, score, what, int(at_least[k]), total, gp, False):
            return score
    return "0"


def _gastric_biopsy(classes: np.ndarray, xy_um: np.ndarray, rules: ScoringRules, reasons: list[str]) -> str:
    xy = np.asarray(xy_um)
    if xy.shape != (len(classes), 2):
        raise ValueError(f"xy_um must have shape ({len(classes)}, 2) to match the cells, got {xy.shape}")
    sizes = largest_cluster_sizes(xy, classes, rules.cluster_link_um)
    need = rules.cluster_min_cells
    for score, k in (("3+", 3), ("2+", 2), ("1+", 1)):
        ok = int(sizes[k]) >= need
        verdict = "met" if ok else "not met"
        reasons.append(
            f"{score} {verdict}: largest cohesive cluster of cells scoring {CELL_CLASSES[k]} or more has "
            f"{int(sizes[k])} cells; rule is ≥ {need} cells, neighbours ≤ {_num(rules.cluster_link_um)} µm apart"
        )
        if ok:
            return score
    return "0"


# ---------------------------------------------------------------- entry point


def score_slide(
    cell_classes: np.ndarray,
    criteria: Criteria | str,
    rules: ScoringRules,
    xy_um: np.ndarray | None = None,
) -> SlideScore:
    """Score a slide from its tumour cells' classes (codes 0..3 or labels "0".."3+").

    ``xy_um`` (N, 2) centroids in µm are required for gastric biopsies, ignored otherwise.
    An empty slide raises ValueError: no cells is "not scorable", never HER2 0.
    """
    crit = parse_criteria(criteria)
    classes = class_codes(cell_classes)
    total = int(classes.size)
    if total == 0:
        raise ValueError("no tumour cells to score")
    if crit is Criteria.GASTRIC_BIOPSY and xy_um is None:
        raise ValueError("gastric-biopsy scoring needs cell centroids (xy_um) to find cohesive clusters")

    counts = np.bincount(classes, minlength=4).astype(np.int64)
    at_least = np.cumsum(counts[::-1])[::-1]
    percent = {label: 100.0 * int(counts[k]) / total for k, label in enumerate(CELL_CLASSES)}
    reasons: list[str] = []

    if crit is Criteria.BREAST:
        score = _breast(counts, at_least, total, rules, reasons)
        category = _BREAST_CATEGORY.get(score) or _breast_zero_category(at_least, total, rules, reasons)
    else:
        if crit is Criteria.GASTRIC_RESECTION:
            score = _gastric_resection(at_least, total, rules, reasons)
        else:
            score = _gastric_biopsy(classes, xy_um, rules, reasons)
        category = _GASTRIC_CATEGORY[score]

    return SlideScore(
        score=score,
        status=STATUS[score],
        category=category,
        total=total,
        percent=percent,
        criteria=crit.value,
        reasons=reasons,
    )
