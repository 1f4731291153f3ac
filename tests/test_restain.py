"""Restaining in optical-density space (her2slide.synth.restain): DAB out, DAB in, H&E to IHC."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from her2slide.stain import StainModel, compose_rgb, stain_amounts
from her2slide.synth.restain import (EOSIN_RGB_OD, MembraneStyle, add_dab, cell_partition, he_stain_model,
                                     he_to_ihc, membrane_dab, nuclear_haematoxylin, remove_dab)

MPP = 0.25
STRONG_COMPLETE = MembraneStyle(class_weights=(0, 0, 0, 1), complete_probability=1.0, haze_probability=0.0)


def _nuclei_grid(spacing_um: float = 16.0, radius_um: float = 3.5, side_px: int = 256) -> np.ndarray:
    """Round nuclei on a square grid, as instance labels at MPP."""
    labels = np.zeros((side_px, side_px), np.int32)
    step, r = spacing_um / MPP, radius_um / MPP
    for k, (cy, cx) in enumerate((y, x) for y in np.arange(step / 2, side_px, step) for x in np.arange(step / 2, side_px, step)):
        labels[disk((cy, cx), r, shape=labels.shape)] = k + 1
    return labels


def _haematoxylin_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    haem = np.clip(rng.gamma(2.0, 0.1, (96, 96)), 0, 0.9).astype(np.float32)
    return compose_rgb(haem, np.zeros_like(haem), StainModel.default()), haem


def test_remove_dab_leaves_a_haematoxylin_only_image_as_it_was() -> None:
    """Up to rounding: 8-bit levels, and scikit-image's haematoxylin vector, given to two decimals."""
    rgb, _ = _haematoxylin_image(np.random.default_rng(0))
    change = np.abs(remove_dab(rgb).astype(int) - rgb.astype(int))
    assert change.max() <= 2 and change.mean() < 0.5


def test_remove_dab_leaves_colours_off_the_stain_span_alone_unlike_the_literal_recipe() -> None:
    """A grey-blue pixel with no DAB lies off the H–E–DAB span (negative eosin): the literal
    recipe (rgb2hed clips negative amounts) adds eosin and haematoxylin to it; the default
    deconvolution returns it as it was."""
    rgb = np.tile(np.array([[[150, 160, 205]]], np.uint8), (8, 8, 1))
    assert np.abs(remove_dab(rgb).astype(int) - rgb).max() <= 1
    assert np.abs(remove_dab(rgb, literal=True).astype(int) - rgb).max() > 5


def test_remove_dab_against_the_glass_leaves_the_glass_as_it_was() -> None:
    """Against 255, a real core's glass tint (236, 233, 242) holds some "DAB", and taking it out
    brightens the glass, which moves the slide's white point; against the glass itself it stays."""
    glass = np.array([236.0, 233.0, 242.0])
    rgb = np.tile(glass.astype(np.uint8), (8, 8, 1))
    assert np.abs(remove_dab(rgb).astype(int) - rgb).max() > 2
    assert np.abs(remove_dab(rgb, white=glass).astype(int) - rgb).max() <= 1


def test_remove_dab_takes_the_brown_out_and_keeps_the_nuclei() -> None:
    rgb_h, haem = _haematoxylin_image(np.random.default_rng(1))
    dab = np.zeros_like(haem)
    dab[:, 40:48] = 0.6
    stained = compose_rgb(haem, dab, StainModel.default())
    cleaned = stain_amounts(remove_dab(stained), StainModel.default())
    assert cleaned[..., 1].max() < 0.03
    assert np.abs(cleaned[..., 0] - haem).max() < 0.05


def test_add_dab_is_read_back_by_the_pipelines_deconvolution() -> None:
    rgb, haem = _haematoxylin_image(np.random.default_rng(2))
    dab = np.random.default_rng(3).uniform(0, 1.0, haem.shape).astype(np.float32)
    amounts = stain_amounts(add_dab(rgb, dab), StainModel.default())
    assert np.abs(amounts[..., 1] - dab).max() < 0.03
    assert np.abs(amounts[..., 0] - haem).max() < 0.03


def test_add_dab_of_nothing_changes_nothing() -> None:
    rgb, haem = _haematoxylin_image(np.random.default_rng(4))
    assert np.array_equal(add_dab(rgb, np.zeros_like(haem)), rgb)


