"""The segmenter, loaded only when a slide that passed its checks needs it.

Loading the CNN imports torch and reads the weights (~4 s and ~1 GB). A command refusing a
bad file must not pay that, so ``score`` and ``calibrate`` hand the pipeline this loader
instead of a loaded segmenter; the pipeline calls it after the slide's checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

from her2slide.config import Settings
from her2slide.errors import InputError
from her2slide.run.engine import Segmenter, make_segmenter

#: A segmenter, or a function that makes one once the slide has passed its checks.
SegmenterSource = Union[Segmenter, Callable[[], Segmenter]]


class SegmenterOnFirstUse:
    """Makes the settings' segmenter on the first call and returns the same one after.

    ``failed`` keeps the error when loading failed (a bad weights file): that is the
    command's problem, not a slide's, and no later slide can be scored either.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._segmenter: Segmenter | None = None
        self.failed: InputError | None = None

    def __call__(self) -> Segmenter:
        if self.failed is not None:
            raise self.failed
        if self._segmenter is None:
            try:
                self._segmenter = make_segmenter(self._settings)
            except InputError as exc:
                self.failed = exc
                raise
        return self._segmenter


def ready(segmenter: SegmenterSource | None, settings: Settings) -> Segmenter:
    """The segmenter to use now: the one given, the one a loader makes, or the settings' own."""
    if segmenter is None:
        return make_segmenter(settings)
    return segmenter() if callable(segmenter) else segmenter
