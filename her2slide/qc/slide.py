"""One slide's QC: screen every tile's cells, add up areas and stain statistics, give the verdict."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from her2slide.config import Settings
from her2slide.qc.context import QcContext
from her2slide.qc.tile import REASONS, STAIN_STATS, TileQc, assess_tile, screen_cells
from her2slide.qc.verdict import SlideEvidence, slide_verdict
from her2slide.slide.tiles import Tile
from her2slide.stain import SlideStain

if TYPE_CHECKING:
    from her2slide.qc.roi import Roi


@dataclass
class QcTally:
    """Slide-level sums over tiles: scoped and excluded area, cells removed, kept blocks' stain statistics."""

    scope_um2: float = 0.0
    excluded_um2: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REASONS, 0.0))
    removed: dict[str, int] = field(default_factory=lambda: {"roi": 0, "qc": 0})
    cytoplasmic_cells: list[int] = field(default_factory=lambda: [0, 0])
    _stats: dict[str, list[np.ndarray]] = field(default_factory=lambda: {name: [] for name in STAIN_STATS.values()})

    def add(self, tile_qc: TileQc, removed: dict[str, int]) -> None:
        self.scope_um2 += float(tile_qc.scope_um2.sum())
        for reason, area in tile_qc.excluded_um2().items():
            self.excluded_um2[reason] += area
        for key, n in removed.items():
            self.removed[key] += n
        kept = tile_qc.codes == 0
        for name, values in tile_qc.stain_stats.items():
            self._stats[name].append(values[kept])
        self.cytoplasmic_cells = [a + b for a, b in zip(self.cytoplasmic_cells, tile_qc.cytoplasmic_cells)]

    def evidence(self, tumour_cells: int) -> SlideEvidence:
        """The slide's QC numbers: each stain statistic is the median over the kept blocks."""
        return SlideEvidence(tumour_cells=int(tumour_cells), scope_um2=self.scope_um2,
                             excluded_um2=dict(self.excluded_um2), cells_removed=dict(self.removed),
                             stain_stats={name: _median(chunks) for name, chunks in self._stats.items()},
                             stained_cells=self.cytoplasmic_cells[0], cytoplasmic_cells=self.cytoplasmic_cells[1])


@dataclass
class SlideQc:
    """Screens every tile's cells for one slide and keeps the slide's QC tally.

    ``on_excluded(x_um, y_um, area_um2)`` receives every excluded area (blocks, and tissue
    outside the ROI) for the region maps; ``on_tile_qc`` every tile's final block grid (with
    the cytoplasmic check), for the table of excluded blocks and their reasons.
    """

    context: QcContext
    roi: Roi | None
    stain: SlideStain
    settings: Settings
    on_excluded: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None
    on_tile_qc: Callable[[TileQc], None] | None = None
    tally: QcTally = field(default_factory=QcTally)

    def __post_init__(self) -> None:
        if self.on_excluded is not None and self.roi is not None:
            self.on_excluded(*self.context.outside_roi())

    def assess(self, tile: Tile, rgb: np.ndarray, downsample: float, mpp_level0: float) -> TileQc:
        """The tile's pixel checks (everything but the cytoplasmic check, which needs its cells)."""
        return assess_tile(rgb, self.stain.model, tile, downsample, mpp_level0, self.context, self.settings)

    def keep_scored(self, tile_qc: TileQc, cells: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The tile's cells inside the ROI and outside excluded blocks (the cytoplasmic check is run here)."""
        tile_qc = tile_qc.with_cytoplasmic(cells, self.settings)
        kept, removed = screen_cells(cells, self.roi, tile_qc)
        self.tally.add(tile_qc, removed)
        if self.on_tile_qc is not None:
            self.on_tile_qc(tile_qc)
        if self.on_excluded is not None:
            x, y, area, _ = tile_qc.excluded_blocks()
            if len(area):
                self.on_excluded(x, y, area)
        return kept

    def verdict(self, tumour_cells: int, score: str | None) -> dict[str, Any]:
        """``report.json`` "qc" for the slide once every tile is screened; ``score``: what its
        cells score (some checks only matter where they could have changed it)."""
        return slide_verdict(self.tally.evidence(tumour_cells), self.stain, self.settings, score)


def _median(chunks: list[np.ndarray]) -> float:
    values = np.concatenate(chunks) if chunks else np.zeros(0)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else math.nan