def test_cells_hold_their_nucleus_and_stop_at_the_radius() -> None:
    nuclei = _nuclei_grid(spacing_um=40.0, side_px=480)  # 3 x 3 nuclei far apart: cells are discs
    cells = cell_partition(nuclei, MPP, np.full(nuclei.max() + 1, 9.0), rim_um=1.0)
    assert np.all(cells[nuclei > 0] == nuclei[nuclei > 0])
    area_um2 = np.bincount(cells.ravel())[1:] * MPP**2
    assert len(area_um2) == 9 and np.allclose(area_um2, np.pi * 9.0**2, rtol=0.03)


def test_membrane_dab_lies_between_nuclei_not_on_them() -> None:
    nuclei = _nuclei_grid()
    dab = membrane_dab(nuclei, MPP, np.random.default_rng(5), STRONG_COMPLETE)
    step = int(16.0 / MPP)
    between = dab[step // 2, step: 256 - step // 2: step]  # on the shared boundaries between neighbours
    assert between.min() > 0.3
    assert dab[nuclei > 0].mean() < 0.05 * between.mean()


def test_membrane_dab_none_class_draws_nothing_and_haze_stays_off_nuclei() -> None:
    nuclei = _nuclei_grid()
    unstained = MembraneStyle(class_weights=(1, 0, 0, 0))
    assert not membrane_dab(nuclei, MPP, np.random.default_rng(6), unstained).any()
    hazy = MembraneStyle(class_weights=(0, 0, 0, 1), haze_probability=1.0, haze_fraction=(0.3, 0.3))
    dab = membrane_dab(nuclei, MPP, np.random.default_rng(7), hazy)
    core = nuclei > 0
    assert dab[core].mean() < 0.5 * np.median(dab[~core & (dab > 0)])


def test_partial_membranes_stain_less_of_the_outline() -> None:
    nuclei = _nuclei_grid()
    complete = membrane_dab(nuclei, MPP, np.random.default_rng(8), STRONG_COMPLETE)
    partial = MembraneStyle(class_weights=(0, 0, 0, 1), complete_probability=0.0, partial_completeness=(0.3, 0.3),
                            haze_probability=0.0)
    arcs = membrane_dab(nuclei, MPP, np.random.default_rng(8), partial)
    assert 0.2 < (arcs > 0.1).sum() / (complete > 0.1).sum() < 0.5


def test_membrane_dab_is_reproducible_from_the_generator() -> None:
    nuclei = _nuclei_grid()
    a = membrane_dab(nuclei, MPP, np.random.default_rng(9))
    b = membrane_dab(nuclei, MPP, np.random.default_rng(9))
    assert np.array_equal(a, b) and a.dtype == np.float32


def _he_image() -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin nuclei on eosin-stained tissue, with the reference H&E vectors."""
    nuclei = _nuclei_grid(spacing_um=12.0)
    rng = np.random.default_rng(10)
    haem = np.where(nuclei > 0, 0.6, 0.05) + rng.normal(0, 0.02, nuclei.shape)
    eosin = np.where(nuclei > 0, 0.1, 0.35) + rng.normal(0, 0.02, nuclei.shape)
    he = StainModel(StainModel.default().haematoxylin, EOSIN_RGB_OD / np.linalg.norm(EOSIN_RGB_OD), np.full(3, 255.0))
    return compose_rgb(np.clip(haem, 0, None), np.clip(eosin, 0, None), he), nuclei


def test_he_separation_finds_the_stains_it_was_made_with() -> None:
    rgb, _ = _he_image()
    model = he_stain_model(rgb)
    assert model.haematoxylin @ StainModel.default().haematoxylin > np.cos(np.radians(3))
    assert model.dab @ (EOSIN_RGB_OD / np.linalg.norm(EOSIN_RGB_OD)) > np.cos(np.radians(3))


def test_he_to_ihc_drops_eosin_and_scales_the_haematoxylin() -> None:
    rgb, nuclei = _he_image()
    white = (240.0, 238.0, 246.0)
    ihc = he_to_ihc(rgb, 0.25, white=white)
    amounts = stain_amounts(ihc, StainModel(*StainModel.default().matrix[:2], np.array(white)))
    assert nuclear_haematoxylin(amounts[..., 0], nuclei) == pytest.approx(0.25 * 0.6, abs=0.02)
    assert np.median(amounts[..., 1]) < 0.01  # no eosin left to read as DAB
    assert np.median(amounts[..., 0][nuclei == 0]) < 0.03
    glass = he_to_ihc(np.full((8, 8, 3), 255, np.uint8), 0.25, white=white)
    assert np.array_equal(glass[0, 0], np.array(white, np.uint8))
