"""The slide rules on class counts, vectorised: many regions or simulated cores at once.

``score_slide`` reads one slide's cells and explains itself; the region grid (30 000
regions) and the biopsy simulation (10^4 cores) need the same percent rules on whole
arrays of counts, where a call per region would take ~1 ms each. Tests keep the two equal.
"""

from __future__ import annotations

import numpy as np

from .rules import Criteria, ScoringRules, parse_criteria
from .slide import exact_decimal


def exceeds_percent(n: np.ndarray, total: np.ndarray, percent: float, strict: bool) -> np.ndarray:
    """Exact ``100 n / total > percent`` (``>=`` when not strict), elementwise.

    Python integers (object arrays) keep the comparison exact whatever the threshold's
    decimal expansion, as ``score_slide`` compares it: 10 % is never 10.0000001 %.
    """
    thr = exact_decimal(percent)
    lhs = np.asarray(n, dtype=object) * (100 * thr.denominator)
    rhs = np.asarray(total, dtype=object) * thr.numerator
    return np.asarray(lhs > rhs if strict else lhs >= rhs, dtype=bool)


def score_counts(class_counts: np.ndarray, criteria: Criteria | str, rules: ScoringRules) -> np.ndarray:
    """Score code (0..3, int8) for class counts of shape (..., 4) (cells of class "0".."3+").

    Identical to ``score_slide(...).score`` for breast and gastric resection. Gastric biopsy
    needs cell positions for its cluster rule, which counts do not keep: here it uses the
    resection percentages (>= 10 % at each class). Rows with no cells get 0; callers mask them.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    total = counts.sum(axis=-1)
    at_least = np.cumsum(counts[..., ::-1], axis=-1)[..., ::-1]
    score = np.zeros(total.shape, dtype=np.int8)
    if parse_criteria(criteria) is Criteria.BREAST:
        bp = rules.breast_percent
        n2 = at_least[..., 2] if rules.intense_complete_counts_toward_2plus else counts[..., 2]
        n3 = counts[..., 3]
        unusual = (n3 > 0) & exceeds_percent(n3, total, rules.unusual_min_percent, strict=False)
        ladder = ((1, exceeds_percent(at_least[..., 1], total, bp, True)),
                  (2, exceeds_percent(n2, total, bp, True) | unusual),
                  (3, exceeds_percent(n3, total, bp, True)))
    else:
        gp = rules.gastric_percent
        ladder = tuple((k, exceeds_percent(at_least[..., k], total, gp, False)) for k in (1, 2, 3))
    for k, met in ladder:  # ascending: the highest class met wins, as the rules read top-down
        score[met] = k
    return score
