"""Bounded work (issue 16, class 4): a decoded-pixel limit on every reader, decode workers that
die with their parent, a per-slide time limit for a batch. (A 1000-vertex self-crossing ROI:
tests/test_roi.py; the input checked before torch is imported: tests/test_bad_input.py.)"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import psutil
import pytest
import tifffile

from hardening_fixtures import CLASSICAL, tiny_slide
from her2slide.cli.main import main
from her2slide.config import BatchSettings, Settings
from her2slide.errors import InputError, SlideTimeout
from her2slide.run.batch import run_batch
from her2slide.run.batch_jobs import SlideJob
from her2slide.run.lifeline import die_with_parent
from her2slide.run.pipeline import SlideOutcome
from her2slide.run.time_limit import time_limit
from her2slide.slide import open_slide
from her2slide.slide import reader as reader_module


def blank_tiled_tiff(path: Path, side: int, tile: int = 1024) -> Path:
    """A single-level tiled TIFF of ``side``² px of glass at 0.5 µm/px, written from one
    pre-compressed tile: 40 000² px in a 5 MB file, made in well under a second."""
    encoded = zlib.compress(np.full((tile, tile, 3), 250, np.uint8).tobytes(), 9)
    count = (-(-side // tile)) ** 2
    tifffile.imwrite(path, (encoded for _ in range(count)), shape=(side, side, 3), dtype=np.uint8,
                     compression="zlib", tile=(tile, tile), photometric="rgb",
                     resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    return path


@pytest.mark.timeout(60)
def test_a_small_file_that_decodes_to_40000_px_square_is_refused_at_once(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    bomb = blank_tiled_tiff(tmp_path / "bomb.tif", 40_000)
    assert bomb.stat().st_size < 6_000_000
    assert main(["score", str(bomb), "--out", str(tmp_path / "out"), "--mpp", "0.5", *CLASSICAL]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"her2slide: {bomb}: its overview would be read from a level of 40000 x 40000 px "
                          "(1,600 megapixels), more than the 179 megapixels")
    assert "coarser pyramid levels" in err and err.count("\n") == 1


def test_every_reader_applies_the_same_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_module, "MAX_DECODED_PIXELS", 1000 * 1000)
    tiled = open_slide(blank_tiled_tiff(tmp_path / "tiled.tif", 2048), mpp=0.5)  # OpenSlide: streams tiles...
    tiled.read_region(0, 0, 0, 512, 512)
    with pytest.raises(InputError, match="its overview would be read from a level of 2048 x 2048 px"):
        tiled.thumbnail(8.0)  # ... but its overview would decode a whole level
    plain = tmp_path / "plain.tif"  # a plain image is decoded whole, so it is refused at open
    tifffile.imwrite(plain, np.full((1200, 1000, 3), 250, np.uint8), photometric="rgb")
    monkeypatch.setattr("her2slide.slide.image_backend.MAX_DECODED_PIXELS", 1000 * 1000)
    with pytest.raises(InputError, match="image is 1000 x 1200 px"):
        open_slide(plain, mpp=0.5)


# --- decode workers die with their parent ---------------------------------------------------------

def _parent(pids: multiprocessing.Queue, watchdog_only: bool) -> None:
    """A process with one child that guards itself as a DataLoader worker does, then sleeps."""

    def child() -> None:
        if watchdog_only:
            import her2slide.run.lifeline as lifeline

            lifeline._parent_death_signal = lambda: None  # only the watchdog thread guards
        die_with_parent()
        time.sleep(120)

    worker = multiprocessing.get_context("fork").Process(target=child)
    worker.start()
    pids.put(worker.pid)
    time.sleep(120)


@pytest.mark.parametrize("watchdog_only", [False, True])
def test_a_worker_dies_when_its_parent_is_killed(watchdog_only: bool) -> None:
    context = multiprocessing.get_context("fork")
    pids: multiprocessing.Queue = context.Queue()
    parent = context.Process(target=_parent, args=(pids, watchdog_only))
    parent.start()
    worker = psutil.Process(pids.get(timeout=30))
    time.sleep(0.5)  # the guard is in place
    os.kill(parent.pid, signal.SIGKILL)
    parent.join(10)
    gone, alive = psutil.wait_procs([worker], timeout=10)
    assert alive == [] and gone


@pytest.mark.slow
def test_kill_9_of_score_takes_its_dataloader_workers_with_it(tmp_path: Path) -> None:
    slide = tiny_slide(tmp_path, "big", size_um=1500.0)
    config = tmp_path / "workers.yaml"
    config.write_text("segmenter: cnn\ntiling:\n  tile_px: 256\nmodel:\n  device: cpu\n  workers: 2\n")
    run = subprocess.Popen([sys.executable, "-m", "her2slide", "score", str(slide), "--out", str(tmp_path / "out"),
                            "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(workers := psutil.Process(run.pid).children()) < 2:
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    run.kill()
    run.wait()
    gone, alive = psutil.wait_procs(workers, timeout=15)
    for orphan in alive:  # a failing test must not leave them behind either
        orphan.kill()
    assert alive == [], f"{len(alive)} decode workers outlived their parent"


# --- a time limit per slide ------------------------------------------------------------------------

def test_time_limit_raises_in_the_thread_it_guards_and_nowhere_else() -> None:
    with pytest.raises(SlideTimeout), time_limit(0.2):
        while True:
            time.sleep(0.01)
    caught: list[BaseException] = []

    def in_a_thread() -> None:
        try:
            with time_limit(0.2):
                while True:
                    time.sleep(0.01)
        except SlideTimeout as exc:
            caught.append(exc)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    assert len(caught) == 1
    with time_limit(0.05):
        pass
    time.sleep(0.2)  # a limit that was not reached raises nothing later


def test_a_slide_past_the_batch_time_limit_fails_with_its_reason_and_the_batch_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def stub(path: Path, out_root: Path, settings: Settings, **kwargs: object) -> SlideOutcome:
        while Path(path).stem == "hangs":  # a slide that never finishes (a stalled share, a looping decoder)
            time.sleep(0.01)
        folder = Path(out_root) / Path(path).stem
        from her2slide.outputs.result_folder import staged_result

        with staged_result(folder, path) as staging:
            (staging / "report.json").write_text('{"score": "0"}')
        return SlideOutcome(folder, {"score": "0", "status": "negative", "category": "HER2-null"})

    monkeypatch.setattr("her2slide.run.pipeline.score_slide_file", stub)
    monkeypatch.setattr("her2slide.run.batch.segmenter_for", lambda settings: None)
    inputs = []
    for name in ("hangs", "fine"):
        (tmp_path / f"{name}.svs").write_bytes(name.encode())
        inputs.append(SlideJob(tmp_path / f"{name}.svs"))
    settings = Settings(batch=BatchSettings(slide_time_limit_min=0.01))  # 0.6 s
    report = run_batch(inputs, tmp_path / "out", settings)
    assert [r.outcome for r in report.results] == ["failed", "scored"]
    assert report.results[0].reason == ("still running after 0.01 min, the batch's per-slide time limit "
                                        "(batch.slide_time_limit_min); stopped")
    failed = (tmp_path / "out" / "hangs" / "failed.json").read_text()
    assert '"kind": "time-limit"' in failed
    assert [p.name for p in (tmp_path / "out").iterdir() if "partial" in p.name] == []


def test_the_time_limit_does_not_change_the_fingerprint() -> None:
    from her2slide.provenance import config_sha256

    limited = Settings(batch=BatchSettings(slide_time_limit_min=5)).dump()
    assert config_sha256(limited) == config_sha256(Settings().dump())
    assert config_sha256(Settings(criteria="gastric-biopsy").dump()) != config_sha256(Settings().dump())
