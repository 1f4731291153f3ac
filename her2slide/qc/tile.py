"""Tile-level QC: each block of a tile's owned box gets at most one reason to be left out.

The reasons, in priority order (a block's code is 1 + the index of its first reason, 0 = kept):

``saturated``   scanner clipping: black pixels, or pure-white fill where the glass is not white;
``ink``         pen marks: colour outside the haematoxylin–DAB plane (green ink; the stain
                model's residual), or darker than any stain (black ink; blue ink, whose colour
                is close to haematoxylin, reads as an impossible haematoxylin amount);
``fold``        folded or overlapping tissue: even the palest fifth of the tissue carries a
                haematoxylin density that single-layer tissue does not (a fold doubles it);
``blur``        out of focus: the steepest haematoxylin edges are too shallow for their
                contrast (an edge-width estimate, in µm, independent of stain strength);
``cytoplasmic`` stained cytoplasm lifts the membrane reading of most of the block's stained
                tumour cells by a class (the cytoplasm, not the membrane, would be scored);
``edge``        the band where tissue meets glass (reagent pooling and crush).

Cells in excluded blocks are removed in one place (:func:`screen_cells`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from her2slide.config import CellSettings, QcSettings, Settings
from her2slide.qc.context import MIN_TISSUE_FOR_STAIN, MIN_TISSUE_FOR_TESTS, QcContext
from her2slide.qc.pixels import block_pixels, block_stats
from her2slide.scoring import ScoringRules, intensity_class
from her2slide.slide.tiles import Tile
from her2slide.stain import StainModel

if TYPE_CHECKING:
    from her2slide.qc.roi import Roi

REASONS: tuple[str, ...] = ("saturated", "ink", "fold", "blur", "cytoplasmic", "edge")
_CODE = {reason: k + 1 for k, reason in enumerate(REASONS)}
#: Per-block stain statistics a tile hands to the slide verdict (block_stats keys → report names).
STAIN_STATS = {"counterstain": "counterstain_od", "background_dab": "background_dab_od"}
#: Spoilt pixels matter to a segmenter's tile-wide choices from about this share of the read box
#: (below it they are not reported: a dust speck does not move a tile-wide threshold).
_SPOILT_MIN_SHARE = 0.005


@dataclass(frozen=True)
class TileQc:
    """The block grid of one tile: edges (level-0 px), reason codes, in-scope tissue area, and the
    blocks' stain statistics (``STAIN_STATS`` values; NaN where a block has too little tissue)."""

    x_edges: np.ndarray  # (nx + 1,)
    y_edges: np.ndarray  # (ny + 1,)
    codes: np.ndarray  # (ny, nx) uint8, 0 = kept, k = REASONS[k - 1]
    scope_um2: np.ndarray  # (ny, nx) tissue ∩ ROI area of each block
    mpp_level0: float
    stain_stats: dict[str, np.ndarray] = field(default_factory=dict)  # name → (ny, nx)
    spoilt: np.ndarray | None = None  # working pixels of the read box under ink, clipping or a fold; None if none
    cytoplasmic_cells: tuple[int, int] = (0, 0)  # kept stained tumour cells, and those their cytoplasm raises

    def with_cytoplasmic(self, cells: dict[str, np.ndarray], settings: Settings) -> TileQc:
        """This grid with the cytoplasmic check applied to the tile's measured cells."""
        qc = settings.qc
        codes = self.codes.copy()
        stained, raised = cytoplasmic_cells(cells, settings.scoring)
        if qc.tile_checks:
            _flag(codes, _cytoplasmic_blocks(cells, stained, raised, self.x_edges, self.y_edges, qc), "cytoplasmic")
        kept = codes[self.block_of(cells["x"], cells["y"])] == 0
        return replace(self, codes=codes, cytoplasmic_cells=(int((stained & kept).sum()), int((raised & kept).sum())))

    def block_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the block holding each level-0 point (points outside go to the nearest block)."""
        col = np.clip(np.searchsorted(self.x_edges, x, side="right") - 1, 0, len(self.x_edges) - 2)
        row = np.clip(np.searchsorted(self.y_edges, y, side="right") - 1, 0, len(self.y_edges) - 2)
        return row, col

    def excludes(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether level-0 points lie in an excluded block."""
        row, col = self.block_of(np.asarray(x), np.asarray(y))
        return self.codes[row, col] > 0

    def centres_um(self) -> tuple[np.ndarray, np.ndarray]:
        """Block centres, slide µm, each (ny, nx)."""
        cx = (self.x_edges[:-1] + self.x_edges[1:]) / 2 * self.mpp_level0
        cy = (self.y_edges[:-1] + self.y_edges[1:]) / 2 * self.mpp_level0
        return np.broadcast_to(cx[None, :], self.codes.shape), np.broadcast_to(cy[:, None], self.codes.shape)

    def excluded_blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Centres (µm), in-scope area (µm²) and reason code of every excluded block: one map layer per reason."""
        cx, cy = self.centres_um()
        hit = (self.codes > 0) & (self.scope_um2 > 0)
        return cx[hit], cy[hit], self.scope_um2[hit], self.codes[hit]

    def excluded_um2(self) -> dict[str, float]:
        """In-scope tissue area excluded per reason."""
        area = np.bincount(self.codes.ravel(), weights=self.scope_um2.ravel(), minlength=len(REASONS) + 1)
        return {reason: float(area[k + 1]) for k, reason in enumerate(REASONS)}


def assess_tile(rgb: np.ndarray, stain: StainModel, tile: Tile, downsample: float, mpp_level0: float,
                context: QcContext, settings: Settings, cells: dict[str, np.ndarray] | None = None) -> TileQc:
    """QC of the blocks of a tile's owned box, from its RGB at the working resolution over ``tile.read``
    and, for the cytoplasmic check, the cells it measured (``x``, ``y``, ``cytoplasm_dab_od``,
    ``stained_dab_od``; without them that check is left for :meth:`TileQc.with_cytoplasmic`)."""
    qc = settings.qc
    block_px = max(1, round(qc.block_um / settings.tiling.work_mpp))
    ox0, oy0, ox1, oy1 = tile.owned
    rx0, ry0 = tile.read[:2]
    window = (round((ox0 - rx0) / downsample), round((oy0 - ry0) / downsample),
              round((ox1 - rx0) / downsample), round((oy1 - ry0) / downsample))
    stats, spoilt = block_stats(rgb, stain, settings, window, block_px)
    ny, nx = stats["floor"].shape
    x_edges = np.minimum(ox0 + np.arange(nx + 1) * block_px * downsample, ox1).astype(np.float64)
    y_edges = np.minimum(oy0 + np.arange(ny + 1) * block_px * downsample, oy1).astype(np.float64)
    x_edges[-1], y_edges[-1] = ox1, oy1

    codes = np.zeros((ny, nx), dtype=np.uint8)
    if qc.tile_checks:
        testable = stats["tissue"] >= MIN_TISSUE_FOR_TESTS
        fold_limit = qc.fold_min_haematoxylin_od
        if context.haematoxylin_floor is not None:
            fold_limit = max(fold_limit, qc.fold_ratio * context.haematoxylin_floor)
        fold = testable & (stats["floor"] > fold_limit)
        _flag(codes, stats["saturated"] > qc.saturated_max_fraction, "saturated")
        _flag(codes, stats["ink"] > qc.ink_max_fraction, "ink")
        _flag(codes, fold, "fold")
        _flag(codes, testable & (stats["contrast"] >= qc.blur_min_contrast_od)
              & (stats["edge_width_um"] > qc.blur_max_edge_um), "blur")
        if qc.edge_um > 0:
            cx = (x_edges[:-1] + x_edges[1:]) / 2
            cy = (y_edges[:-1] + y_edges[1:]) / 2
            _flag(codes, _sample(context.edge_um, context.mask_downsample, cx, cy) < qc.edge_um, "edge")
        spoilt |= block_pixels(fold, window, block_px, spoilt.shape)
    measured = stats["tissue"] >= MIN_TISSUE_FOR_STAIN
    result = TileQc(x_edges=x_edges, y_edges=y_edges, codes=codes, scope_um2=_scope_um2(context, x_edges, y_edges),
                    mpp_level0=mpp_level0,
                    stain_stats={name: np.where(measured, stats[key], np.nan) for key, name in STAIN_STATS.items()},
                    spoilt=spoilt if qc.tile_checks and spoilt.mean() >= _SPOILT_MIN_SHARE else None)
    return result if cells is None else result.with_cytoplasmic(cells, settings)


def screen_cells(cells: dict[str, np.ndarray], roi: Roi | None,
                 tile_qc: TileQc | None) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The cells that are scored, and how many were removed by the ROI and by QC.

    The one place cells leave: everything downstream (cells.parquet, maps, the score) sees
    only what passes here.
    """
    x, y = cells["x"], cells["y"]
    in_roi = roi.contains(x, y) if roi is not None else np.ones(len(x), dtype=bool)
    passed = ~tile_qc.excludes(x, y) if tile_qc is not None else np.ones(len(x), dtype=bool)
    keep = in_roi & passed
    removed = {"roi": int((~in_roi).sum()), "qc": int((in_roi & ~passed).sum())}
    return {name: values[keep] for name, values in cells.items()}, removed


