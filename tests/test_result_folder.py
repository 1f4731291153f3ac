"""Nothing in the output folder is ever lost (issue 16, class 1): names of their own, only
her2slide's own folders replaced, recoverable replacement, one writer per folder."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import stat
from pathlib import Path

import pytest

from hardening_fixtures import CLASSICAL, hold_lock_elsewhere, tiny_slide
from her2slide.cli.main import main
from her2slide.config import Settings
from her2slide.errors import OutputFolderError
from her2slide.outputs import atomic
from her2slide.outputs.atomic import previous_path, recover, staged_folder
from her2slide.outputs.result_folder import MARKER, foreign_entries, lock_path, result_folder, staged_result
from her2slide.run.batch import run_batch
from her2slide.run.batch_jobs import SlideJob

CLASSICAL_SETTINGS = Settings(segmenter="classical")


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("slides")
    return {"good": tiny_slide(folder, "good"), "other": tiny_slide(folder, "other", score="0", seed=12)}


def copy_as(slide: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(slide, folder / name))


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (hidden ones too)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- names of their own -------------------------------------------------------------------------

@pytest.mark.parametrize("name, why", [
    ("..svs", "gives no output folder of its own"),
    ("...svs", "gives no output folder of its own"),
    (".hidden.svs", "hidden name"),
    ("summary.csv.svs", "name of a file a batch writes"),
    ("summary.parquet.tiff", "name of a file a batch writes"),
    ("batch.log.jsonl.svs", "name of a file a batch writes"),
    ("batch.shard-0-of-4.log.jsonl.svs", "name of a file a batch writes"),
])
def test_a_stem_that_is_not_a_folder_of_its_own_is_refused(name: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(OutputFolderError, match=why):
        result_folder(tmp_path / "out", tmp_path / name)
    assert result_folder(tmp_path / "out", tmp_path / "case.1.svs") == tmp_path / "out" / "case.1"


def test_score_of_dot_dot_svs_leaves_the_output_folder_alone(slides: dict[str, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["score", str(slides["other"]), "--out", str(out), *CLASSICAL]) == 0
    (out / "notes.txt").write_text("the lab's own notes")
    before = tree(out)
    dots = [copy_as(slides["good"], tmp_path / "in", name) for name in ("..svs", "...svs")]
    assert main(["score", *map(str, dots), "--out", str(out), *CLASSICAL]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("her2slide: ")]
    assert errors == [f"her2slide: {dot}: its name gives no output folder of its own ('{dot.stem}' would be DIR "
                      "itself or its parent); rename the file" for dot in dots]
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # nothing written beside --out


def test_batch_with_dot_names_keeps_other_results_and_the_log(slides: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cohort" / "out"
    dots = [copy_as(slides["good"], tmp_path / "in", name) for name in ("..svs", "...svs")]
    jobs = [SlideJob(slides["other"]), *map(SlideJob, dots)]
    report = run_batch(jobs, out, CLASSICAL_SETTINGS)
    assert [r.outcome for r in report.results] == ["scored", "failed", "failed"]
    assert all("no output folder of its own" in r.reason for r in report.results[1:])
    assert (out / "other" / "report.json").exists() and (out / "batch.log.jsonl").exists()
    assert sorted(p.name for p in (tmp_path / "cohort").iterdir()) == ["out"]  # no failed.json outside
    rerun = run_batch(jobs, out, CLASSICAL_SETTINGS)
    assert [r.outcome for r in rerun.results] == ["skipped", "failed", "failed"]


def test_stems_of_batch_files_cannot_take_over_the_summary_or_the_log(slides: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    clashing = [copy_as(slides["good"], tmp_path / "in", name) for name in ("summary.csv.svs", "batch.log.jsonl.svs")]
    out = tmp_path / "out"
    jobs = [SlideJob(slides["other"]), *map(SlideJob, clashing)]
    for _ in range(2):  # the second run must find its log and summary where it left them
        report = run_batch(jobs, out, CLASSICAL_SETTINGS)
        assert [r.outcome for r in report.results][1:] == ["failed", "failed"]
        assert (out / "summary.csv").is_file() and (out / "batch.log.jsonl").is_file()
    runs = [json.loads(line)["event"] for line in (out / "batch.log.jsonl").read_text().splitlines()]
    assert runs.count("start") == 2 and runs.count("end") == 2


# --- only her2slide's own folders are replaced ---------------------------------------------------

def test_an_unrelated_folder_with_the_slides_stem_is_not_replaced(slides: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    cases = tmp_path / "cases"
    slide = copy_as(slides["good"], cases, "case1.svs")
    (cases / "case1").mkdir()
    (cases / "case1" / "notes.docx").write_text("a pathologist's notes")
    assert main(["score", str(slide), "--out", str(cases), *CLASSICAL]) == 1
    err = capsys.readouterr().err
    assert f"her2slide: {cases / 'case1'}: holds notes.docx, which her2slide did not write" in err
    assert tree(cases / "case1") == {"notes.docx": b"a pathologist's notes"}

    report = run_batch([SlideJob(slide)], cases, CLASSICAL_SETTINGS)  # a batch neither replaces nor writes into it
    assert report.results[0].outcome == "failed" and "did not write" in report.results[0].reason
    assert tree(cases / "case1") == {"notes.docx": b"a pathologist's notes"}


def test_a_file_or_link_with_the_slides_stem_is_not_replaced(slides: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "good").write_text("a file")
    with pytest.raises(OutputFolderError, match="is a file her2slide did not write"):
        run_or_raise(slides["good"], out)
    (out / "good").unlink()
    (tmp_path / "elsewhere").mkdir()
    (out / "good").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputFolderError, match="is a link"):
        run_or_raise(slides["good"], out)


def run_or_raise(slide: Path, out: Path) -> None:
    from her2slide.run.pipeline import score_slide_file

    score_slide_file(slide, out, CLASSICAL_SETTINGS)


def test_her2slides_own_folders_are_replaced(slides: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_or_raise(slides["good"], out)
    folder = out / "good"
    listed = json.loads((folder / MARKER).read_text())["files"]
    assert {"report.json", "cells.parquet", "maps.zarr"} <= set(listed)
    (folder / "done.json").write_text("{}")  # what a batch adds later is its own too
    (folder / ".done.json.tmp").write_text("{")  # ... also a record torn by a kill
    assert foreign_entries(folder) == []
    run_or_raise(slides["good"], out)
    # A folder from before the file list: report.json with provenance and the result files only.
    (folder / MARKER).unlink()
    assert foreign_entries(folder) == []
    (folder / "mine.txt").write_text("x")
    assert foreign_entries(folder) == ["mine.txt"]


def test_the_viewer_era_files_are_her2slides_own(tmp_path: Path) -> None:
    """A folder scored before the file list existed, with the QC blocks, the ROI and a sign-off
    (issue 15), holds nothing foreign; neither does one with a sign-off torn by a kill."""
    folder = tmp_path / "slide"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"score": "1+", "provenance": {"input_sha256": "ab"}}))
    for name in ("cells.parquet", "qc_excluded.parquet", "roi.geojson", "signoff.json", ".signoff.json.tmp"):
        (folder / name).write_text("x")
    assert foreign_entries(folder) == []


# --- a replacement that a kill cannot lose ------------------------------------------------------

def _replace_and_die_at(module: object, name: str, call: int, destination: Path) -> None:
    """Runs in a child process: replace ``destination``, and die (no clean-up at all) at the
    ``call``-th call of ``module.name`` during the replacement, as ``kill -9`` would."""
    real, calls = getattr(module, name), []

    def dying(*args: object) -> None:
        calls.append(args)
        if len(calls) == call:
            os._exit(9)
        real(*args)

    setattr(module, name, dying)
    with staged_folder(destination) as staging:
        (staging / "report.json").write_text("new")


def _killed_during_replacement(destination: Path, module: object, name: str, call: int) -> None:
    child = multiprocessing.get_context("fork").Process(target=_replace_and_die_at,
                                                        args=(module, name, call, destination))
    child.start()
    child.join(30)
    assert child.exitcode == 9


@pytest.fixture
def old_result(tmp_path: Path) -> Path:
    destination = tmp_path / "out" / "slide"
    with staged_result(destination, tmp_path / "in" / "slide.svs") as staging:
        (staging / "report.json").write_text("old")
    return destination


def test_a_kill_between_the_two_renames_loses_nothing_and_a_rerun_restores(old_result: Path) -> None:
    _killed_during_replacement(old_result, atomic.os, "replace", 2)  # old stepped aside, new never arrived
    assert not old_result.exists() and (previous_path(old_result) / "report.json").read_text() == "old"
    recover(old_result)  # what every later run of this slide does first
    assert (old_result / "report.json").read_text() == "old"
    assert sorted(p.name for p in old_result.parent.iterdir()) == ["slide"]


def test_a_rerun_that_fails_still_restores_the_old_result(old_result: Path, capsys: pytest.CaptureFixture) -> None:
    _killed_during_replacement(old_result, atomic.os, "replace", 2)
    missing = old_result.parent.parent / "in" / "slide.svs"  # the rerun cannot even open its slide
    assert main(["score", str(missing), "--out", str(old_result.parent), *CLASSICAL]) == 1
    assert "file not found" in capsys.readouterr().err
    assert (old_result / "report.json").read_text() == "old"


def test_a_kill_after_the_new_result_arrived_keeps_the_new_one(old_result: Path) -> None:
    _killed_during_replacement(old_result, atomic.shutil, "rmtree", 1)  # before the old copy is deleted
    assert (old_result / "report.json").read_text() == "new" and previous_path(old_result).exists()
    recover(old_result)
    assert (old_result / "report.json").read_text() == "new" and not previous_path(old_result).exists()


def test_an_error_in_the_second_rename_puts_the_old_result_back_at_once(old_result: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = os.replace, []

    def failing(src: os.PathLike, dst: os.PathLike) -> None:
        calls.append(src)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OSError), staged_folder(old_result) as staging:
        (staging / "report.json").write_text("new")
    assert (old_result / "report.json").read_text() == "old"
    assert sorted(p.name for p in old_result.parent.iterdir()) == ["slide"]


def test_result_folders_follow_the_umask(slides: dict[str, Path], tmp_path: Path) -> None:
    previous = os.umask(0o002)  # a lab sharing results by group
    try:
        run_or_raise(slides["good"], tmp_path / "out")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "out" / "good").stat().st_mode)
    assert mode == 0o775


# --- one writer per folder ------------------------------------------------------------------------

def test_a_second_score_of_the_same_slide_says_who_is_scoring_it(slides: dict[str, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = hold_lock_elsewhere(lock_path(out / "good"))
    try:
        assert main(["score", str(slides["good"]), "--out", str(out), *CLASSICAL]) == 1
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"her2slide: {slides['good']}: already being scored by PID {holder.pid} (into {out / 'good'};" in err
    assert not (out / "good").exists()
    assert main(["score", str(slides["good"]), "--out", str(out), *CLASSICAL]) == 0  # the lock died with it
    assert sorted(p.name for p in out.iterdir()) == ["good"]  # and the run leaves no lock file behind


def test_a_second_batch_on_one_folder_is_refused_and_changes_nothing(slides: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["batch", str(slides["good"]), "--out", str(out), *CLASSICAL]) == 0
    before = tree(out)
    holder = hold_lock_elsewhere(out / ".batch.lock")
    try:
        assert main(["batch", str(slides["good"]), "--out", str(out), *CLASSICAL]) == 2
        assert main(["batch", str(slides["good"]), "--out", str(out), "--shard", "0/2", *CLASSICAL]) == 0
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"her2slide: {out}: already being scored by PID {holder.pid} (another batch on this folder;" in err
    assert tree(out)["good/report.json"] == before["good/report.json"]


def test_a_slide_held_by_another_run_fails_in_a_batch_without_a_record(slides: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = hold_lock_elsewhere(lock_path(out / "good"))
    try:
        report = run_batch([SlideJob(slides["good"]), SlideJob(slides["other"])], out, CLASSICAL_SETTINGS)
    finally:
        holder.kill()
        holder.wait()
    assert [r.outcome for r in report.results] == ["failed", "scored"]
    assert f"already being scored by PID {holder.pid}" in report.results[0].reason
    assert not (out / "good").exists()  # the other run's folder: no failed.json written into it


def test_staged_result_lists_what_it_wrote(tmp_path: Path) -> None:
    with staged_result(tmp_path / "slide", tmp_path / "slide.svs") as staging:
        (staging / "report.json").write_text("{}")
        (staging / "maps.zarr").mkdir()
    marker = json.loads((tmp_path / "slide" / MARKER).read_text())
    assert marker["files"] == ["maps.zarr", "report.json"] and marker["slide"] == str(tmp_path / "slide.svs")


def test_a_filesystem_without_file_locks_still_scores_and_says_so(slides: dict[str, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from filelock import FileLock

    def no_flock(self: FileLock, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")  # Lustre mounted without -o flock

    monkeypatch.setattr(FileLock, "acquire", no_flock)
    assert main(["score", str(slides["good"]), "--out", str(tmp_path), *CLASSICAL]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [f"her2slide: warning: {tmp_path}: this filesystem has no file locks, so two runs writing "
                        "here at the same time are not kept apart"]

