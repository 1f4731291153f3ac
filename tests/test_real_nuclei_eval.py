"""Nucleus detection evaluation on rendered real nuclei (her2slide.evaluation): matching and the scoring path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nuclei_fixtures import disc_labels, write_nuclei_image
from PIL import Image

from her2slide.config import Settings
from her2slide.datasets.nuclei import NucleiImage
from her2slide.evaluation.matching import Detection, detection, match_points, pooled
from her2slide.evaluation.nuclei import MATCH_UM, detect_field, render_field, true_centroids
from her2slide.run.engine import ClassicalSegmenter


def test_matching_is_one_to_one_and_closest_first() -> None:
    truth = np.array([[0.0, 0.0], [10.0, 0.0]])
    found = np.array([[1.0, 0.0], [0.5, 0.0], [30.0, 0.0]])
    t, p = match_points(truth, found, radius=3.0)
    assert list(zip(t, p)) == [(0, 1)]  # the closer detection takes the nucleus; the other is unmatched
    score = detection(truth, found, 3.0)
    assert (score.matched, score.precision, score.recall) == (1, 1 / 3, 0.5)
    assert score.f1 == pytest.approx(2 / 5)


def test_pooled_scores_add_counts_not_ratios() -> None:
    total = pooled([Detection(10, 10, 10), Detection(90, 10, 0)])
    assert (total.true, total.found, total.matched) == (100, 20, 10)
    assert total.f1 == pytest.approx(20 / 120)


def test_rendered_nuclei_come_back_through_the_scoring_path(tmp_path: Path) -> None:
    """Round nuclei 7 µm across, rendered IHC-like with and without membranes, written as JPEG and
    read at --mpp 0.25: the classical segmenter finds them where they are."""
    labels = disc_labels(14.0, shape=(480, 480), step=52)
    write_nuclei_image(tmp_path, "monuseg-train", "field", labels)
    entry = NucleiImage("monuseg-train", "field", "test", 0.25, "stated", tmp_path)
    truth = true_centroids(labels) * entry.mpp
    for membranes in (False, True):
        rgb, _ = render_field(entry, counterstain_od=0.13, membranes=membranes, seed=0)
        path = tmp_path / f"field_{membranes}.jpg"
        Image.fromarray(rgb).save(path, quality=90)
        found = detect_field(path, entry.mpp, Settings(), ClassicalSegmenter(Settings())).nuclei_xy * entry.mpp
        assert detection(truth, found, MATCH_UM).f1 >= 0.95
        t, p = match_points(truth, found, MATCH_UM)
        assert np.abs(truth[t] - found[p]).mean() < 0.5  # µm: level-0 coordinates line up
