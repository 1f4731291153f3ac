"""The real nuclei sets as IHC-like samples (her2slide.datasets.nuclei)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nuclei_fixtures import disc_labels, write_fake_nuclei_set

from her2slide.datasets.nuclei import (VALIDATION, IhcLikeRanges, estimate_mpp, ihc_like_sample, nuclei_index,
                                       resample, split, tilted)
from her2slide.stain import StainModel, stain_amounts


def test_pixel_size_is_estimated_from_nucleus_size(tmp_path: Path) -> None:
    write_fake_nuclei_set(tmp_path)
    stated, estimated = nuclei_index(tmp_path)
    assert (stated.mpp, stated.mpp_source, stated.validation) == (0.25, "stated", True)
    # Nuclei twice as wide in pixels as the reference set's, whose pixels are 0.25 µm: 0.125 µm/px.
    assert estimated.mpp_source == "estimated" and estimated.mpp == pytest.approx(0.125, rel=0.03)
    assert not estimated.validation


def test_estimate_mpp_inverts_a_known_scale() -> None:
    labels = disc_labels(10.0)
    area_px = np.median(np.bincount(labels.ravel())[1:])
    assert estimate_mpp(labels, area_px * 0.3**2) == pytest.approx(0.3)


def test_resample_averages_the_image_and_samples_labels_at_the_same_centres() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, ::2] = 200  # columns alternate 200, 0: area averages give 100
    labels = np.arange(24, dtype=np.int32).reshape(4, 6)
    image, coarse = resample(rgb, labels, 0.25, 0.5)
    assert image.shape == (2, 3, 3) and np.all(image == 100)
    # Output pixel (i, j) covers input rows 2i..2i+1: its centre falls on input pixel 2i+1.
    assert np.array_equal(coarse, labels[1::2, 1::2])


def test_ihc_like_sample_keeps_the_real_nuclei_as_targets(tmp_path: Path) -> None:
    write_fake_nuclei_set(tmp_path)
    entry = nuclei_index(tmp_path)[0]
    image, labels = ihc_like_sample(entry, np.random.default_rng(1), work_mpp=0.5)
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8
    assert labels.dtype == np.int32 and set(np.unique(labels)) == set(np.unique(entry.load()[1]))
    again, _ = ihc_like_sample(entry, np.random.default_rng(1), work_mpp=0.5)
    assert np.array_equal(image, again)


def test_ihc_like_sample_without_membranes_has_no_dab_and_an_ihc_counterstain(tmp_path: Path) -> None:
    write_fake_nuclei_set(tmp_path)
    entry = nuclei_index(tmp_path)[0]
    plain = IhcLikeRanges(counterstain_od=(0.13, 0.13), membrane_probability=0.0, vector_jitter_deg=0.0,
                          noise_sd=(0.0, 0.0), jpeg_probability=0.0,
                          white_rgb=((240.0, 240.0), (240.0, 240.0), (245.0, 245.0)))
    image, labels = ihc_like_sample(entry, np.random.default_rng(2), work_mpp=0.5, ranges=plain)
    amounts = stain_amounts(image, StainModel(*StainModel.default().matrix[:2], np.array([240.0, 240.0, 245.0])))
    assert np.median(amounts[..., 0][labels > 0]) == pytest.approx(0.13, abs=0.02)
    assert np.percentile(amounts[..., 1], 99) < 0.03


def test_tilted_vectors_stay_within_the_jitter() -> None:
    rng = np.random.default_rng(3)
    v = StainModel.default().dab
    angles = [np.degrees(np.arccos(np.clip(tilted(v, 4.0, rng) @ v, -1, 1))) for _ in range(200)]
    assert max(angles) <= 4.0 + 1e-9 and max(angles) > 3.0


def test_shared_nuclei_index_and_fixed_validation_split(shared_data: Path) -> None:
    entries = nuclei_index(shared_data / "nuclei")
    assert len(entries) == 56
    train, validation = split(entries)
    assert sorted(e.name for e in validation) == sorted(n for names in VALIDATION.values() for n in names)
    assert not {e.name for e in train} & {e.name for e in validation}
    assert all(e.mpp_source == "estimated" for e in entries if e.folder == "dsb2018-tissue")
    assert all(0.05 < e.mpp < 0.6 for e in entries)
