"""Plain image fields (JPEG, PNG, untiled TIFF): TMA cores, camera fields, exported regions.

Such files have one resolution, so the reader builds a virtual pyramid: the image is
decoded once, on the first read (not at open, so opening a batch stays cheap and a
pickled reader carries no pixels), and halved copies are cached as coarser levels.
A plain image rarely records its pixel size; a DPI or resolution tag is used only when
it gives a plausible scan resolution (72 or 96 dpi are screen defaults), otherwise
the user is asked for ``--mpp``.

Damaged files are refused with what is wrong, before anything else is asked of the user:
an image larger than the decoded-pixel limit (her2slide.slide.reader.MAX_DECODED_PIXELS) at
open, a TIFF whose structure is broken or whose data reach past the end of the file (a
truncated copy) at open, and a file whose pixels do not decode before asking for ``--mpp``.
Decoders raise many exception types (imagecodecs has one per codec); all of them become the
one-line "pixel data cannot be decoded". tifffile reports damage through logging, which is
collected here rather than printed.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from her2slide.errors import InputError
from her2slide.slide.reader import (MAX_DECODED_PIXELS, MAX_MPP, MIN_MPP, BaseReader, check_decoded_pixels,
                                    check_size, resolve_mpp, rgba_on_white, short_cause)

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


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """Errors tifffile logs while the block runs (it logs damage and carries on), kept off stderr."""
    logger = logging.getLogger("tifffile")
    collect, propagate = _Collect(), logger.propagate
    logger.addHandler(collect)
    logger.propagate = False
    try:
        yield collect.messages
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate


def _tiff_damage(tif: tifffile.TiffFile, file_size: int) -> str | None:
    """Why a TIFF is truncated or damaged (its pages' data past the end of the file, or an error
    tifffile logs while walking its pages), or None."""
    with _tifffile_errors() as errors:
        ends = [offset + count for page in tif.pages
                for offset, count in zip(page.dataoffsets, page.databytecounts)]
    if ends and max(ends) > file_size:
        return f"its image data reach byte {max(ends):,}, past the end of the {file_size:,}-byte file"
    if errors:
        return short_cause(Exception(errors[0].split("> ", 1)[-1]))
    return None


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
        damage = None
        try:
            self._tiff = _is_tiff(self.path)
            if self._tiff:
                with _tifffile_errors(), tifffile.TiffFile(self.path) as tif:
                    page = tif.pages.first
                    size = (int(page.imagewidth), int(page.imagelength))
                    file_mpp, fmt = _tiff_mpp(tif), "TIFF"
                    if size[0] * size[1] <= MAX_DECODED_PIXELS:
                        damage = _tiff_damage(tif, self.path.stat().st_size)
            else:
                with warnings.catch_warnings(), Image.open(self.path) as image:
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
                    size, fmt = image.size, image.format or "image"
                    dpi = image.info.get("dpi")
                    file_mpp = 25400.0 / float(dpi[0]) if dpi and dpi[0] else None
        except UnidentifiedImageError as exc:
            raise InputError(self.path, "cannot be opened as a slide or image "
                                        "(not a recognised slide or image format)") from exc
        except Image.DecompressionBombError as exc:
            raise InputError(self.path, f"image is larger than the {MAX_DECODED_PIXELS / 1e6:.0f} megapixels "
                                        f"her2slide decodes at once ({short_cause(exc)})") from exc
        except Exception as exc:  # noqa: BLE001 -- header parsers raise many types for a damaged file
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
        check_decoded_pixels(self.path, size, "image is", "a whole-slide image this large needs a tiled, "
                                                           "pyramidal format (e.g. `vips tiffsave --tile --pyramid`)")
        if damage is not None:
            raise InputError(self.path, f"file is truncated or damaged: {damage}")
        if mpp is None and _plausible(file_mpp) is None:
            self._level(0)  # before asking for --mpp, make sure the pixels can be read at all
        self.mpp, self.mpp_source = resolve_mpp(self.path, _plausible(file_mpp), mpp)

    def _decode(self) -> np.ndarray:
        try:
            with _tifffile_errors(), warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                if self._tiff:
                    return _to_rgb(tifffile.imread(self.path, key=0))
                with Image.open(self.path) as image:
                    return _pil_to_rgb(image)
        except MemoryError as exc:
            raise InputError(self.path, "pixel data are too large to decode in the memory available") from exc
        except Exception as exc:  # noqa: BLE001 -- each decoder (imagecodecs, PIL, zlib...) has its own error types
            raise InputError(self.path, f"pixel data cannot be decoded: the file is truncated or damaged "
                                        f"({short_cause(exc)})") from exc

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
