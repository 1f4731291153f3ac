"""Tissue mask, suitability checks on synthetic thumbnails, and the tile plan's ownership rules."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from her2slide.errors import UnsuitableSlideError
from her2slide.slide import TissueMask, check_suitability, detect_tissue, plan_tiles
from her2slide.slide.tiles import MIN_MARGIN_UM

GLASS = np.array([236, 235, 243])
THUMB_MPP = 8.0


@dataclass
class FakeReader:
    """Just what plan_tiles and check_suitability read from a reader."""

    dimensions: tuple[int, int]
    mpp: float
    path: Path = Path("fake.svs")


def _thumbnail(shape: tuple[int, int], colour: tuple[int, int, int] | None, radius: float = 50.0,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Glass with sensor noise and, if ``colour``, a textured disc of tissue; returns (rgb, disc)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < radius**2
    rgb = np.broadcast_to(GLASS, (h, w, 3)).astype(float)
    if colour is not None:
        texture = rng.normal(1.0, 0.05, (h, w, 1))
        rgb[disc] = (np.array(colour) * texture)[disc]
    rgb += rng.normal(0, 1.5, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), disc


def test_tissue_disc_is_found() -> None:
    rgb, disc = _thumbnail((200, 300), (205, 200, 225))  # pale haematoxylin-stained tissue
    tissue = detect_tissue(rgb, THUMB_MPP, level0_mpp=0.25)
    iou = (tissue.mask & disc).sum() / (tissue.mask | disc).sum()
    assert iou > 0.95
    assert tissue.area_um2 == pytest.approx(np.pi * 50**2 * THUMB_MPP**2, rel=0.05)
    assert tissue.downsample == pytest.approx(32.0)
    # Level-0 boxes: the disc centre is tissue, a corner is glass.
    assert tissue.fraction_in(150 * 32 - 320, 100 * 32 - 320, 150 * 32 + 320, 100 * 32 + 320) == 1.0
    assert tissue.fraction_in(0, 0, 640, 640) == 0.0


def test_blank_glass_gives_an_empty_mask() -> None:
    rgb, _ = _thumbnail((200, 300), None)
    assert not detect_tissue(rgb, THUMB_MPP).mask.any()
    assert not detect_tissue(np.full((50, 60, 3), 255, np.uint8), THUMB_MPP).mask.any()


def test_small_specks_dropped_and_holes_filled() -> None:
    rgb, disc = _thumbnail((200, 300), (150, 120, 190))
    rgb[10:12, 10:12] = (120, 90, 160)  # 4 px = 256 µm²: dust
    rgb[98:102, 148:152] = GLASS  # 16 px = 1024 µm² hole inside the tissue
    mask = detect_tissue(rgb, THUMB_MPP).mask
    assert not mask[10:12, 10:12].any() and mask[98:102, 148:152].all()


@pytest.mark.parametrize("colour, reason", [
    ((150, 90, 60), None),  # DAB brown on haematoxylin: HER2 IHC
    ((120, 120, 200), None),  # haematoxylin only: HER2 0 IHC
    ((230, 120, 190), "looks like H&E (eosin counterstain), not HER2 IHC; not scored"),
    (None, "no tissue found"),
])
def test_check_suitability(colour: tuple[int, int, int] | None, reason: str | None) -> None:
    rgb, _ = _thumbnail((200, 300), colour)
    reader = FakeReader((300 * 32, 200 * 32), 0.25)
    if reason is None:
        check_suitability(reader, rgb, THUMB_MPP)
    else:
        with pytest.raises(UnsuitableSlideError, match=re.escape(reason)):
            check_suitability(reader, rgb, THUMB_MPP)


def test_dark_background_is_fluorescence() -> None:
    rgb = np.zeros((200, 300, 3), np.uint8)
    rgb[50:150, 100:200, 2] = 180  # DAPI nuclei
    with pytest.raises(UnsuitableSlideError, match="looks like a fluorescence image, not brightfield IHC"):
        check_suitability(FakeReader((9600, 6400), 0.25), rgb, THUMB_MPP)


def _disc_mask(reader: FakeReader, radius_frac: float = 0.3) -> TissueMask:
    w, h = reader.dimensions
    mw, mh = int(np.ceil(w * reader.mpp / THUMB_MPP)), int(np.ceil(h * reader.mpp / THUMB_MPP))
    yy, xx = np.mgrid[:mh, :mw]
    disc = (yy - mh / 2) ** 2 + (xx - mw / 2) ** 2 < (radius_frac * min(mw, mh)) ** 2
    return TissueMask(disc, THUMB_MPP, THUMB_MPP / reader.mpp)


# An awkward mpp, so tile steps in level-0 pixels are not integers.
READER = FakeReader((10_007, 7_013), 0.23)


def test_owned_boxes_partition_the_slide() -> None:
    full = TissueMask(np.ones((202, 288), bool), THUMB_MPP, THUMB_MPP / READER.mpp)
    plan = plan_tiles(READER, full, work_mpp=0.5, tile_px=1024)
    w, h = READER.dimensions
    assert len(plan) == 5 * 4 and plan.downsample == pytest.approx(0.5 / 0.23)
    assert sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in (t.owned for t in plan)) == w * h
    for a, b in itertools.combinations(plan, 2):
        ax0, ay0, ax1, ay1 = a.owned
        bx0, by0, bx1, by1 = b.owned
        assert min(ax1, bx1) <= max(ax0, bx0) or min(ay1, by1) <= max(ay0, by0)
    widths = {t.owned[2] - t.owned[0] for t in plan if t.owned[2] < w}
    assert widths <= {round(1024 * plan.downsample) + d for d in (-1, 0, 1)}


def test_read_boxes_contain_owned_boxes_with_margin() -> None:
    plan = plan_tiles(READER, _disc_mask(READER), margin_um=32.0)
    margin = int(np.ceil(32.0 / READER.mpp))
    w, h = READER.dimensions
    for t in plan:
        (ox0, oy0, ox1, oy1), (rx0, ry0, rx1, ry1) = t.owned, t.read
        assert (rx0, ry0, rx1, ry1) == (max(0, ox0 - margin), max(0, oy0 - margin),
                                        min(w, ox1 + margin), min(h, oy1 + margin))
        assert all(isinstance(v, int) for v in t.owned + t.read)


def test_every_point_in_tissue_tiles_has_one_owner() -> None:
    plan = plan_tiles(READER, _disc_mask(READER))
    assert 0 < len(plan) < 20  # the corners hold no tissue
    rng = np.random.default_rng(1)
    boxes = np.array([t.owned for t in plan])
    pick = boxes[rng.integers(len(boxes), size=10_000)]
    x = rng.uniform(pick[:, 0], pick[:, 2])
    y = rng.uniform(pick[:, 1], pick[:, 3])
    # Points exactly on tile edges too: the half-open boxes give those one owner as well.
    x[:100], y[:100] = pick[:100, 0], pick[:100, 1]
    owners = sum(t.owns(x, y).astype(int) for t in plan)
    assert (owners == 1).all()
    assert [t.index for t in plan] == list(range(len(plan)))


def test_tiles_without_enough_tissue_are_dropped() -> None:
    empty = np.zeros((202, 288), bool)
    assert len(plan_tiles(READER, TissueMask(empty, THUMB_MPP, THUMB_MPP / READER.mpp))) == 0
    # A tile is 512 µm = 64 mask pixels square. The mask's downsample is left at 1 (as from
    # detect_tissue without level0_mpp): plan_tiles takes the level-0 scale from the reader.
    speck, patch = empty.copy(), empty.copy()
    speck[5, 5] = True  # 1/4096 of a tile
    patch[100:108, 100:108] = True  # 64/4096 of a tile
    assert len(plan_tiles(READER, TissueMask(speck, THUMB_MPP, 1.0))) == 0
    assert len(plan_tiles(READER, TissueMask(speck, THUMB_MPP, 1.0), min_tissue_fraction=0.0)) == 1
    (tile,) = plan_tiles(READER, TissueMask(patch, THUMB_MPP, 1.0)).tiles
    assert tile.owns(104 * THUMB_MPP / READER.mpp, 104 * THUMB_MPP / READER.mpp)


def test_margin_must_exceed_the_largest_cell() -> None:
    assert MIN_MARGIN_UM == 30.0
    with pytest.raises(ValueError, match="margin"):
        plan_tiles(READER, _disc_mask(READER), margin_um=20.0)
    assert plan_tiles(READER, _disc_mask(READER), margin_um=MIN_MARGIN_UM).margin_um == MIN_MARGIN_UM
