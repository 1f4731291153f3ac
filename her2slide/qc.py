"""Quality control: leave out damaged tissue block by block, and give each slide a verdict.

Every cleared HER2 algorithm asks the pathologist to exclude artefacts before a score is read.
Here each tile's owned box is cut into square blocks (``QcSettings.block_um``, 64 µm: a small
pen mark costs a block, not a whole 512 µm tile) and each block gets at most one reason code,
the first that applies in :data:`REASONS` order:

``saturated``   scanner clipping: black pixels, or pure-white fill where the glass is not white;
``ink``         pen marks: colour outside the haematoxylin–DAB plane (green ink; the stain
                model's residual), or darker than any stain (black ink; blue ink, whose colour
                is close to haematoxylin, reads as an impossible haematoxylin amount);
``fold``        folded or overlapping tissue: even the palest fifth of the tissue carries a
                haematoxylin density that single-layer tissue does not (a fold doubles it);
``blur``        out of focus: the steepest haematoxylin edges are too shallow for their
                contrast (an edge-width estimate, in µm, independent of stain strength);
``cytoplasmic`` DAB filling the tumour cells' interiors, not just their membranes, in most
                of the block's cells (membrane reading is unreliable there);
``edge``        the tissue edge band (reagent pooling and crush), from the slide's tissue mask.

Blocks are judged on pixels at the working resolution; the cytoplasmic check uses the cells
the tile measured (each cell's interior DAB against its membrane DAB). A slide then passes or
fails (:meth:`QcTally.verdict`): too few tumour cells, too much tissue excluded, or stain
outside the plausible range fail it, and a failed slide is reported "not scored", never HER2 0.
All thresholds live in ``QcSettings``; their measured basis is in docs/roi_and_qc.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage as ndi

from her2slide.config import CellSettings, QcSettings, Settings
from her2slide.slide.tiles import Tile
from her2slide.slide.tissue import TissueMask
from her2slide.stain import StainModel, estimate_white_point, rgb_to_od

if TYPE_CHECKING:
    from her2slide.roi import Roi

__all__ = ["REASONS", "QcContext", "QcTally", "SlideQc", "TileQc", "assess_tile", "interior_dab_od", "qc_context",
           "screen_cells", "stain_sample_pixels"]

#: Reason codes in priority order; a block's code is 1 + the index of its first reason, 0 = kept.
REASONS: tuple[str, ...] = ("saturated", "ink", "fold", "blur", "cytoplasmic", "edge")
_CODE = {reason: k + 1 for k, reason in enumerate(REASONS)}

#: Smoothing before the pixel tests, µm (Gaussian σ): stain and ink tests see structures, not
#: sensor noise; the edge-width test keeps nuclear edges intact.
_SMOOTH_UM = 0.5
_EDGE_SMOOTH_UM = 0.25
#: Percentiles behind the block statistics (see the module docstring and docs/roi_and_qc.md).
_FLOOR_Q, _CONTRAST_Q, _COUNTERSTAIN_Q = 20, (5, 99), 95
#: A block needs this tissue share for the fold and blur tests, and for the slide's stain statistics.
_MIN_TISSUE_FOR_TESTS, _MIN_TISSUE_FOR_STAIN = 0.25, 0.5
#: Rim added around ink and clipped pixels before they are kept out of segmentation and stain estimation.
_SPOILT_RIM_UM = 2.0
#: Spoilt pixels matter to a segmenter's tile-wide choices from about this share of the read box
#: (below it they are not reported: a dust speck does not move a tile-wide threshold).
_SPOILT_MIN_SHARE = 0.005


@dataclass(frozen=True)
class QcContext:
    """What every tile's QC needs from the whole slide, on the tissue mask's grid."""

    scope: np.ndarray  # bool: tissue inside the ROI (what is scored)
    edge_um: np.ndarray  # float32: distance of each mask pixel centre to the tissue edge, µm (0 off tissue)
    mask_downsample: float  # level-0 px per mask pixel
    mask_mpp: float  # µm per mask pixel
    haematoxylin_floor: float | None  # slide reference: median palest-fifth haematoxylin of sampled blocks
    tissue: np.ndarray  # bool: the tissue mask before the ROI

    def outside_roi(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres (µm) and areas (µm²) of the tissue-mask pixels the ROI leaves out."""
        rows, cols = np.nonzero(self.tissue & ~self.scope)
        return (cols + 0.5) * self.mask_mpp, (rows + 0.5) * self.mask_mpp, np.full(len(rows), self.mask_mpp**2)


