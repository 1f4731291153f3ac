"""The coarse map of a slide: what the region grid produces and every map writer reads.

One square region is ``region_um`` on a side; region ``(row, col)`` covers slide
micrometres ``[origin_um[0] + col*region_um, ... + region_um)`` in x and likewise in y,
with the slide's level-0 pixel (0, 0) at micrometre (0, 0). Nothing here is at full
resolution: a 20 x 15 mm resection at 100 µm is a 150 x 200 grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Float channels, in this order, in every RegionMaps and in maps.zarr's heatmap image.
#: NaN where a region holds no tumour cells (or fewer than the configured minimum, for
#: local_score).
CHANNELS: tuple[str, ...] = (
    "fraction_0", "fraction_1+", "fraction_2+", "fraction_3+",  # share of the region's tumour cells
    "mean_completeness",  # 0-1
    "mean_membrane_dab_od",  # OD units
    "cell_density",  # tumour cells per mm²
    "local_score",  # 0, 1, 2, 3: the slide rules applied to the region's cells
)

#: Integer label images. 0 always means "nothing here".
#: local_score_class: 0 no score, 1 -> "0", 2 -> "1+", 3 -> "2+", 4 -> "3+".
#: heterogeneity_regions: 0 none, k >= 1 -> the k-th connected cluster of positive regions.
LABELS: tuple[str, ...] = ("local_score_class", "heterogeneity_regions")

#: RGBA per local_score_class value, shared by the zarr label metadata, overlay, review and GeoJSON.
SCORE_COLOURS: dict[int, tuple[int, int, int, int]] = {
    1: (70, 130, 180, 255),  # 0: steel blue
    2: (255, 215, 0, 255),  # 1+: gold
    3: (255, 140, 0, 255),  # 2+: orange
    4: (200, 30, 30, 255),  # 3+: red
}


@dataclass(frozen=True)
class RegionMaps:
    """Per-region measurements of one slide on a coarse grid (row = y, col = x)."""

    region_um: float
    origin_um: tuple[float, float]  # (x, y) of the grid's top-left corner, slide µm
    mpp_level0: float  # µm per level-0 pixel, to convert to slide pixels
    counts: np.ndarray  # (ny, nx) int32 tumour cells per region
    channels: dict[str, np.ndarray]  # name -> (ny, nx) float32, keys == CHANNELS in order
    labels: dict[str, np.ndarray]  # name -> (ny, nx) int32, keys == LABELS
    label_colours: dict[str, dict[int, tuple[int, int, int, int]]] = field(default_factory=dict)
    excluded: np.ndarray | None = None  # (ny, nx) float32 excluded share of the region (QC/ROI), if known

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape  # type: ignore[return-value]

    def stack(self) -> np.ndarray:
        """(channel, y, x) float32 array in CHANNELS order, for image writers."""
        return np.stack([self.channels[name] for name in CHANNELS]).astype(np.float32)


@dataclass(frozen=True)
class HeterogeneityResult:
    """The homogeneous / focal / mosaic call and the numbers behind it (JSON-ready metrics)."""

    pattern: str  # "homogeneous", "focal" or "mosaic"
    metrics: dict[str, Any]  # goes to report.json heterogeneity, next to "pattern"
    clusters: list[dict[str, Any]] = field(default_factory=list)  # one per heterogeneity region

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, **self.metrics, "clusters": list(self.clusters)}
