"""Star-convex outlines: area close to the label's, always a valid simple polygon."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from skimage.draw import disk, ellipse

from her2slide.cells import label_centroids
from her2slide.cells.outlines import star_outlines


def _outlines_for(labels: np.ndarray, n_rays: int = 16) -> tuple[np.ndarray, np.ndarray]:
    n = int(labels.max())
    area, cy, cx = label_centroids(labels, n)
    return star_outlines(labels, cx[1:], cy[1:], n_rays=n_rays), area[1:]


def _polygons(outlines: np.ndarray) -> np.ndarray:
    return shapely.polygons(np.concatenate([outlines, outlines[:, :1]], axis=1))


@pytest.mark.parametrize("radius", [2, 3, 5, 8, 12, 20])
def test_disc_area_and_validity(radius: int) -> None:
    labels = np.zeros((60, 60), dtype=np.int32)
    labels[disk((30.3, 29.6), radius, shape=labels.shape)] = 1
    outlines, area = _outlines_for(labels)
    polygon = _polygons(outlines)
    assert outlines.shape == (1, 16, 2)
    assert shapely.is_valid(polygon).all()
    assert shapely.area(polygon)[0] == pytest.approx(area[0], rel=0.10)


@pytest.mark.parametrize("axes,rotation", [((12, 6), 0.0), ((20, 8), 0.4), ((6, 3), 1.2), ((15, 5), -0.7)])
def test_ellipse_area_and_validity(axes: tuple[int, int], rotation: float) -> None:
    labels = np.zeros((70, 70), dtype=np.int32)
    labels[ellipse(35.2, 34.7, axes[1], axes[0], shape=labels.shape, rotation=rotation)] = 1
    outlines, area = _outlines_for(labels)
    polygon = _polygons(outlines)
    assert shapely.is_valid(polygon).all()
    assert shapely.area(polygon)[0] == pytest.approx(area[0], rel=0.10)


def test_many_touching_cells_in_label_order() -> None:
    """A tile of touching cells: one outline per label, in label order, around its own centroid."""
    labels = np.zeros((80, 120), dtype=np.int32)
    centres = [(20, 20), (20, 38), (50, 30), (40, 70), (60, 95), (15, 100)]
    for k, (r, c) in enumerate(centres, start=1):
        labels[disk((r, c), 10, shape=labels.shape)] = k  # later discs overwrite: shared, straight borders
    outlines, area = _outlines_for(labels)
    polygons = _polygons(outlines)
    assert len(outlines) == len(centres)
    assert shapely.is_valid(polygons).all()
    assert np.all(shapely.area(polygons) == pytest.approx(area, rel=0.15))
    _, cy, cx = label_centroids(labels, len(centres))
    inside = shapely.contains_xy(polygons, cx[1:], cy[1:])
    assert inside.all()


def test_vertices_run_counter_clockwise_in_xy_values() -> None:
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[disk((20, 20), 8)] = 1
    outlines, _ = _outlines_for(labels)
    x, y = outlines[0, :, 0], outlines[0, :, 1]
    signed = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    assert signed > 0
    assert shapely.is_ccw(shapely.linearrings(np.concatenate([outlines[0], outlines[0, :1]])))


def test_crescent_and_tiny_cells_stay_valid() -> None:
    """A crescent's centroid lies outside it (its rays meet no pixel); a one-pixel cell has radius 0."""
    labels = np.zeros((60, 60), dtype=np.int32)
    labels[disk((30, 30), 14)] = 1
    labels[disk((30, 37), 12)] = 0
    labels[5, 5] = 2
    labels[50:52, 50] = 3
    outlines, area = _outlines_for(labels)
    polygons = _polygons(outlines)
    assert shapely.is_valid(polygons).all()
    assert np.all(shapely.area(polygons) > 0)


def test_no_cells_and_bad_ray_count() -> None:
    empty = star_outlines(np.zeros((10, 10), dtype=np.int32), np.zeros(0), np.zeros(0))
    assert empty.shape == (0, 16, 2)
    with pytest.raises(ValueError, match="n_rays"):
        star_outlines(np.ones((3, 3), dtype=np.int32), np.ones(1), np.ones(1), n_rays=2)