def qc_context(tissue: TissueMask, mpp_level0: float, roi: Roi | None, stain: StainModel,
               sample: list[np.ndarray], settings: Settings) -> QcContext:
    """Slide-wide QC inputs: scope (tissue ∩ ROI), tissue-edge distances, and the fold reference
    from ``sample`` (RGB patches at the working resolution: the stain sample, her2slide.stain_sample)."""
    downsample = tissue.mpp / mpp_level0
    scope = tissue.mask if roi is None else tissue.mask & roi.mask(tissue.mask.shape, (0.0, 0.0), downsample)
    # The image border is not a tissue edge (a field cropped out of tissue has no edge there).
    inside = ndi.distance_transform_edt(np.pad(tissue.mask, 1, constant_values=True))[1:-1, 1:-1]
    edge_um = (np.maximum(inside - 0.5, 0.0) * tissue.mpp).astype(np.float32)
    block_px = max(1, round(settings.qc.block_um / settings.tiling.work_mpp))
    values = [np.zeros(0)]
    for rgb in sample:
        floor, share = _haematoxylin_floor(_colour_maps(rgb, stain, settings), (0, 0, rgb.shape[1], rgb.shape[0]), block_px)
        values.append(floor[share >= _MIN_TISSUE_FOR_STAIN])
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    return QcContext(scope=scope, edge_um=edge_um, mask_downsample=downsample, mask_mpp=tissue.mpp,
                     haematoxylin_floor=float(np.median(values)) if len(values) else None, tissue=tissue.mask)


@dataclass(frozen=True)
class TileQc:
    """The block grid of one tile: edges (level-0 px), reason codes and in-scope tissue area."""

    x_edges: np.ndarray  # (nx + 1,)
    y_edges: np.ndarray  # (ny + 1,)
    codes: np.ndarray  # (ny, nx) uint8, 0 = kept, k = REASONS[k - 1]
    scope_um2: np.ndarray  # (ny, nx) tissue ∩ ROI area of each block
    counterstain_od: np.ndarray  # (ny, nx) 95th percentile of tissue haematoxylin; NaN where unmeasured
    background_dab_od: np.ndarray  # (ny, nx) 20th percentile of tissue DAB; NaN where unmeasured
    mpp_level0: float
    spoilt: np.ndarray | None = None  # working pixels of the read box under ink, clipping or a fold; None if none

    def with_cytoplasmic(self, cells: dict[str, np.ndarray], qc: QcSettings) -> TileQc:
        """This grid with the cytoplasmic check applied to the tile's measured cells."""
        codes = self.codes.copy()
        if qc.tile_checks:
            _flag(codes, _cytoplasmic_blocks(cells, self.x_edges, self.y_edges, qc), "cytoplasmic")
        return replace(self, codes=codes)

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
    stats, spoilt = _block_stats(rgb, stain, settings, window, block_px)
    ny, nx = stats["floor"].shape
    x_edges = np.minimum(ox0 + np.arange(nx + 1) * block_px * downsample, ox1).astype(np.float64)
    y_edges = np.minimum(oy0 + np.arange(ny + 1) * block_px * downsample, oy1).astype(np.float64)
    x_edges[-1], y_edges[-1] = ox1, oy1

    codes = np.zeros((ny, nx), dtype=np.uint8)
    if qc.tile_checks:
        testable = stats["tissue"] >= _MIN_TISSUE_FOR_TESTS
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
        spoilt |= _block_pixels(fold, window, block_px, spoilt.shape)
    measured = stats["tissue"] >= _MIN_TISSUE_FOR_STAIN
    result = TileQc(x_edges=x_edges, y_edges=y_edges, codes=codes, scope_um2=_scope_um2(context, x_edges, y_edges),
                    counterstain_od=np.where(measured, stats["counterstain"], np.nan),
                    background_dab_od=np.where(measured, stats["background_dab"], np.nan), mpp_level0=mpp_level0,
                    spoilt=spoilt if qc.tile_checks and spoilt.mean() >= _SPOILT_MIN_SHARE else None)
    return result if cells is None else result.with_cytoplasmic(cells, qc)


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


