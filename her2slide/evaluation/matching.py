"""Detections matched to truth by position: one to one, within a radius, closest pairs first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


def match_points(true_xy: np.ndarray, pred_xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``true_xy``, into ``pred_xy``) of one-to-one matches within ``radius``,
    closest pairs first (greedy on sorted distances; ties in input order)."""
    if len(true_xy) == 0 or len(pred_xy) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    pairs = cKDTree(true_xy).sparse_distance_matrix(cKDTree(pred_xy), radius, output_type="ndarray")
    order = np.argsort(pairs["v"], kind="stable")
    used_t, used_p = np.zeros(len(true_xy), bool), np.zeros(len(pred_xy), bool)
    ti, pi = [], []
    for i, j in zip(pairs["i"][order], pairs["j"][order]):
        if not used_t[i] and not used_p[j]:
            used_t[i] = used_p[j] = True
            ti.append(i)
            pi.append(j)
    return np.array(ti, int), np.array(pi, int)


@dataclass(frozen=True)
class Detection:
    """Counts of one matching (or a pool of them) and the scores they give."""

    true: int
    found: int
    matched: int

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.true if self.true else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.matched / (self.true + self.found) if self.true + self.found else 0.0

    def __add__(self, other: Detection) -> Detection:
        return Detection(self.true + other.true, self.found + other.found, self.matched + other.matched)

    def to_dict(self) -> dict[str, float]:
        return {"true": self.true, "found": self.found, "matched": self.matched,
                "precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


def detection(true_xy: np.ndarray, pred_xy: np.ndarray, radius: float) -> Detection:
    """Match ``pred_xy`` to ``true_xy`` within ``radius`` and count."""
    matched, _ = match_points(true_xy, pred_xy, radius)
    return Detection(len(true_xy), len(pred_xy), len(matched))


def pooled(detections: list[Detection]) -> Detection:
    """All matchings' counts added: pooled precision, recall and F1."""
    return sum(detections, Detection(0, 0, 0))
