"""Deep Zoom tiles of the scored slide, through the pipeline's own reader interface.

OpenSlide's :class:`openslide.deepzoom.DeepZoomGenerator` cuts any
:class:`openslide.AbstractSlide` into Deep Zoom tiles. :class:`ReaderSlide` presents a
her2slide :class:`~her2slide.slide.SlideReader` as one, so vendor slides and plain images
(a JPEG TMA core through the image backend's virtual pyramid) are served by the same code,
from the same pixels that were scored. The slide is opened only after its SHA-256 matches
the one recorded in report.json: a review must show the slide that was scored.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openslide
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from her2slide.errors import InputError
from her2slide.provenance import file_sha256
from her2slide.slide import SlideReader, open_slide

#: Tile side and overlap: 254 + 2 * 1 = 256 px per tile, the size OpenSeadragon draws best.
TILE_SIZE = 254
TILE_OVERLAP = 1


class ReaderSlide(openslide.AbstractSlide):
    """A :class:`SlideReader` seen through OpenSlide's slide interface (for DeepZoomGenerator)."""

    def __init__(self, reader: SlideReader) -> None:
        super().__init__()
        self._reader = reader
        # Plain-image readers decode lazily and cache levels; one reader serves many threads.
        self._lock = threading.Lock()

    @classmethod
    def detect_format(cls, filename: str | Path) -> str | None:
        return None  # built from an open reader, never from a file name

    def close(self) -> None:
        self._reader.close()

    @property
    def level_count(self) -> int:
        return len(self._reader.level_dimensions)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple(tuple(d) for d in self._reader.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self._reader.level_downsamples)

    @property
    def properties(self) -> Mapping[str, str]:
        return self._reader.properties

    @property
    def associated_images(self) -> Mapping[str, Image.Image]:
        return {}

    def get_best_level_for_downsample(self, downsample: float) -> int:
        fine_enough = [i for i, d in enumerate(self.level_downsamples) if d <= downsample]
        return max(fine_enough, key=lambda i: self.level_downsamples[i], default=0)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        """RGBA (opaque: the reader already put transparent pixels on white glass)."""
        with self._lock:
            rgb = self._reader.read_region(location[0], location[1], level, size[0], size[1])
        return Image.fromarray(np.ascontiguousarray(rgb)).convert("RGBA")


class SlideTiles:
    """The Deep Zoom pyramid of one slide: its descriptor (DZI XML) and PNG tiles."""

    def __init__(self, reader: SlideReader) -> None:
        self.reader = reader
        self._generator = DeepZoomGenerator(ReaderSlide(reader), tile_size=TILE_SIZE, overlap=TILE_OVERLAP)

    @property
    def level_count(self) -> int:
        return self._generator.level_count

    def dzi(self) -> str:
        return self._generator.get_dzi("png")

    def descriptor(self) -> dict[str, object]:
        """The DZI descriptor as OpenSeadragon's inline tile source (saves the page one request)."""
        width, height = self._generator.level_dimensions[-1]
        return {"Image": {"xmlns": "http://schemas.microsoft.com/deepzoom/2008", "Url": "/slide_files/",
                          "Format": "png", "Overlap": str(TILE_OVERLAP), "TileSize": str(TILE_SIZE),
                          "Size": {"Width": str(width), "Height": str(height)}}}

    def tile_png(self, level: int, col: int, row: int) -> bytes | None:
        """One tile as PNG (lossless: what is shown is the slide's pixels); None for no such tile."""
        if not 0 <= level < self._generator.level_count:
            return None
        cols, rows = self._generator.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            return None
        tile = self._generator.get_tile(level, (col, row))
        buffer = io.BytesIO()
        tile.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


def open_scored_slide(report: dict, override: Path | None = None) -> SlideReader:
    """The slide a report was made from, refused unless its SHA-256 matches the report's.

    ``override`` points at the file when it moved; without it the path recorded in the
    report's provenance is used. The pixel size recorded in the report is used, so a plain
    image scored with ``--mpp`` opens the same way.
    """
    provenance = report.get("provenance") or {}
    path = Path(override) if override is not None else Path(provenance.get("input") or "")
    if not str(path) or not path.is_file():
        raise InputError(path, "slide not found; give its current location with --slide")
    expected = provenance.get("input_sha256")
    actual = file_sha256(path)
    if expected and actual != expected:
        raise InputError(path, f"this file is not the slide that was scored (SHA-256 {actual[:12]}…, "
                               f"report.json records {str(expected)[:12]}…); refusing to show it")
    slide = provenance.get("slide") or {}
    mpp = slide.get("mpp") if slide.get("mpp_source") == "override" else None
    return open_slide(path, mpp=mpp)
