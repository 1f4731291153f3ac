"""Plain image fields (JPEG, PNG, untiled TIFF): TMA cores, camera fields, exported regions.

Such files have one resolution, so the reader builds a virtual pyramid: the image is
decoded once, on the first read (not at open, so opening a batch stays cheap and a
pickled reader carries no pixels), and halved copies are cached as coarser levels.
A plain image rarely records its pixel size; a DPI or resolution tag is used only when
it gives a plausible scan resolution (72 or 96 dpi are screen defaults), otherwise
the user is asked for ``--mpp``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from her2slide.errors import InputError
from her2slide.slide.reader import (MAX_MPP, MIN_MPP, BaseReader, check_size, resolve_mpp,
                                    rgba_on_white, short_cause)

#: Virtual levels are added by halving until the longest side is at most this.
_COARSEST_SIDE_PX = 1024
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
#: µm per TIFF ResolutionUnit (2 inch, 3 cm, and tifffile's 4 mm, 5 µm).
_UM_PER_RESUNIT = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}
_IMAGEJ_MICRON_UNITS = ("micron", "um", "µm", "\\u00B5m")


def _plausible(mpp: float | None) -> float | None:
    return mpp if mpp is not None and MIN_MPP <= mpp <= MAX_MPP else None


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in _TIFF_MAGIC


def _tiff_mpp(tif: tifffile.TiffFile) -> float | None:
    """Pixel size from the first page's XResolution/ResolutionUnit (or ImageJ's unit)."""
    tags = tif.pages.first.tags
    resolution = tags.valueof(282)
    if not resolution or not resolution[0] or not resolution[1]:
        return None
    unit = int(tags.valueof(296, default=2))
    um_per_unit = _UM_PER_RESUNIT.get(unit)
    if unit == 1 and (tif.imagej_metadata or {}).get("unit") in _IMAGEJ_MICRON_UNITS:
        um_per_unit = 1.0
    if um_per_unit is None:
        return None
    return um_per_unit * resolution[1] / resolution[0]


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    """8-bit RGB from a decoded TIFF page: grey, RGB(A), planar, 8 or 16 bit."""
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.dtype == np.uint16:
        arr = (arr // 257).astype(np.uint8)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise ValueError(f"unsupported pixel layout {arr.dtype} {arr.shape}")
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=-1)
    if arr.shape[-1] == 4:
        return rgba_on_white(arr)
    if arr.shape[-1] != 3:
        raise ValueError(f"unsupported pixel layout {arr.dtype} {arr.shape}")
    return arr


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """8-bit RGB from a PIL image; transparency becomes white."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return rgba_on_white(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"))


class ImageReader(BaseReader):
    """A :class:`~her2slide.slide.reader.SlideReader` over a single-resolution image file."""

    _transient = ("_levels",)

    def __init__(self, path: Path, mpp: float | None = None) -> None:
        self.path = Path(path)
        self._levels: list[np.ndarray | None] | None = None
        try:
            self._tiff = _is_tiff(self.path)
            if self._tiff:
                with tifffile.TiffFile(self.path) as tif:
                    page = tif.pages.first
                    size = (int(page.imagewidth), int(page.imagelength))
                    file_mpp, fmt = _tiff_mpp(tif), "TIFF"
            else:
                with Image.open(self.path) as image:
                    size, fmt = image.size, image.format or "image"
                    dpi = image.info.get("dpi")
                    file_mpp = 25400.0 / float(dpi[0]) if dpi and dpi[0] else None
        except UnidentifiedImageError as exc:
            raise InputError(self.path, "cannot be opened as a slide or image "
                                        "(not a recognised slide or image format)") from exc
        except (OSError, ValueError, tifffile.TiffFileError, Image.DecompressionBombError) as exc:
            raise InputError(self.path, f"cannot be opened as a slide or image ({short_cause(exc)})") from exc
        self.vendor = fmt.lower()
        self.properties = {"image.format": fmt}
        if file_mpp is not None:
            self.properties["image.file-mpp"] = f"{file_mpp:.6g}"
        self.dimensions = size
        dims = [size]
        while max(dims[-1]) > _COARSEST_SIDE_PX:
            dims.append((math.ceil(dims[-1][0] / 2), math.ceil(dims[-1][1] / 2)))
        self.level_dimensions = tuple(dims)
        self.level_downsamples = tuple((size[0] / w + size[1] / h) / 2 for w, h in dims)
        check_size(self.path, size)
        self.mpp, self.mpp_source = resolve_mpp(self.path, _plausible(file_mpp), mpp)

    def _decode(self) -> np.ndarray:
        try:
            if self._tiff:
                return _to_rgb(tifffile.imread(self.path, key=0))
            with Image.open(self.path) as image:
                return _pil_to_rgb(image)
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            raise InputError(self.path, f"pixel data cannot be decoded ({short_cause(exc)})") from exc

    def _level(self, level: int) -> np.ndarray:
        """Level ``level`` of the virtual pyramid, decoding or halving on first use."""
        if self._levels is None:
            self._levels = [None] * len(self.level_dimensions)
        if self._levels[level] is None:
            if level == 0:
                arr = self._decode()
                if arr.shape[1::-1] != self.dimensions:
                    raise InputError(self.path, f"pixel data cannot be decoded (decoded size "
                                                f"{arr.shape[1]} x {arr.shape[0]} differs from header)")
            else:
                arr = np.asarray(Image.fromarray(self._level(level - 1)).reduce(2))
            self._levels[level] = arr
        return self._levels[level]

    def _read_level(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        arr = self._level(level)
        ds = self.level_downsamples[level]
        lx, ly = round(x / ds), round(y / ds)
        out = np.full((height, width, 3), 255, np.uint8)
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + width, arr.shape[1]), min(ly + height, arr.shape[0])
        if x1 > x0 and y1 > y0:
            out[y0 - ly:y1 - ly, x0 - lx:x1 - lx] = arr[y0:y1, x0:x1]
        return out
