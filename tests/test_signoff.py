"""signoff.json: an append-only history beside report.json, which it never changes."""

from __future__ import annotations

import json
import os
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hardening_fixtures import CLASSICAL, hold_lock_elsewhere, tiny_slide
from her2slide.cli.main import main
from her2slide.config import Settings
from her2slide.errors import InputError, OutputFolderError
from her2slide.outputs import atomic
from her2slide.outputs.atomic import staged_folder
from her2slide.outputs.result_folder import foreign_entries, lock_path, staged_result
from her2slide.outputs.signoff import SIGNOFF_FILE, current, read_history, sign_off
from her2slide.provenance import file_sha256
from her2slide.run.batch import run_batch
from her2slide.run.batch_jobs import SlideJob


@pytest.fixture()
def result(tmp_path: Path) -> Path:
    folder = tmp_path / "slide-1"
    folder.mkdir()
    report = {"score": "3+", "status": "positive", "category": "HER2-positive", "criteria": "breast",
              "provenance": {"input_sha256": "ab" * 32, "code_version": "0.1.0"}}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def test_history_is_appended_and_report_never_changes(result: Path) -> None:
    before = (result / "report.json").read_bytes()
    first = sign_off(result, "Dr A", accept=True, now=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    second = sign_off(result, "  Dr B\x00 ", score="2+", note="membranes weaker at 40x\nsee block B")
    assert (result / "report.json").read_bytes() == before
    history = read_history(result)
    assert history == [first, second]
    assert first["decision"] == "accepted" and first["score"] == "3+" and first["time"] == "2025-01-02T03:04:05+00:00"
    assert (second["decision"], second["score"], second["category"], second["status"], second["reviewer"]) == \
        ("amended", "2+", "equivocal", "equivocal", "Dr B")
    assert second["note"] == "membranes weaker at 40x\nsee block B"
    assert second["algorithm"]["score"] == "3+" and second["report_sha256"] == file_sha256(result / "report.json")
    assert current(result)["current"] is True
    (result / "report.json").write_text(json.dumps({"score": "1+", "criteria": "breast"}))  # re-scored since
    assert current(result)["current"] is False


@pytest.mark.parametrize("kwargs, message", [
    ({"reviewer": " ", "accept": True}, "reviewer's name"),
    ({"reviewer": "Dr A"}, "score must be one of"),
    ({"reviewer": "Dr A", "score": "4+"}, "score must be one of"),
    ({"reviewer": "Dr A", "score": "0"}, "HER2-null or HER2-ultralow"),
    ({"reviewer": "Dr A", "score": "1+", "category": "HER2-positive"}, "needs its category"),
    ({"reviewer": "Dr A", "accept": True, "score": "2+"}, "not both"),
    ({"reviewer": "x" * 121, "accept": True}, "at most 120"),
])
def test_bad_signoffs_are_refused_and_nothing_is_written(result: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        sign_off(result, **kwargs)
    assert not (result / SIGNOFF_FILE).exists()


def test_breast_zero_takes_the_category_given(result: Path) -> None:
    assert sign_off(result, "Dr A", score="0", category="HER2-ultralow")["category"] == "HER2-ultralow"


def test_a_damaged_history_is_left_alone(result: Path) -> None:
    (result / SIGNOFF_FILE).write_text("{not json")
    with pytest.raises(InputError, match="cannot be read"):
        sign_off(result, "Dr A", accept=True)
    assert (result / SIGNOFF_FILE).read_text() == "{not json"


def test_json_nested_too_deeply_is_one_line(result: Path, capsys: pytest.CaptureFixture) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    (result / SIGNOFF_FILE).write_text(nested)
    assert main(["signoff", str(result), "--accept", "--reviewer", "Dr A"]) == 1
    assert "sign-off history cannot be read" in capsys.readouterr().err
    (result / SIGNOFF_FILE).unlink()
    (result / "report.json").write_text(nested)
    assert main(["signoff", str(result), "--accept", "--reviewer", "Dr A"]) == 1
    err = capsys.readouterr().err
    assert err == f"her2slide: {result / 'report.json'}: cannot be read (JSON nested too deeply)\n"


def test_command_line(result: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["signoff", str(result), "--score", "2+", "--reviewer", "Dr A", "--note", "checked"]) == 0
    assert "Dr A amended HER2 2+ (equivocal; algorithm 3+): checked" in capsys.readouterr().out
    assert main(["signoff", str(result), "--accept", "--reviewer", "Dr B"]) == 0
    assert [e["reviewer"] for e in read_history(result)] == ["Dr A", "Dr B"]
    capsys.readouterr()
    assert main(["signoff", str(result), "--show"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["signoff", str(result), "--accept"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("her2slide: ") and "reviewer's name" in err and len(err.splitlines()) == 1
    assert main(["signoff", str(result.parent / "nothing-here"), "--accept", "--reviewer", "Dr A"]) == 1
    assert "report.json: not found" in capsys.readouterr().err


def test_signing_off_inside_the_result_folder_records_its_slide(result: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """`her2slide signoff .` run in the folder: the history names the slide, not "" (the name of ".")."""
    monkeypatch.chdir(result)
    assert main(["signoff", ".", "--accept", "--reviewer", "Dr A"]) == 0
    assert json.loads((result / SIGNOFF_FILE).read_text())["slide"] == "slide-1"
    assert [e["reviewer"] for e in read_history(result)] == ["Dr A"]
    assert not lock_path(result).exists() and "Dr A accepted HER2 3+" in capsys.readouterr().out


def test_a_rescore_keeps_the_history(result: Path) -> None:
    sign_off(result, "Dr A", accept=True)
    history = (result / SIGNOFF_FILE).read_text()
    with staged_folder(result, keep=(SIGNOFF_FILE,)) as staging:
        (staging / "report.json").write_text(json.dumps({"score": "2+", "criteria": "breast"}))
    assert (result / SIGNOFF_FILE).read_text() == history
    assert current(result)["current"] is False


# --- a sign-off and the result folder's rules (issue 16): the same lock, never foreign, never lost -----------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_slide(tmp_path_factory.mktemp("slides"), "tiny")


def test_a_signed_result_is_rescored_and_keeps_its_history(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["score", str(tiny), "--out", str(out), *CLASSICAL]) == 0
    sign_off(out / "tiny", "Dr A", accept=True)
    history = (out / "tiny" / SIGNOFF_FILE).read_bytes()
    assert foreign_entries(out / "tiny") == []  # a sign-off does not make the folder foreign
    assert main(["score", str(tiny), "--out", str(out), *CLASSICAL]) == 0
    assert (out / "tiny" / SIGNOFF_FILE).read_bytes() == history
    report = run_batch([SlideJob(tiny)], out, Settings(segmenter="classical"), overwrite=True)
    assert report.results[0].outcome == "scored" and (out / "tiny" / SIGNOFF_FILE).read_bytes() == history


def test_a_failed_swap_leaves_the_signed_result_whole(result: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with staged_result(result, result.parent / "slide-1.svs") as staging:  # made a her2slide folder
        shutil.copy(result / "report.json", staging / "report.json")
    sign_off(result, "Dr A", accept=True)
    history = (result / SIGNOFF_FILE).read_bytes()
    real = os.replace

    def failing(src: os.PathLike, dst: os.PathLike) -> None:
        if Path(dst) == result and ".partial-" in Path(src).name:  # the new result cannot take the old one's place
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(InputError, match="results could not be written"), \
            staged_result(result, result.parent / "slide-1.svs") as staging:
        (staging / "report.json").write_text("{}")
    assert (result / SIGNOFF_FILE).read_bytes() == history  # copied into the new result, never moved
    assert sorted(p.name for p in result.parent.iterdir()) == ["slide-1"]


def test_a_signoff_during_a_score_names_it_and_writes_nothing(result: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("her2slide.outputs.signoff.LOCK_WAIT_S", 0.2)
    holder = hold_lock_elsewhere(lock_path(result))
    try:
        with pytest.raises(OutputFolderError, match=f"already being scored by PID {holder.pid} .*; sign off once it "
                                                    "has finished"):
            sign_off(result, "Dr A", accept=True)
    finally:
        holder.kill()
        holder.wait()
    assert not (result / SIGNOFF_FILE).exists()
    sign_off(result, "Dr A", accept=True)
    assert len(read_history(result)) == 1 and not lock_path(result).exists()


def test_a_signoff_waits_for_another_to_finish(result: Path) -> None:
    holder = hold_lock_elsewhere(lock_path(result))  # another sign-off, say, that ends in a moment
    threading.Timer(0.5, holder.kill).start()
    try:
        sign_off(result, "Dr B", accept=True)
    finally:
        holder.kill()
        holder.wait()
    assert [e["reviewer"] for e in read_history(result)] == ["Dr B"]