def stain_sample_pixels(sample: list[np.ndarray], settings: Settings) -> np.ndarray:
    """The pixels of ``sample`` (RGB tiles) fit for estimating the slide's stain vectors: pen ink
    and clipped pixels (judged against the reference vectors) and a 2 µm rim around them are
    left out. In a test slide a green pen stroke drew the haematoxylin estimate 11° off, which
    changed every cell's DAB reading."""
    if not sample:
        return np.zeros((0, 3), dtype=np.uint8)
    reference = StainModel.default()
    white = estimate_white_point(np.concatenate([rgb.reshape(-1, 3) for rgb in sample])[None])
    stain = StainModel(reference.haematoxylin, reference.dab, white)
    return np.concatenate([rgb[~_spoilt_pixels(_colour_maps(rgb, stain, settings), settings)] for rgb in sample])


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


@dataclass
class SlideQc:
    """Screens every tile's cells for one slide and keeps the slide's QC tally.

    ``on_excluded(x_um, y_um, area_um2)`` receives every excluded area (blocks, and tissue
    outside the ROI) for the region maps; ``on_tile_qc`` every tile's final block grid (with
    the cytoplasmic check), for the table of excluded blocks and their reasons.
    """

    context: QcContext
    roi: Roi | None
    stain: StainModel
    settings: Settings
    on_excluded: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None
    on_tile_qc: Callable[[TileQc], None] | None = None
    tally: QcTally = field(default_factory=lambda: QcTally())

    def __post_init__(self) -> None:
        if self.on_excluded is not None and self.roi is not None:
            self.on_excluded(*self.context.outside_roi())

    def assess(self, tile: Tile, rgb: np.ndarray, downsample: float, mpp_level0: float) -> TileQc:
        """The tile's pixel checks (everything but the cytoplasmic check, which needs its cells)."""
        return assess_tile(rgb, self.stain, tile, downsample, mpp_level0, self.context, self.settings)

    def keep_scored(self, tile_qc: TileQc, cells: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The tile's cells inside the ROI and outside excluded blocks (the cytoplasmic check is run here)."""
        tile_qc = tile_qc.with_cytoplasmic(cells, self.settings.qc)
        kept, removed = screen_cells(cells, self.roi, tile_qc)
        self.tally.add(tile_qc, removed)
        if self.on_tile_qc is not None:
            self.on_tile_qc(tile_qc)
        if self.on_excluded is not None:
            x, y, area, _ = tile_qc.excluded_blocks()
            if len(area):
                self.on_excluded(x, y, area)
        return kept


@dataclass
class QcTally:
    """Slide-level sums over tiles: scoped and excluded area, cells removed, stain statistics."""

    scope_um2: float = 0.0
    excluded_um2: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REASONS, 0.0))
    removed: dict[str, int] = field(default_factory=lambda: {"roi": 0, "qc": 0})
    _counterstain: list[np.ndarray] = field(default_factory=list)
    _background: list[np.ndarray] = field(default_factory=list)

    def add(self, tile_qc: TileQc, removed: dict[str, int]) -> None:
        self.scope_um2 += float(tile_qc.scope_um2.sum())
        for reason, area in tile_qc.excluded_um2().items():
            self.excluded_um2[reason] += area
        for key, n in removed.items():
            self.removed[key] += n
        kept = tile_qc.codes == 0
        self._counterstain.append(tile_qc.counterstain_od[kept])
        self._background.append(tile_qc.background_dab_od[kept])

    def verdict(self, tumour_cells: int, stain: StainModel, settings: QcSettings) -> dict[str, Any]:
        """``report.json`` "qc": pass or fail, the flags and sentences behind it, areas and stain numbers."""
        excluded = sum(self.excluded_um2.values())
        fraction = excluded / self.scope_um2 if self.scope_um2 > 0 else 0.0
        counterstain = _median(self._counterstain)
        background = _median(self._background)
        flags: list[str] = []
        reasons: list[str] = []
        if tumour_cells < settings.min_tumour_cells:
            flags.append("few_tumour_cells")
            reasons.append(f"only {tumour_cells} tumour cells in the scored area; at least "
                           f"{settings.min_tumour_cells} are needed")
        if fraction > settings.max_excluded_fraction:
            parts = ", ".join(f"{r} {100 * a / self.scope_um2:.0f}%" for r, a in self.excluded_um2.items() if a > 0)
            flags.append("too_much_excluded")
            reasons.append(f"QC excluded {100 * fraction:.0f}% of the tissue ({parts}); at most "
                           f"{100 * settings.max_excluded_fraction:g}% may be")
        stain_problems = _stain_problems(counterstain, background, settings)
        if stain_problems:
            flags.append("stain_out_of_range")
            reasons.extend(stain_problems)
        reference = StainModel.default()
        return {
            "verdict": "fail" if flags else "pass",
            "flags": flags,
            "reasons": reasons,
            "tumour_cells": int(tumour_cells),
            "assessed_area_mm2": round(self.scope_um2 / 1e6, 4),
            "scored_area_mm2": round((self.scope_um2 - excluded) / 1e6, 4),
            "excluded": {reason: round(area / 1e6, 4) for reason, area in self.excluded_um2.items()},
            "excluded_fraction": round(fraction, 4),
            "cells_removed": dict(self.removed),
            "stain": {
                "counterstain_od": _rounded(counterstain), "background_dab_od": _rounded(background),
                "haematoxylin_vector": _vector_source(stain.haematoxylin, reference.haematoxylin),
                "dab_vector": _vector_source(stain.dab, reference.dab),
            },
        }