def interior_dab_od(labels: np.ndarray, nucleus: np.ndarray, dab: np.ndarray, settings: CellSettings,
                    mpp: float) -> np.ndarray:
    """Median DAB of each cell's interior (labels 1..max, NaN where a cell has none).

    The interior is the cell minus a band of ``ring_width_um`` + 0.5 µm inside its outline
    (the membrane and its blur) and minus its nucleus: where cytoplasmic stain shows and
    membrane stain does not.
    """
    n = int(labels.max())
    if n == 0:
        return np.zeros(0)
    size = 2 * max(1, round((settings.ring_width_um + 0.5) / mpp)) + 1
    near_outline = ndi.minimum_filter(labels, size=size) != ndi.maximum_filter(labels, size=size)
    nuclear = ndi.binary_dilation(nucleus)
    inside = (labels > 0) & ~near_outline & ~nuclear
    return _grouped_median(labels[inside], dab[inside], n)


def _scope_um2(context: QcContext, x_edges: np.ndarray, y_edges: np.ndarray) -> np.ndarray:
    """Exact in-scope area of each block: overlaps of block edges with mask pixels, separable in x and y."""
    ox, cols = _overlaps(x_edges / context.mask_downsample, context.scope.shape[1])
    oy, rows = _overlaps(y_edges / context.mask_downsample, context.scope.shape[0])
    return oy @ context.scope[rows, cols].astype(np.float64) @ ox.T * context.mask_mpp**2


