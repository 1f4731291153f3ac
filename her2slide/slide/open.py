"""``open_slide``: the one door into a slide, choosing the backend that reads it."""

from __future__ import annotations

from pathlib import Path

from her2slide.errors import InputError
from her2slide.slide.reader import SlideReader


def open_slide(path: str | Path, mpp: float | None = None) -> SlideReader:
    """Open a whole-slide file or a plain image field as a :class:`SlideReader`.

    OpenSlide reads every format it recognises; plain JPEG/PNG/TIFF images (which it
    does not, or reads without pyramid or pixel size) go to the image backend.
    ``mpp`` overrides the file's pixel size. Problems raise ``InputError`` naming the
    reason: missing file, unreadable file, missing or implausible pixel size, tiny image.
    """
    # Imported here, not at the top: importing her2slide.slide must not load OpenSlide and the
    # image decoders, only opening a slide does (the CLI and the library import this package early).
    from her2slide.slide import image_backend, openslide_backend

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if openslide_backend.recognises(path):
        return openslide_backend.OpenSlideReader(path, mpp)
    return image_backend.ImageReader(path, mpp)