# ---------------------------------------------------------------- block statistics


def _block_stats(rgb: np.ndarray, stain: StainModel, settings: Settings, window: tuple[int, int, int, int],
                 block_px: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-block statistics of the pixels in ``window`` (x0, y0, x1, y1 working px of ``rgb``),
    cut into ``block_px`` squares (the last row/column may be smaller; None: one block per
    ``QcSettings.block_um``), and the spoilt pixels of all of ``rgb``. Filters run on the whole
    of ``rgb`` so windows see their context."""
    mpp = settings.tiling.work_mpp
    block_px = block_px or max(1, round(settings.qc.block_um / mpp))
    colour = _colour_maps(rgb, stain, settings)
    spoilt = _spoilt_pixels(colour, settings)
    sharp = ndi.gaussian_filter(colour["od"] @ stain.unmixing[:, 0].astype(np.float32), _EDGE_SMOOTH_UM / mpp)
    gradient = np.hypot(ndi.sobel(sharp, 0), ndi.sobel(sharp, 1)) / (8.0 * mpp)  # OD per µm

    def blocks(a: np.ndarray) -> np.ndarray:
        return _blocks(a, window, block_px)

    on_tissue = np.where(blocks(colour["tissue"]) > 0, 1.0, np.nan)
    floor, tissue = _haematoxylin_floor(colour, window, block_px)
    lo, hi = _nanpercentile(blocks(sharp), _CONTRAST_Q)
    steepest = _nanpercentile(blocks(gradient), [_CONTRAST_Q[1]])[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "tissue": tissue,
            "saturated": np.nanmean(blocks(colour["clipped"]), axis=-1),
            "ink": np.nanmean(blocks(colour["ink"]), axis=-1),
            "floor": floor,
            "counterstain": _nanpercentile(blocks(colour["haem"]) * on_tissue, [_COUNTERSTAIN_Q])[0],
            "background_dab": _nanpercentile(blocks(colour["dab"]) * on_tissue, [_FLOOR_Q])[0],
            "contrast": hi - lo,
            "edge_width_um": (hi - lo) / steepest,
        }, spoilt


def _haematoxylin_floor(colour: dict[str, np.ndarray], window: tuple[int, int, int, int],
                        block_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block: the 20th percentile of haematoxylin over tissue pixels (doubled by a fold), and the tissue share."""
    tissue = _blocks(colour["tissue"], window, block_px)
    floor = _nanpercentile(_blocks(colour["haem"], window, block_px) * np.where(tissue > 0, 1.0, np.nan), [_FLOOR_Q])[0]
    with np.errstate(invalid="ignore"):
        return floor, np.nanmean(tissue, axis=-1)


def _colour_maps(rgb: np.ndarray, stain: StainModel, settings: Settings) -> dict[str, np.ndarray]:
    """Per-pixel optical density (raw), smoothed stain amounts, tissue, ink and clipped pixels."""
    qc = settings.qc
    od = rgb_to_od(rgb, stain.white)
    sigma = _SMOOTH_UM / settings.tiling.work_mpp
    smooth = ndi.gaussian_filter(od, (sigma, sigma, 0), truncate=2.0)
    amounts = smooth @ stain.unmixing.astype(np.float32)
    haem, dab, residual = np.maximum(amounts[..., 0], 0), np.maximum(amounts[..., 1], 0), amounts[..., 2]
    r, g, b = smooth[..., 0], smooth[..., 1], smooth[..., 2]
    norm = np.sqrt(r * r + g * g + b * b)
    darkest = np.minimum(np.minimum(r, g), b)
    ink = (((np.abs(residual) > qc.ink_residual_share * norm) & (norm > qc.ink_min_od))
           | (haem > qc.ink_haematoxylin_od) | (darkest > qc.ink_dark_od))
    clipped = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]) <= qc.saturated_dark_level
    if stain.white.min() < 250:  # pure white is then a reader's fill, not glass
        clipped |= np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]) >= 255
    return {"od": od, "haem": haem, "dab": dab, "tissue": (haem + dab) > settings.cells.tissue_od,
            "ink": ink, "clipped": clipped}


