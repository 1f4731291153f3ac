"""The overlapped tile stream: plan order whatever the thread timing, bounded tiles in flight,
errors surface and stop the stream. A fake segmenter and measurement stand in for the real ones."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from her2slide.config import Settings, TilingSettings
import her2slide.run.tile_stream as tile_stream


@dataclass
class FakeSegmenter:
    """Streams ``n`` tiles (the tile is its index); records how many were taken and whether
    the stream was closed."""

    n: int
    taken: int = 0
    closed: bool = False

    def stream(self, reader, plan, stain):
        try:
            for i in range(self.n):
                self.taken += 1
                yield i, np.full((2, 2, 3), i, np.uint8), None
        finally:
            self.closed = True

    def maps(self, rgb, evidence, stain, spoilt=None):
        return int(rgb[0, 0, 0])


@dataclass
class Recorder:
    """Fake cell measurement: sleeps a random time (so threads finish out of order) and
    records the most tiles it ever held at once."""

    fail_on: int | None = None
    busy: int = 0
    most: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, index, tile, downsample, mpp, settings):
        with self.lock:
            self.busy += 1
            self.most = max(self.most, self.busy)
        time.sleep(np.random.default_rng(index).uniform(0, 0.02))
        with self.lock:
            self.busy -= 1
        if index == self.fail_on:
            raise ValueError(f"tile {index} is broken")
        return {"index": np.array([index])}


def _run(segmenter: FakeSegmenter, threads: int, recorder: Recorder, monkeypatch: pytest.MonkeyPatch,
         limit: int | None = None) -> list[int]:
    monkeypatch.setattr(tile_stream, "measure_tile_maps", recorder)
    settings = Settings(tiling=TilingSettings(measure_threads=threads))
    screen = SimpleNamespace(assess=lambda tile, rgb, downsample, mpp: SimpleNamespace(spoilt=None))
    plan = SimpleNamespace(downsample=2.0)
    reader = SimpleNamespace(mpp=0.25)
    seconds: dict[str, float] = {}
    out = []
    stream = tile_stream.measured_tiles(reader, plan, None, settings, segmenter, screen, seconds)
    for measured in stream:
        out.append(int(measured.cells["index"][0]))
        if limit is not None and len(out) == limit:
            stream.close()
            break
    assert seconds["read_and_segment"] >= 0
    return out


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_tiles_come_back_in_plan_order_whatever_finishes_first(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    segmenter = FakeSegmenter(30)
    assert _run(segmenter, threads, recorder, monkeypatch) == list(range(30))
    assert segmenter.closed
    assert 1 <= recorder.most <= threads


def test_the_stream_runs_at_most_threads_plus_two_tiles_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays flat: stop reading after 3 results and at most 3 + threads + 2 tiles were taken."""
    segmenter = FakeSegmenter(100)
    _run(segmenter, 2, Recorder(), monkeypatch, limit=3)
    assert segmenter.closed
    assert segmenter.taken <= 3 + 2 + 2


def test_a_failing_tile_raises_and_closes_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    segmenter = FakeSegmenter(40)
    with pytest.raises(ValueError, match="tile 5 is broken"):
        _run(segmenter, 2, Recorder(fail_on=5), monkeypatch)
    assert segmenter.closed
    assert segmenter.taken < 40  # it stopped reading instead of finishing the slide first
