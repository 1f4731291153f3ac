"""One line, never a traceback (issue 16, class 3): every example of the issue ends as
``her2slide: <file>: <reason>`` with a non-zero exit, and the command's other slides are scored."""

from __future__ import annotations

import errno
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from hardening_fixtures import CLASSICAL, tiny_slide
from her2slide.cli.main import main
from her2slide.errors import ExitStatus, InputError
from her2slide.run import pipeline

HER2SLIDE = [sys.executable, "-m", "her2slide"]


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("slides")
    return {"good": tiny_slide(folder, "good"),
            "four": tiny_slide(folder, "four", score="1+", size_um=700.0, seed=13)}  # 2 x 2 tiles


def her2slide_lines(err: str) -> list[str]:
    """The lines of stderr that are her2slide's messages (progress lines are ``<slide>: n of m tiles``)."""
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("her2slide: ")]


def truncated(slide: Path, folder: Path, fraction: float, suffix: str = ".svs") -> Path:
    data = slide.read_bytes()
    path = folder / f"truncated-{int(100 * fraction)}{suffix}"
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# --- slides that cannot be read -------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.3, 0.9])
@pytest.mark.parametrize("mpp", [[], ["--mpp", "0.25"]])
def test_a_truncated_svs_is_one_line_with_or_without_mpp(fraction: float, mpp: list[str], slides: dict[str, Path],
                                                         tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = truncated(slides["good"], tmp_path, fraction)
    assert main(["score", str(bad), str(slides["good"]), "--out", str(tmp_path / "out"), *mpp, *CLASSICAL]) == 1
    (line,) = her2slide_lines(capsys.readouterr().err)
    assert line.startswith(f"her2slide: {bad}: file is truncated or damaged") and "--mpp" not in line
    assert (tmp_path / "out" / "good" / "report.json").exists()  # the next slide is still scored


def test_a_truncated_jpeg_without_mpp_says_truncated_not_mpp(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "core.jpg", quality=90)
    bad = truncated(tmp_path / "core.jpg", tmp_path, 0.5, ".jpg")
    assert main(["score", str(bad), "--out", str(tmp_path / "out"), *CLASSICAL]) == 1
    (line,) = her2slide_lines(capsys.readouterr().err)
    assert line.startswith(f"her2slide: {bad}: pixel data cannot be decoded: the file is truncated or damaged")


def test_a_decoder_error_of_any_type_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A JPEG-compressed TIFF whose strip data is garbage: imagecodecs raises its own error type."""
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, np.full((256, 256, 3), 200, np.uint8), photometric="rgb", compression="jpeg",
                     resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    with open(path, "r+b") as handle:
        handle.seek(offset + 2)
        handle.write(b"\x00" * (count - 2))
    assert main(["score", str(path), "--out", str(tmp_path / "out"), *CLASSICAL]) == 1
    (line,) = her2slide_lines(capsys.readouterr().err)
    assert line.startswith(f"her2slide: {path}: pixel data cannot be decoded: the file is truncated or damaged (")


def test_a_tiff_header_claiming_a_million_pixels_square_is_refused_before_decoding(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.full((64, 64, 3), 200, np.uint8), photometric="rgb")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        entries = [tif.pages[0].tags[name].offset for name in ("ImageWidth", "ImageLength")]
    for entry in entries:  # each IFD entry: tag, type (LONG = 4), count, value
        data[entry + 2:entry + 4] = struct.pack("<H", 4)
        data[entry + 8:entry + 12] = struct.pack("<I", 1_000_000)
    path.write_bytes(bytes(data))
    assert main(["score", str(path), "--out", str(tmp_path / "out"), "--mpp", "0.25", *CLASSICAL]) == 1
    (line,) = her2slide_lines(capsys.readouterr().err)
    assert line.startswith(f"her2slide: {path}: image is 1000000 x 1000000 px") and "megapixels" in line


# --- the CNN's decode workers ------------------------------------------------------------------------

@pytest.fixture
def cnn_config(tmp_path: Path) -> Path:
    """The shipped CNN on the CPU, 256 µm tiles and a decode worker process: a 700 µm slide is 9 tiles."""
    config = tmp_path / "cnn.yaml"
    config.write_text("segmenter: cnn\ntiling:\n  tile_px: 512\nmodel:\n  device: cpu\n  workers: 1\n")
    return config


def test_a_tile_failing_in_a_dataloader_worker_is_one_line_and_the_next_slide_is_scored(
        slides: dict[str, Path], cnn_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from her2slide.run import engine

    read_tile = engine.read_tile

    def corrupt_in_the_middle(reader, tile, work_mpp):  # runs in the forked DataLoader worker
        if reader.path.stem == "four" and tile.index == 5:
            raise InputError(reader.path, f"tile at {tile.read[:2]} could not be decoded: Corrupt JPEG data")
        return read_tile(reader, tile, work_mpp)

    monkeypatch.setattr(engine, "read_tile", corrupt_in_the_middle)
    code = main(["score", str(slides["four"]), str(slides["good"]), "--out", str(tmp_path / "out"),
                 "--config", str(cnn_config)])
    assert code == ExitStatus.FAILED
    captured = capsys.readouterr()
    (line,) = her2slide_lines(captured.err)
    assert line.startswith(f"her2slide: {slides['four']}: tile at (") and line.endswith("Corrupt JPEG data")
    assert captured.out.startswith(f"{slides['good']}: HER2 3+")  # the next slide of the command
    assert not (tmp_path / "out" / "four").exists()


def test_a_corrupt_level0_tile_with_the_cnn_is_one_line(slides: dict[str, Path], cnn_config: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    corrupt = tmp_path / "corrupt.svs"
    corrupt.write_bytes(slides["four"].read_bytes())
    with tifffile.TiffFile(corrupt) as tif:
        offsets, counts = tif.pages[0].dataoffsets, tif.pages[0].databytecounts
    with open(corrupt, "r+b") as handle:
        for k in range(len(offsets) // 3, 2 * len(offsets) // 3):  # a band of tiles across the slide
            handle.seek(offsets[k] + 2)
            handle.write(b"\xff\x00" * ((counts[k] - 4) // 2))
    code = main(["score", str(corrupt), str(slides["good"]), "--out", str(tmp_path / "out"),
                 "--config", str(cnn_config)])
    assert code == ExitStatus.FAILED
    (line,) = her2slide_lines(capsys.readouterr().err)
    assert line.startswith(f"her2slide: {corrupt}: ") and "decode" in line
    assert (tmp_path / "out" / "good" / "report.json").exists()


# --- configs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(bytes(range(256)) * 8), "config is not a text file; expected YAML"),
    (lambda p: p.mkdir(), "config is a folder; expected a YAML file"),
    (lambda p: p.write_text("qc:\n  max_counterstain_od: .inf\n"), "invalid setting qc.max_counterstain_od: "
                                                                  "Input should be a finite number"),
    (lambda p: p.write_text("tiling:\n  work_mpp: .nan\n"), "invalid setting tiling.work_mpp: Input should be a "
                                                                   "finite number"),
    (lambda p: p.write_text("a: " + "[" * 100_000 + "]" * 100_000), "config is nested too deeply to be a settings file"),
])
def test_a_bad_config_is_one_line_before_any_work(make, reason: str, slides: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "bad.yaml"
    make(config)
    assert main(["score", str(slides["good"]), "--out", str(tmp_path / "out"), "--config", str(config)]) == 1
    assert her2slide_lines(capsys.readouterr().err) == [f"her2slide: {config}: {reason}"]
    assert not (tmp_path / "out").exists()


def test_an_unreadable_config_is_one_line(slides: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "secret.yaml"
    config.write_text("segmenter: classical\n")
    if os.geteuid() == 0:  # root reads any file: refuse it the way the kernel would
        real = Path.read_text

        def denied(self: Path, *args: object, **kwargs: object) -> str:
            if self == config:
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", denied)
    else:
        config.chmod(0)
    assert main(["score", str(slides["good"]), "--out", str(tmp_path / "out"), "--config", str(config)]) == 1
    assert her2slide_lines(capsys.readouterr().err) == [f"her2slide: {config}: config cannot be read "
                                                        "(Permission denied)"]


# --- where the results go ------------------------------------------------------------------------

def _deny_writing(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` read-only, also for root (who may write anywhere the kernel lets it)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder else real(p, mode, **kw))


@pytest.mark.parametrize("where, reason", [
    ("read-only", "cannot write here (permission denied)"),
    ("under-read-only", "cannot write in {parent} (permission denied)"),
    ("a-file", "exists and is not a folder; --out needs a folder"),
    ("under-a-file", "a part of this path ({parent}) is a file, not a folder"),
])
def test_an_out_that_cannot_be_written_is_one_line_before_any_work(where: str, reason: str, slides: dict[str, Path],
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    parent = tmp_path / "parent"
    out = parent / "out" if where.startswith("under") else parent
    if where.endswith("a-file"):
        parent.write_text("a file")
    else:
        parent.mkdir()
        _deny_writing(monkeypatch, parent)
    assert main(["score", str(slides["good"]), "--out", str(out), *CLASSICAL]) == 1
    assert her2slide_lines(capsys.readouterr().err) == [f"her2slide: {out}: {reason.format(parent=parent)}"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_really_read_only_out_is_one_line(slides: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    assert main(["score", str(slides["good"]), "--out", str(out), *CLASSICAL]) == 1
    assert her2slide_lines(capsys.readouterr().err) == [f"her2slide: {out}: cannot write here (permission denied)"]


def test_a_full_disk_is_one_line_and_keeps_the_previous_result(slides: dict[str, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["score", str(slides["good"]), "--out", str(out), *CLASSICAL]) == 0
    before = (out / "good" / "report.json").read_bytes()

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "write_review_outputs", no_space)
    assert main(["score", str(slides["good"]), "--out", str(out), *CLASSICAL]) == 1
    assert her2slide_lines(capsys.readouterr().err) == [
        f"her2slide: {out / 'good'}: results could not be written (No space left on device); nothing was kept"]
    assert (out / "good" / "report.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["good"]  # no staging folder left behind


def test_an_unexpected_error_in_one_slide_is_one_line_and_the_others_go_on(slides: dict[str, Path], tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture) -> None:
    real = pipeline.file_sha256

    def bug_for_four(path: Path) -> str:  # a bug that strikes one slide only
        if Path(path).stem == "four":
            raise ZeroDivisionError("division by zero")
        return real(path)

    monkeypatch.setattr(pipeline, "file_sha256", bug_for_four)
    assert main(["score", str(slides["four"]), str(slides["good"]), "--out", str(tmp_path), *CLASSICAL]) == 1
    captured = capsys.readouterr()
    assert her2slide_lines(captured.err) == [
        f"her2slide: {slides['four']}: unexpected error (ZeroDivisionError: division by zero); please report it "
        "(HER2SLIDE_DEBUG=1 shows the traceback)"]
    assert captured.out.startswith(f"{slides['good']}: HER2")


# --- calibrate ---------------------------------------------------------------------------------------

def test_calibrate_with_a_control_without_tumour_cells_is_one_line_and_fits_the_others(
        slides: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    glass = tmp_path / "glass-and-stroma.svs"  # QC removes every tumour cell of this copy
    glass.write_bytes(slides["four"].read_bytes())
    config = tmp_path / "edges.yaml"
    config.write_text("segmenter: classical\nqc:\n  edge_um: 100000\n")
    good = tiny_slide(tmp_path, "ctl3")
    code = main(["calibrate", f"{glass}=0", f"{good}=3+", "--out", str(tmp_path / "lab.yaml"), "--config", str(config)])
    assert code == ExitStatus.FAILED
    lines = her2slide_lines(capsys.readouterr().err)
    assert lines[0].startswith(f"her2slide: {glass}: failed QC (only 0 tumour cells")
    assert all(line.startswith("her2slide: warning: no ") for line in lines[1:])


# --- signals and pipes ------------------------------------------------------------------------------

def _wait_for(predicate, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("command", ["score", "batch"])
def test_ctrl_c_is_one_line_exit_130_and_no_partial_outputs(command: str, slides: dict[str, Path],
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.Popen([*HER2SLIDE, command, str(slides["four"]), str(slides["good"]), "--out", str(out),
                            *CLASSICAL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(p.name.startswith(".four.partial-") for p in out.glob(".*")))
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == ExitStatus.INTERRUPTED
    assert her2slide_lines(stderr) == ["her2slide: interrupted"]
    assert [p.name for p in out.iterdir() if "partial" in p.name or p.name.endswith(".lock")] == []
    assert not (out / "four").exists()
    if command == "batch":  # the summary is still written, the slides listed as not reached
        rows = (out / "summary.csv").read_text().splitlines()
        assert [row.split(",")[2] for row in rows[1:]] == ["pending", "pending"]


def test_a_closed_stdout_ends_quietly(slides: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["score", str(slides["four"]), "--out", str(out), *CLASSICAL]) == 0
    run = subprocess.Popen([*HER2SLIDE, "sampling-risk", str(out / "four"), "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    assert run.stdout is not None
    run.stdout.close()  # `| head -c 0`: the reader is gone before anything is printed
    assert run.wait(timeout=120) == ExitStatus.BROKEN_PIPE
    assert run.stderr is not None and run.stderr.read() == b""


def test_sigterm_is_one_line_and_cleans_up(slides: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.Popen([*HER2SLIDE, "score", str(slides["four"]), "--out", str(out), *CLASSICAL],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(p.name.startswith(".four.partial-") for p in out.glob(".*")))
    run.terminate()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == ExitStatus.TERMINATED and her2slide_lines(stderr) == ["her2slide: terminated"]
    assert list(out.iterdir()) == []


def test_refusing_a_bad_file_imports_no_torch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 100)
    code = ("import sys\nfrom her2slide.cli.main import main\n"
            f"code = main(['score', {str(bad)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
            "print(code, 'torch' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["1", "False"]
    (line,) = her2slide_lines(run.stderr)
    assert line.startswith(f"her2slide: {bad}: cannot be opened as a slide or image (")