def _spoilt_pixels(colour: dict[str, np.ndarray], settings: Settings) -> np.ndarray:
    """Ink and clipped pixels with a rim of ``_SPOILT_RIM_UM`` (the blurred edge of a pen stroke)."""
    spoilt = colour["ink"] | colour["clipped"]
    if not spoilt.any():
        return spoilt
    return ndi.binary_dilation(spoilt, iterations=max(1, round(_SPOILT_RIM_UM / settings.tiling.work_mpp)))


def _block_pixels(hit: np.ndarray, window: tuple[int, int, int, int], block_px: int,
                  shape: tuple[int, ...]) -> np.ndarray:
    """Pixel mask (``shape``) of the blocks ``hit`` laid out from ``window``'s corner."""
    x0, y0, x1, y1 = window
    full = np.repeat(np.repeat(hit, block_px, axis=0), block_px, axis=1)[:y1 - y0, :x1 - x0]
    out = np.zeros(shape, dtype=bool)
    out[y0:y0 + full.shape[0], x0:x0 + full.shape[1]] = full[:shape[0] - y0, :shape[1] - x0]
    return out


def _blocks(a: np.ndarray, window: tuple[int, int, int, int], block_px: int) -> np.ndarray:
    """(ny, nx, block_px²) view of ``a[y0:y1, x0:x1]`` cut into squares, NaN-padded at the far edges."""
    x0, y0, x1, y1 = window
    crop = a[max(y0, 0):y1, max(x0, 0):x1].astype(np.float32)
    ny, nx = max(1, math.ceil(crop.shape[0] / block_px)), max(1, math.ceil(crop.shape[1] / block_px))
    padded = np.full((ny * block_px, nx * block_px), np.nan, dtype=np.float32)
    padded[:crop.shape[0], :crop.shape[1]] = crop
    return padded.reshape(ny, block_px, nx, block_px).transpose(0, 2, 1, 3).reshape(ny, nx, -1)


