"""Pyramidal Aperio SVS writer: tiled JPEG TIFF that OpenSlide opens as ``aperio``.

Level 0 is pulled from a region source strip by strip and streamed to tifffile as 256×256
tiles, so the full-resolution image is never held in memory; lower levels are 4× box-filtered
downsamples kept in memory (1/16 of level 0 and less).

JPEG colour space: the RGB input is passed as ``photometric="rgb"``; tifffile then encodes the
tiles in YCbCr with 2×2 chroma subsampling and tags them PhotometricInterpretation = YCbCr, as
scanners do, and OpenSlide decodes them back to the rendered RGB within JPEG error (the tests
check it). Passing ``photometric="ycbcr"`` instead tells tifffile the input already *is* YCbCr
and gives badly wrong colours.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tifffile

__all__ = ["write_svs", "aperio_description"]

RegionSource = Callable[[int, int, int, int], np.ndarray]  # (y0, x0, h, w) -> uint8 (h, w, 3)


def aperio_description(level0: tuple[int, int], size: tuple[int, int], *, mpp: float, app_mag: float,
                       tile: int, quality: int, extra: dict[str, str] | None = None) -> str:
    """ImageDescription in the Aperio format (``(width, height)`` sizes): the first line names the
    library and the image geometry, then ``|key = value`` pairs that OpenSlide reads as
    ``aperio.*`` properties (``MPP`` gives ``openslide.mpp-x``/``-y``)."""
    w0, h0 = level0
    w, h = size
    head = "Aperio Image Library v12.0.15 \r\n"
    if (w, h) == (w0, h0):
        head += f"{w0}x{h0} [0,0 {w0}x{h0}] ({tile}x{tile}) JPEG/RGB Q={quality}"
    else:
        head += f"{w0}x{h0} [0,0 {w0}x{h0}] ({tile}x{tile}) -> {w}x{h} JPEG/RGB Q={quality}"
    fields = {"AppMag": f"{app_mag:g}", "MPP": f"{mpp:.6g}", "ScanScope ID": "her2slide-synth"}
    fields.update(extra or {})
    return head + "".join(f"|{k} = {v}" for k, v in fields.items())


def _pool(img: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter downsample by ``factor`` (edge rows/columns replicated to a multiple)."""
    h, w = img.shape[:2]
    ph, pw = -h % factor, -w % factor
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
    acc = np.zeros((img.shape[0] // factor, img.shape[1] // factor, img.shape[2]), np.uint32)
    for i in range(factor):  # strided sums: far faster than a mean over a reshaped axis pair
        for j in range(factor):
            acc += img[i::factor, j::factor]
    return ((acc + factor * factor // 2) // (factor * factor)).astype(np.uint8)


def _tiles(img: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Row-major tiles of a strip, edge tiles padded by replication (JPEG-friendly)."""
    h, w = img.shape[:2]
    ph, pw = -h % tile, -w % tile
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
    for y in range(0, img.shape[0], tile):
        for x in range(0, img.shape[1], tile):
            yield img[y:y + tile, x:x + tile]


def write_svs(path: str | os.PathLike, tile_source: RegionSource, shape: tuple[int, int], mpp: float = 0.25, *,
              app_mag: float = 40, quality: int = 90, tile: int = 256, downsample: int = 4,
              min_levels: int = 3, min_level_px: int = 64, block: int = 2048,
              extra: dict[str, str] | None = None,
              progress: Callable[[int, int], None] | None = None) -> Path:
    """Write a pyramidal Aperio SVS of ``shape`` = (height, width) level-0 pixels.

    ``tile_source(y0, x0, h, w)`` returns the level-0 RGB of a rectangle; it is called for blocks of
    at most ``block`` × ``block`` pixels, one strip of blocks at a time. Levels go down by
    ``downsample`` until the smaller side would drop below ``min_level_px``, with at least
    ``min_levels`` levels. A thumbnail page sits after level 0, as in scanner files. The file is
    written to a temporary name and renamed into place when complete.
    """
    if block % (tile * 1) or block % downsample:
        raise ValueError(f"block ({block}) must be a multiple of the tile size ({tile}) and the downsample")
    height, width = int(shape[0]), int(shape[1])
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    n_levels = 1
    while min(height, width) / downsample**n_levels >= min_level_px or n_levels < min_levels:
        n_levels += 1
    level1: list[np.ndarray] = []

    def level0_tiles() -> Iterator[np.ndarray]:
        for y in range(0, height, block):
            h = min(block, height - y)
            strip = np.empty((h, width, 3), np.uint8)
            for x in range(0, width, block):
                w = min(block, width - x)
                strip[:, x:x + w] = tile_source(y, x, h, w)
                if progress:
                    progress(y * width + (x + w) * h, height * width)
            level1.append(_pool(strip, downsample))
            yield from _tiles(strip, tile)

    common = dict(photometric="rgb", compression="jpeg", compressionargs={"level": quality},
                  metadata=None, software=False)
    big = height * width * 3 > 2**31
    with tifffile.TiffWriter(tmp, bigtiff=big) as tif:
        desc = aperio_description((width, height), (width, height), mpp=mpp, app_mag=app_mag, tile=tile,
                                  quality=quality, extra=extra)
        tif.write(level0_tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(tile, tile),
                  description=desc, **common)
        levels = [np.concatenate(level1, axis=0)]
        for _ in range(2, n_levels):
            levels.append(_pool(levels[-1], downsample))
        thumb = levels[-1] if max(levels[-1].shape[:2]) <= 1024 else _pool(levels[-1], 2)
        tif.write(thumb, description=aperio_description((width, height), thumb.shape[1::-1], mpp=mpp,
                                                        app_mag=app_mag, tile=tile, quality=quality),
                  rowsperstrip=16, **common)
        for lvl in levels:
            tif.write(lvl, tile=(tile, tile), description=aperio_description(
                (width, height), lvl.shape[1::-1], mpp=mpp, app_mag=app_mag, tile=tile, quality=quality),
                **common)
    os.replace(tmp, path)
    return path
