"""The tile plan: a grid of owned squares over the slide, each read with a margin.

As in StarDist's big-image prediction, each tile has a *read* box (what the model sees)
and an *owned* box (where its results count). Owned boxes partition the slide, so a
cell belongs to exactly one tile: the one whose owned box holds its centroid. The
margin is wider than the largest cell, so the owning tile always sees the whole cell.
:func:`read_tile` reads a tile's pixels at the working resolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from her2slide.errors import InputError
from her2slide.slide.reader import SlideReader, short_cause
from her2slide.slide.tissue import TissueMask

#: Smallest allowed margin (µm). Tumour cells are at most about 30 µm across; a cell
#: whose centroid lies in a tile's owned box then lies wholly inside its read box.
MIN_MARGIN_UM = 30.0

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Tile:
    """One tile: ``owned`` and ``read`` boxes (x0, y0, x1, y1), half-open, in level-0 pixels."""

    index: int
    row: int
    col: int
    owned: Box
    read: Box

    def owns(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """Whether level-0 points fall in the owned box (x0 ≤ x < x1, y0 ≤ y < y1)."""
        x, y = np.asarray(x), np.asarray(y)
        x0, y0, x1, y1 = self.owned
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


@dataclass(frozen=True)
class TilePlan:
    """Tiles that hold tissue, and the scale they are processed at.

    ``downsample`` is level-0 pixels per working pixel (``work_mpp / reader.mpp``).
    """

    tiles: list[Tile]
    work_mpp: float
    margin_um: float
    downsample: float

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)


def _edges(length: int, step: float) -> list[int]:
    """Integer cut positions 0 = e0 < e1 < ... < en = length, ``step`` apart (rounded)."""
    n = max(1, math.ceil(length / step))
    return sorted({min(length, round(k * step)) for k in range(n)} | {length})


def plan_tiles(reader: SlideReader, mask: TissueMask, work_mpp: float = 0.5, tile_px: int = 1024,
               margin_um: float = 32.0, min_tissue_fraction: float = 0.01) -> TilePlan:
    """Grid of ``tile_px``-working-pixel owned squares at ``work_mpp``, kept where there is tissue.

    A tile is kept when at least ``min_tissue_fraction`` (and more than none) of its
    owned box is tissue in ``mask``. Raises ``ValueError`` for a margin below
    :data:`MIN_MARGIN_UM`.
    """
    if margin_um < MIN_MARGIN_UM:
        raise ValueError(f"margin_um={margin_um} is below {MIN_MARGIN_UM} µm, the largest cell size; "
                         "cells at tile edges would be measured from clipped outlines")
    if tile_px <= 0 or work_mpp <= 0:
        raise ValueError(f"tile_px and work_mpp must be positive, got {tile_px}, {work_mpp}")
    # The reader is authoritative for the level-0 scale, whatever the mask was built with.
    mask = replace(mask, downsample=mask.mpp / reader.mpp)
    downsample = work_mpp / reader.mpp
    width, height = reader.dimensions
    xs, ys = _edges(width, tile_px * downsample), _edges(height, tile_px * downsample)
    margin = math.ceil(margin_um / reader.mpp)
    tiles: list[Tile] = []
    for row, (y0, y1) in enumerate(zip(ys[:-1], ys[1:])):
        for col, (x0, x1) in enumerate(zip(xs[:-1], xs[1:])):
            fraction = mask.fraction_in(x0, y0, x1, y1)
            if fraction > 0 and fraction >= min_tissue_fraction:
                read = (max(0, x0 - margin), max(0, y0 - margin), min(width, x1 + margin), min(height, y1 + margin))
                tiles.append(Tile(len(tiles), row, col, (x0, y0, x1, y1), read))
    return TilePlan(tiles=tiles, work_mpp=float(work_mpp), margin_um=float(margin_um), downsample=float(downsample))


def read_tile(reader: SlideReader, tile: Tile, work_mpp: float) -> np.ndarray:
    """Pixels of the tile's read box at ``work_mpp``."""
    return read_box(reader, tile.read, work_mpp)


def read_box(reader: SlideReader, box: tuple[int, int, int, int], work_mpp: float) -> np.ndarray:
    """Pixels of the level-0 box (x0, y0, x1, y1) at ``work_mpp``.

    A file whose tiles are corrupt part-way through fails here, after the slide opened
    fine; the error names the tile (level-0 origin) so a batch record says where.
    """
    x0, y0, x1, y1 = box
    try:
        return reader.read_at_mpp(x0, y0, x1 - x0, y1 - y0, work_mpp)
    except (InputError, OSError) as exc:
        cause = exc.__cause__ or exc
        detail = cause.reason if isinstance(cause, InputError) else short_cause(cause)
        raise InputError(reader.path, f"tile at ({x0}, {y0}) could not be decoded: {detail}") from exc
