"""The slide reader protocol and the behaviour both backends share (her2slide.slide.open picks one).

Every coordinate a reader takes is in level-0 pixels; every resolution is named by its
unit (µm per pixel, ``mpp``) or by a pyramid ``level``. Readers are picklable: pickling
drops the open file handle, and the copy reopens the file lazily, so a DataLoader or Dask
worker process gets its own handle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from her2slide.errors import InputError

#: Pixel sizes outside this range cannot be a brightfield scan at cell resolution
#: (0.05 µm/px is beyond optical resolution; 2 µm/px is coarser than a 5x scan).
MIN_MPP = 0.05
MAX_MPP = 2.0
#: A side shorter than this cannot hold a scorable piece of tissue at any plausible mpp.
MIN_SIDE_PX = 64
#: Largest level region decoded at once when building a thumbnail (pixels), so a
#: single-level slide never has to be held in memory whole.
_THUMBNAIL_CHUNK_PX = 4096 * 4096
#: The most pixels decoded for one image: a plain image (decoded whole) or the pyramid level
#: an overview is read from. PIL's own decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS),
#: so every reader refuses the same files: a 38 kB file that decodes to 40 000² px (13 GB)
#: is refused at once instead of after a minute. A whole-slide file is streamed tile by tile
#: and may be far larger, as long as it has coarser levels for its overview.
MAX_DECODED_PIXELS = 178_956_970
#: Relative slack when picking a level: a downsample of 4.02 still serves a 4x request.
_LEVEL_TOLERANCE = 1.01

MPP_HINT = "no pixel size in the file metadata; pass --mpp (e.g. --mpp 0.25 for a 40x scan)"


@runtime_checkable
class SlideReader(Protocol):
    """What the rest of the pipeline may ask of a slide, whatever the file format."""

    path: Path
    mpp: float
    mpp_source: str
    dimensions: tuple[int, int]
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    vendor: str | None
    properties: dict[str, str]

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray: ...
    def level_for_mpp(self, target_mpp: float) -> int: ...
    def read_at_mpp(self, x: int, y: int, width0: int, height0: int, target_mpp: float) -> np.ndarray: ...
    def thumbnail(self, target_mpp: float) -> tuple[np.ndarray, float]: ...
    def close(self) -> None: ...


class BaseReader:
    """Level choice, resampling and thumbnails on top of a backend's ``_read_level``.

    A backend sets the attributes of :class:`SlideReader`, implements
    ``_read_level(x, y, level, width, height) -> RGB uint8`` (opening its handle on first
    use), and lists in ``_transient`` the state that is not pickled and that ``close()`` drops.
    """

    path: Path
    mpp: float
    mpp_source: str
    dimensions: tuple[int, int]
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    vendor: str | None
    properties: dict[str, str]
    _transient: tuple[str, ...] = ()

    def _read_level(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        raise NotImplementedError

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) at ``level``, origin (x, y) in level-0 pixels.

        Pixels outside the slide or transparent in the file come back white (glass).
        """
        if not 0 <= level < len(self.level_dimensions):
            raise ValueError(f"level {level} out of range 0..{len(self.level_dimensions) - 1}")
        if width <= 0 or height <= 0:
            raise ValueError(f"region size must be positive, got {width} x {height}")
        return self._read_level(int(x), int(y), level, int(width), int(height))

    def level_for_mpp(self, target_mpp: float) -> int:
        """Coarsest level still at least as fine as ``target_mpp`` (level 0 if none is)."""
        limit = target_mpp / self.mpp * _LEVEL_TOLERANCE
        fine_enough = [i for i, d in enumerate(self.level_downsamples) if d <= limit]
        return max(fine_enough, key=lambda i: self.level_downsamples[i], default=0)

    def read_at_mpp(self, x: int, y: int, width0: int, height0: int, target_mpp: float) -> np.ndarray:
        """The level-0 box (x, y, width0, height0) resampled to ``target_mpp``.

        Read from the best level, then area-averaged (PIL BOX) to
        ``round(width0 * mpp / target_mpp)`` columns and the same for rows.
        """
        out_w = max(1, round(width0 * self.mpp / target_mpp))
        out_h = max(1, round(height0 * self.mpp / target_mpp))
        level = self.level_for_mpp(target_mpp)
        ds = self.level_downsamples[level]
        box = (0.0, 0.0, width0 / ds, height0 / ds)
        rgb = self.read_region(x, y, level, max(1, math.ceil(box[2])), max(1, math.ceil(box[3])))
        return _resample(rgb, box, out_w, out_h)

    def thumbnail(self, target_mpp: float) -> tuple[np.ndarray, float]:
        """The whole slide at about ``target_mpp`` (never finer than level 0) and its exact mpp.

        Decoded in horizontal strips, so a slide without a coarse level is never held
        in memory at full resolution.
        """
        target_mpp = max(target_mpp, self.mpp)
        w0, h0 = self.dimensions
        out_w = max(1, round(w0 * self.mpp / target_mpp))
        out_h = max(1, round(h0 * self.mpp / target_mpp))
        level = self.level_for_mpp(target_mpp)
        lw, lh = self.level_dimensions[level]
        check_decoded_pixels(self.path, (lw, lh), "its overview would be read from a level of",
                             "it needs coarser pyramid levels (e.g. `vips tiffsave --tile --pyramid`)")
        fy = lh / out_h  # level rows per output row
        ds = self.level_downsamples[level]
        rows_per_strip = max(1, int(_THUMBNAIL_CHUNK_PX / (lw * fy)))
        out = np.empty((out_h, out_w, 3), np.uint8)
        for r0 in range(0, out_h, rows_per_strip):
            r1 = min(out_h, r0 + rows_per_strip)
            top = math.floor(r0 * fy)
            bottom = min(lh, math.ceil(r1 * fy))
            strip = self.read_region(0, round(top * ds), level, lw, max(1, bottom - top))
            out[r0:r1] = _resample(strip, (0.0, r0 * fy - top, lw, r1 * fy - top), out_w, r1 - r0)
        return out, self.mpp * w0 / out_w

    def close(self) -> None:
        """Release the file handle; a later read reopens it."""
        for name in self._transient:
            setattr(self, name, None)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in self._transient:
            state[name] = None
        return state

    def __enter__(self) -> BaseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return (f"{type(self).__name__}({str(self.path)!r}, {w}x{h}, mpp={self.mpp:.4g} "
                f"({self.mpp_source}), levels={len(self.level_dimensions)})")


