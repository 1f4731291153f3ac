"""Whole-slide formats through OpenSlide (Aperio, Hamamatsu, DICOM, tiled generic TIFF, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide

from her2slide.errors import InputError
from her2slide.slide.reader import BaseReader, check_size, resolve_mpp, rgba_on_white, short_cause


def recognises(path: Path) -> bool:
    """Whether OpenSlide claims the file (plain JPEG/PNG and untiled TIFF it does not)."""
    try:
        return openslide.OpenSlide.detect_format(str(path)) is not None
    except openslide.OpenSlideError:
        return False


def _metadata_mpp(properties: dict[str, str]) -> float | None:
    """Mean of OpenSlide's mpp-x / mpp-y, whichever are present."""
    values = []
    for key in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y):
        try:
            values.append(float(properties[key]))
        except (KeyError, ValueError):
            pass
    return sum(values) / len(values) if values else None


class OpenSlideReader(BaseReader):
    """A :class:`~her2slide.slide.reader.SlideReader` over ``openslide.OpenSlide``."""

    _transient = ("_slide",)

    def __init__(self, path: Path, mpp: float | None = None) -> None:
        self.path = Path(path)
        self._slide: openslide.OpenSlide | None = None
        slide = self._handle()
        self.properties = dict(slide.properties)
        self.vendor = self.properties.get(openslide.PROPERTY_NAME_VENDOR)
        self.dimensions = tuple(slide.dimensions)
        self.level_dimensions = tuple(tuple(d) for d in slide.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in slide.level_downsamples)
        try:
            # Decode one pixel now, so a file whose tiles are corrupt fails at open with
            # its real cause, not later as "too small" or halfway through a batch.
            self._read_level(0, 0, len(self.level_dimensions) - 1, 1, 1)
            check_size(self.path, self.dimensions)
            self.mpp, self.mpp_source = resolve_mpp(self.path, _metadata_mpp(self.properties), mpp)
        except InputError:
            self.close()
            raise

    def _handle(self) -> openslide.OpenSlide:
        if self._slide is None:
            try:
                self._slide = openslide.OpenSlide(str(self.path))
            except (openslide.OpenSlideError, OSError) as exc:
                raise InputError(self.path, f"cannot be opened as a slide or image ({short_cause(exc)})") from exc
        return self._slide

    def _read_level(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        try:
            region = self._handle().read_region((x, y), level, (width, height))
        except openslide.OpenSlideError as exc:
            # OpenSlide handles are unusable after an error; drop it so a retry reopens.
            self.close()
            raise InputError(self.path, f"pixel data cannot be decoded ({short_cause(exc)})") from exc
        return rgba_on_white(np.asarray(region))

    def close(self) -> None:
        if self._slide is not None:
            self._slide.close()
        super().close()