def _overlaps(edges: np.ndarray, n: int) -> tuple[np.ndarray, slice]:
    """(blocks, pixels) lengths of overlap between intervals [edges[k], edges[k+1]) and pixels [j, j+1)."""
    j0, j1 = max(0, math.floor(edges[0])), min(n, math.ceil(edges[-1]))
    j = np.arange(j0, max(j0, j1), dtype=np.float64)
    length = np.minimum(edges[1:, None], j[None, :] + 1) - np.maximum(edges[:-1, None], j[None, :])
    return np.clip(length, 0.0, None), slice(j0, max(j0, j1))


def _sample(grid: np.ndarray, downsample: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Values of a mask-grid array at level-0 points (x along columns, y along rows), as an outer grid."""
    cols = np.clip((x / downsample).astype(np.int64), 0, grid.shape[1] - 1)
    rows = np.clip((y / downsample).astype(np.int64), 0, grid.shape[0] - 1)
    return grid[rows[:, None], cols[None, :]]


def cytoplasmic_cells(cells: dict[str, np.ndarray], rules: ScoringRules) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: stained (its membrane reading reaches ``faint_od``), and raised: stained with a
    stained cytoplasm (at least ``faint_od``) whose DAB lifts the membrane reading by a class.

    Optical densities add and the membrane ring lies over the cytoplasm, so a membrane reading m
    over a cytoplasm c is a membrane of its own of about m - c; where that is a class lower, the
    cytoplasm is deciding the cell's class, not the membrane (on synthetic 1+ fields whose
    cytoplasm carries as much DAB as the membrane, half the cells read moderate and complete). A
    haze below the faint level is background, not cytoplasmic staining. Only stained cells count
    (an unstained cell can be neither), so a block of 1+ cells with cytoplasmic blush among
    negative cells is caught as surely as a uniform one.
    """
    membrane = np.asarray(cells["stained_dab_od"], dtype=np.float64)
    inner = np.nan_to_num(np.asarray(cells["cytoplasm_dab_od"], dtype=np.float64), nan=0.0)
    reading = intensity_class(membrane, rules)
    stained = reading > 0
    return stained, stained & (inner >= rules.faint_od) & (intensity_class(membrane - inner, rules) < reading)


def _cytoplasmic_blocks(cells: dict[str, np.ndarray], stained: np.ndarray, raised: np.ndarray,
                        x_edges: np.ndarray, y_edges: np.ndarray, qc: QcSettings) -> np.ndarray:
    """Blocks where the cytoplasm, not the membrane, decides the class of most stained tumour cells."""
    shape = (len(y_edges) - 1, len(x_edges) - 1)
    if len(cells["x"]) == 0:
        return np.zeros(shape, dtype=bool)
    col = np.clip(np.searchsorted(x_edges, cells["x"], side="right") - 1, 0, shape[1] - 1)
    row = np.clip(np.searchsorted(y_edges, cells["y"], side="right") - 1, 0, shape[0] - 1)
    block = row * shape[1] + col
    n = np.bincount(block, weights=stained, minlength=shape[0] * shape[1]).reshape(shape)
    hits = np.bincount(block, weights=raised, minlength=shape[0] * shape[1]).reshape(shape)
    return (n >= qc.cytoplasmic_min_cells) & (hits >= qc.cytoplasmic_min_share * n)


def _flag(codes: np.ndarray, hit: np.ndarray, reason: str) -> None:
    """Give ``reason`` to the blocks it hits unless they already have a reason earlier in REASONS."""
    k = _CODE[reason]
    codes[hit & ((codes == 0) | (codes > k))] = k


def _grouped_median(groups: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per group 1..n (NaN for empty groups), by one sort."""
    order = np.lexsort((values, groups))
    groups, values = groups[order], values[order].astype(np.float64)
    counts = np.bincount(groups, minlength=n + 1)[1:]
    starts = np.cumsum(counts) - counts
    has = counts > 0
    result = np.full(n, np.nan)
    low, high = starts[has] + (counts[has] - 1) // 2, starts[has] + counts[has] // 2
    result[has] = (values[low] + values[high]) / 2
    return result