def _resample(rgb: np.ndarray, box: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    """Resize the (fractional) ``box`` of ``rgb`` to width x height; area average when shrinking."""
    if rgb.shape[:2] == (height, width) and box == (0.0, 0.0, float(width), float(height)):
        return rgb
    shrinking = (box[2] - box[0]) >= width
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((width, height), method, box=box))


def rgba_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite straight (non-premultiplied) RGBA onto white: transparent means glass."""
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.float32) / 255.0
    return np.rint(rgb * a + 255.0 * (1.0 - a)).astype(np.uint8)


def resolve_mpp(path: Path, metadata_mpp: float | None, override: float | None) -> tuple[float, str]:
    """The mpp to use and where it came from; refuses missing or implausible values."""
    if override is not None:
        mpp, source = float(override), "override"
    elif metadata_mpp is not None:
        mpp, source = float(metadata_mpp), "metadata"
    else:
        raise InputError(path, MPP_HINT)
    if not (math.isfinite(mpp) and MIN_MPP <= mpp <= MAX_MPP):
        raise InputError(path, f"pixel size {mpp:.4g} µm/px is implausible for cell-level scoring "
                               f"(expected {MIN_MPP:g}–{MAX_MPP:g} µm/px)")
    return mpp, source


def check_size(path: Path, dimensions: tuple[int, int]) -> None:
    """Refuse images too small to hold tissue, before asking anything about pixel size."""
    w, h = dimensions
    if min(w, h) < MIN_SIDE_PX:
        raise InputError(path, f"image is {w} x {h} px, too small to hold tissue")


def check_decoded_pixels(path: Path, size: tuple[int, int], what: str, remedy: str) -> None:
    """Refuse to decode an image of ``size`` (width, height) above :data:`MAX_DECODED_PIXELS`."""
    w, h = size
    if w * h > MAX_DECODED_PIXELS:
        raise InputError(path, f"{what} {w} x {h} px ({w * h / 1e6:,.0f} megapixels), more than the "
                               f"{MAX_DECODED_PIXELS / 1e6:.0f} megapixels her2slide decodes at once; {remedy}")


def short_cause(exc: BaseException, limit: int = 120) -> str:
    """One line of an exception's message, for a reason shown to a person."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