def _nanpercentile(values: np.ndarray, q: list[float] | tuple[float, ...]) -> np.ndarray:
    """Percentiles (linear interpolation, as numpy) over the last axis ignoring NaN; NaN for
    all-NaN rows. One sort per call (NaN sorts last), not one Python call per block."""
    ordered = np.sort(values, axis=-1)
    n = (~np.isnan(values)).sum(axis=-1)
    out = []
    for p in q:
        pos = np.maximum(n - 1, 0) * (p / 100.0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        a = np.take_along_axis(ordered, lo[..., None], axis=-1)[..., 0]
        b = np.take_along_axis(ordered, hi[..., None], axis=-1)[..., 0]
        out.append(np.where(n > 0, a + (b - a) * (pos - lo), np.nan))
    return np.stack(out)


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


def _cytoplasmic_blocks(cells: dict[str, np.ndarray], x_edges: np.ndarray, y_edges: np.ndarray,
                        qc: QcSettings) -> np.ndarray:
    """Blocks where most stained tumour cells have DAB filling their interior, not only their membrane.

    Only cells whose membrane reaches ``cytoplasmic_min_od`` count (an unstained cell can have
    neither), so a block of 1+ cells with cytoplasmic blush among negative cells is caught as
    surely as a block of uniformly stained ones.
    """
    shape = (len(y_edges) - 1, len(x_edges) - 1)
    if len(cells["x"]) == 0:
        return np.zeros(shape, dtype=bool)
    col = np.clip(np.searchsorted(x_edges, cells["x"], side="right") - 1, 0, shape[1] - 1)
    row = np.clip(np.searchsorted(y_edges, cells["y"], side="right") - 1, 0, shape[0] - 1)
    block = row * shape[1] + col
    inner = np.nan_to_num(np.asarray(cells["cytoplasm_dab_od"], dtype=np.float64), nan=0.0)
    stained = np.asarray(cells["stained_dab_od"], dtype=np.float64) >= qc.cytoplasmic_min_od
    diffuse = stained & (inner >= qc.cytoplasmic_min_od) & (inner >= qc.cytoplasmic_ratio * cells["stained_dab_od"])
    n = np.bincount(block, weights=stained, minlength=shape[0] * shape[1]).reshape(shape)
    hits = np.bincount(block, weights=diffuse, minlength=shape[0] * shape[1]).reshape(shape)
    return (n >= qc.cytoplasmic_min_cells) & (hits >= qc.cytoplasmic_min_share * n)


def _flag(codes: np.ndarray, hit: np.ndarray, reason: str) -> None:
    """Give ``reason`` to the blocks it hits unless they already have a reason earlier in REASONS."""
    k = _CODE[reason]
    codes[hit & ((codes == 0) | (codes > k))] = k


def _stain_problems(counterstain: float, background: float, qc: QcSettings) -> list[str]:
    problems = []
    if np.isfinite(counterstain) and not qc.min_counterstain_od <= counterstain <= qc.max_counterstain_od:
        problems.append(f"haematoxylin counterstain of the tissue (nuclear OD {counterstain:.3f}) is outside "
                        f"{qc.min_counterstain_od:g}–{qc.max_counterstain_od:g}")
    if np.isfinite(background) and background > qc.max_background_dab_od:
        problems.append(f"background DAB over the tissue (OD {background:.3f}) is above {qc.max_background_dab_od:g}: "
                        "non-specific staining makes faint membranes unreadable")
    return problems


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


def _vector_source(vector: np.ndarray, reference: np.ndarray) -> str:
    """Whether the slide kept the reference stain vector (its estimate was rejected, or there was too little stain)."""
    return "reference" if np.allclose(vector, reference) else "estimated"


def _median(chunks: list[np.ndarray]) -> float:
    values = np.concatenate(chunks) if chunks else np.zeros(0)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else math.nan


def _rounded(x: float) -> float | None:
    return round(x, 4) if np.isfinite(x) else None
