"""Progress over a slide's tiles: a bar on a terminal, one line otherwise, nothing in a batch.

Scoring a resection takes minutes (about 15 on a 2-core CPU), so ``score``, ``calibrate`` and
``demo`` show how far it is. A tqdm bar goes to stderr only when stderr is a terminal; when it
is a file or a pipe (a log), a bar's carriage returns would be noise, so one line says how many
tiles took how long once the slide is done. Results (stdout) are never mixed with either.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TextIO

#: Called once per tile (the pipeline passes the tile's cells, which progress ignores).
Tick = Callable[..., None]
#: Given the number of tiles, a context that yields the tick.
Progress = Callable[[int], AbstractContextManager[Tick]]


@contextmanager
def no_progress(total: int) -> Iterator[Tick]:
    """Progress that shows nothing (a batch shows slides instead)."""
    yield lambda *_: None


def tile_progress(label: str, stream: TextIO | None = None) -> Progress:
    """Progress over the tiles of the slide called ``label``, on ``stream`` (default stderr)."""

    @contextmanager
    def over(total: int) -> Iterator[Tick]:
        out = stream or sys.stderr
        if out.isatty():
            from tqdm import tqdm

            with tqdm(total=total, desc=label, unit="tile", file=out, leave=False) as bar:
                yield lambda *_: bar.update()
            return
        start, done = time.perf_counter(), [0]

        def tick(*_: object) -> None:
            done[0] += 1

        yield tick
        print(f"{label}: {done[0]} of {total} tiles measured in {time.perf_counter() - start:.1f} s",
              file=out, flush=True)

    return over
