"""`her2slide batch`: resumable, failure-isolated, serial or on Dask, with a cohort summary.

The resumability units replace the pipeline with a stub that writes a report at once, so
they test the batch logic in milliseconds; the Dask and kill tests score real (tiny)
synthetic slides and the bad files of ../shared/data/slides.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq
import pytest
import tifffile
from distributed.diagnostics.plugin import WorkerPlugin

from her2slide.cli.batch import dask_client, detect_gpus, gpu_ids, parse_shard
from her2slide.cli.main import main
from her2slide.config import Settings
from her2slide.errors import InputError, UnsuitableSlideError
from her2slide.outputs.atomic import write_json_atomic
from her2slide.outputs.result_folder import DONE, FAILED, staged_result
from her2slide.provenance import file_sha256
from her2slide.run import batch_summary
from her2slide.run.batch import run_batch
from her2slide.run.batch_jobs import SlideJob, check_jobs, in_shard, jobs_from_paths, read_manifest
from her2slide.run.batch_records import run_fingerprint, same_fingerprint
from her2slide.run.batch_summary import SUMMARY_COLUMNS
from her2slide.run.pipeline import SlideOutcome
from her2slide.scoring import Criteria
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The bad files of ../shared/data/slides and a word of the reason each must be recorded with.
BAD_FILES = {
    "CMU-1-Small-Region.svs": "H&E",
    "tcga-cr-7395-jpeg2000-no-mpp.svs": "--mpp",
    "dicom-multiframe.dcm": "implausible",
    "fluorescence-dapi.ndpi": "fluorescence",
    "openslide-fixture-small.svs": "too small",
    "openslide-fixture-boxes.tiff": "implausible",
    "openslide-fixture-unopenable.tiff": "cannot be opened",
    "openslide-fixture-unreadable.svs": "cannot be decoded",
}


# --- stub pipeline for the fast units ------------------------------------------------------------

class StubPipeline:
    """Stands in for ``score_slide_file``: records calls, writes a minimal report atomically."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.rois: list[Path | None] = []
        self.errors: dict[str, BaseException] = {}

    def __call__(self, path: Path, out_root: Path, settings: Settings, mpp: float | None = None,
                 segmenter: object = None, roi: Path | None = None) -> SlideOutcome:
        path = Path(path)
        self.calls.append(path.stem)
        self.rois.append(roi)
        destination = Path(out_root) / path.stem
        with staged_result(destination, path) as staging:
            if path.stem in self.errors:
                raise self.errors[path.stem]
            report = {"score": "1+", "status": "negative", "category": "HER2-low",
                      "criteria": settings.criteria.value, "cells": {"total": 10, "percent": {"0": 50.0, "1+": 50.0,
                                                                                           "2+": 0.0, "3+": 0.0}},
                      "qc": [], "timings": {"total": 0.01}, "mpp": mpp}
            write_json_atomic(staging / "report.json", report)
        return SlideOutcome(destination, report)


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> StubPipeline:
    fake = StubPipeline()
    monkeypatch.setattr("her2slide.run.pipeline.score_slide_file", fake)
    monkeypatch.setattr("her2slide.run.batch.segmenter_for", lambda settings: None)  # no weights to load
    return fake


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for name in ("a", "b", "c", "d"):
        (folder / f"{name}.svs").write_bytes(name.encode() * 100)
        paths.append(folder / f"{name}.svs")
    return paths


def jobs_of(paths: list[Path]) -> list[SlideJob]:
    return [SlideJob(p) for p in paths]


def events(out: Path, name: str = "batch.log.jsonl") -> list[list[dict[str, Any]]]:
    """The log's events, split into runs at each ``start``."""
    runs: list[list[dict[str, Any]]] = []
    for line in (out / name).read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            runs.append([])
        runs[-1].append(event)
    return runs


def summary(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --- manifests, globs, shards ------------------------------------------------------------------

def test_manifest_resolves_relative_paths_and_reads_overrides(tmp_path: Path) -> None:
    manifest = tmp_path / "cohort" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text("\ufeffpath,mpp,criteria,roi,patient\n"
                        "slides/a.svs,,,,p1\n"
                        "/abs/b.jpg,0.25,gastric-biopsy,rois/b.geojson,p2\n")
    a, b = read_manifest(manifest)
    assert a == SlideJob(manifest.parent / "slides" / "a.svs")
    assert b == SlideJob(Path("/abs/b.jpg"), 0.25, Criteria.GASTRIC_BIOPSY, manifest.parent / "rois" / "b.geojson")


@pytest.mark.parametrize("text, reason", [
    ("slide\nx.svs\n", "manifest needs a header row with a 'path' column"),
    ("path,mpp\nx.svs,fast\n", "line 2: mpp 'fast' is not a number"),
    ("path,criteria\nx.svs,breast\ny.svs,lung\n", "line 3: criteria 'lung' is not one of"),
    ("path,mpp\n,0.5\n", "line 2: empty path"),
])
def test_bad_manifest_is_one_line(tmp_path: Path, text: str, reason: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(InputError) as raised:
        read_manifest(manifest)
    assert raised.value.path == str(manifest) and raised.value.reason.startswith(reason)


def test_globs_expand_sorted_and_an_empty_glob_is_refused(inputs: list[Path], tmp_path: Path) -> None:
    jobs = jobs_from_paths([str(tmp_path / "in" / "*.svs"), str(tmp_path / "missing.svs")])
    assert [j.path for j in jobs] == [*inputs, tmp_path / "missing.svs"]
    with pytest.raises(InputError, match="no files match"):
        jobs_from_paths([str(tmp_path / "*.ndpi")])


def test_slides_with_the_same_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="same name as"):
        check_jobs([SlideJob(tmp_path / "x" / "s.svs"), SlideJob(tmp_path / "y" / "s.ndpi")])


def test_shards_partition_the_manifest_in_order() -> None:
    shards = [[k for k in range(10) if in_shard(k, (i, 3))] for i in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1", "-1/2", "a/b"):
        with pytest.raises(Exception, match="expected i/n"):
            parse_shard(bad)


def test_shards_together_score_everything_once(stub: StubPipeline, inputs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(jobs_of(inputs), out, Settings(), shard=(1, 2))
    assert stub.calls == ["b", "d"]
    assert [r["run_status"] for r in summary(out)] == ["pending", "scored", "pending", "scored"]
    run_batch(jobs_of(inputs), out, Settings(), shard=(0, 2))
    assert stub.calls == ["b", "d", "a", "c"]
    assert [r["run_status"] for r in summary(out)] == ["scored", "skipped", "scored", "skipped"]
    assert (out / "batch.shard-0-of-2.log.jsonl").exists() and (out / "batch.shard-1-of-2.log.jsonl").exists()


# --- resumability ------------------------------------------------------------------------------

def test_rerun_skips_finished_slides(stub: StubPipeline, inputs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_batch(jobs_of(inputs), out, Settings())
    assert first.count("scored") == 4 and stub.calls == ["a", "b", "c", "d"]
    marker = json.loads((out / "a" / DONE).read_text())
    fingerprint = run_fingerprint(Settings(), file_sha256(inputs[0]))
    assert {k: marker["fingerprint"][k] for k in fingerprint} == fingerprint
    assert marker["outcome"] == "scored" and marker["score"] == "1+" and marker["finished"]
    mtimes = [(out / p.stem / DONE).stat().st_mtime_ns for p in inputs]

    second = run_batch(jobs_of(inputs), out, Settings())
    assert second.count("skipped") == 4 and stub.calls == ["a", "b", "c", "d"]
    assert [(out / p.stem / DONE).stat().st_mtime_ns for p in inputs] == mtimes
    assert [e["event"] for e in events(out)[1]] == ["start", *["slide_skipped"] * 4, "end"]


def test_changed_config_input_mpp_or_criteria_redo_only_what_changed(stub: StubPipeline, inputs: list[Path],
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs = jobs_of(inputs)
    run_batch(jobs, out, Settings())
    stub.calls.clear()

    os.utime(inputs[0], ns=(1, 1))  # touched, same content: hashed again, still done
    inputs[1].write_bytes(b"changed")
    jobs[2] = SlideJob(inputs[2], mpp=0.25)
    jobs[3] = SlideJob(inputs[3], criteria=Criteria.GASTRIC_RESECTION)
    run_batch(jobs, out, Settings())
    assert stub.calls == ["b", "c", "d"]
    assert json.loads((out / "d" / "report.json").read_text())["criteria"] == "gastric-resection"

    stub.calls.clear()
    run_batch(jobs, out, Settings.model_validate({"qc": {"min_tumour_cells": 50}}))
    assert stub.calls == ["a", "b", "c", "d"]


def test_overwrite_forces_a_rescore(stub: StubPipeline, inputs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(jobs_of(inputs[:2]), out, Settings())
    assert run_batch(jobs_of(inputs[:2]), out, Settings(), overwrite=True).count("scored") == 2
    assert stub.calls == ["a", "b", "a", "b"]


def test_a_marker_without_its_report_or_torn_is_not_done(stub: StubPipeline, inputs: list[Path],
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(jobs_of(inputs[:2]), out, Settings())
    (out / "a" / "report.json").unlink()
    (out / "b" / DONE).write_text('{"slide": "b", "fingerp')
    run_batch(jobs_of(inputs[:2]), out, Settings())
    assert stub.calls == ["a", "b", "a", "b"]


def test_dirty_flag_does_not_invalidate_but_a_commit_does() -> None:
    recorded = {"input_sha256": "x", "code_version": "0.1.0+gabc1234"}
    assert same_fingerprint(recorded, {**recorded, "code_version": "0.1.0+gabc1234.dirty"})
    assert not same_fingerprint(recorded, {**recorded, "code_version": "0.1.0+gdef5678"})
    assert not same_fingerprint(recorded, {**recorded, "input_sha256": "y"})


# --- failures ----------------------------------------------------------------------------------

def test_failures_are_recorded_and_retried_and_never_stop_the_batch(stub: StubPipeline, inputs: list[Path],
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    stub.errors = {"a": UnsuitableSlideError(inputs[0], "no tissue found; not scored"),
                   "c": RuntimeError("segmenter exploded\nsecond line"),
                   "d": InputError(tmp_path / "d.geojson", "ROI file not found")}
    report = run_batch(jobs_of(inputs), out, Settings())
    assert [r.outcome for r in report.results] == ["failed", "scored", "failed", "failed"]
    assert [r.reason for r in report.failed] == ["no tissue found; not scored",
                                                 "RuntimeError: segmenter exploded second line",
                                                 f"{tmp_path / 'd.geojson'}: ROI file not found"]
    record = json.loads((out / "c" / FAILED).read_text())
    assert record["kind"] == "error" and "segmenter exploded" in record["traceback"]
    assert json.loads((out / "a" / FAILED).read_text())["kind"] == "unsuitable"
    assert not (out / "a" / DONE).exists() and not (out / "a" / "report.json").exists()
    rows = summary(out)
    assert list(rows[0]) == list(SUMMARY_COLUMNS)
    assert [(r["run_status"], r["reason"]) for r in rows[:2]] == [("failed", "no tissue found; not scored"),
                                                                   ("scored", "")]
    assert [e["event"] for e in events(out)[0]].count("slide_failed") == 3

    stub.errors = {}
    assert run_batch(jobs_of(inputs), out, Settings()).count("scored") == 3
    assert stub.calls[-3:] == ["a", "c", "d"] and not (out / "a" / FAILED).exists()


def test_a_failed_redo_keeps_the_earlier_result(stub: StubPipeline, inputs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(jobs_of(inputs[:1]), out, Settings())
    stub.errors = {"a": InputError(inputs[0], "pixel data cannot be decoded (boom)")}
    run_batch(jobs_of(inputs[:1]), out, Settings(), overwrite=True)
    assert (out / "a" / "report.json").exists() and (out / "a" / DONE).exists() and (out / "a" / FAILED).exists()
    assert summary(out)[0]["run_status"] == "failed"


def test_cli_exit_codes(stub: StubPipeline, inputs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "out")
    assert main(["batch", str(tmp_path / "in" / "*.svs"), "--out", out]) == 0
    assert main(["batch", str(inputs[0]), str(tmp_path / "missing.svs"), "--out", out]) == 1
    captured = capsys.readouterr()
    assert f"her2slide: {tmp_path / 'missing.svs'}: file not found" in captured.err
    assert "1 already done, 1 failed" in captured.out
    bad = tmp_path / "bad.csv"
    bad.write_text("file\nx\n")
    assert main(["batch", "--manifest", str(bad), "--out", out]) == 2
    assert main(["batch", "--out", out]) == 2


def test_a_slides_roi_is_passed_on_and_an_edited_roi_redoes_it(stub: StubPipeline, inputs: list[Path],
                                                               tmp_path: Path) -> None:
    roi = tmp_path / "a.geojson"
    roi.write_text('{"type": "FeatureCollection", "features": []}')
    jobs = [SlideJob(inputs[0], roi=roi), SlideJob(inputs[1])]
    run_batch(jobs, tmp_path / "out", Settings())
    run_batch(jobs, tmp_path / "out", Settings())
    roi.write_text('{"type": "FeatureCollection", "features": [] }')
    run_batch(jobs, tmp_path / "out", Settings())
    assert list(zip(stub.calls, stub.rois)) == [("a", roi), ("b", None), ("a", roi)]


def test_summary_reads_qc_as_list_or_verdict_and_the_pattern() -> None:
    base = {"score": "2+", "cells": {"total": 5, "percent": {"0": 1.0}}, "timings": {"total": 2.0}}
    listed = batch_summary._report_columns({**base, "qc": ["few_tumour_cells"]})
    assert (listed["qc_verdict"], listed["qc_flags"], listed["pattern"]) == (None, "few_tumour_cells", None)
    verdict = batch_summary._report_columns({**base, "qc": {"verdict": "fail", "flags": ["blur", "ink"]},
                                     "heterogeneity": {"pattern": "focal"}})
    assert (verdict["qc_verdict"], verdict["qc_flags"], verdict["pattern"]) == ("fail", "blur;ink", "focal")


def test_gpu_detection_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert detect_gpus() == ["2", "3"] and gpu_ids("auto") == ["2", "3"] and gpu_ids(1) == ["2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,1")
    assert detect_gpus() == ["0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus() == [] and gpu_ids(None) == []


# --- real slides: Dask against serial, and a kill -------------------------------------------------

@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three tiny synthetic slides (a few seconds each) and a copy of one with a corrupt tile."""
    folder = tmp_path_factory.mktemp("cohort")
    slides = [make_synthetic_slide(SlideSpec(name=f"tiny-{i}", pattern="homogeneous", score=score,
                                             size_um=(450.0, 450.0), seed=20 + i), folder).svs
              for i, score in enumerate(("3+", "1+", "0"))]
    corrupt = folder / "corrupt-tile.svs"
    shutil.copy(slides[0], corrupt)
    with tifffile.TiffFile(corrupt) as tif:
        offsets, counts = tif.pages[0].dataoffsets, tif.pages[0].databytecounts
    middle = len(offsets) // 2
    with open(corrupt, "r+b") as handle:  # the slide opens, and a level-0 tile fails to decode later
        handle.seek(offsets[middle])
        handle.write(b"\0" * counts[middle])
    return [*slides, corrupt]


def assert_same_results(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        ra, rb = (json.loads((root / name / "report.json").read_text()) for root in (a, b))
        assert {k: ra[k] for k in ("score", "status", "category", "cells", "qc")} == \
               {k: rb[k] for k in ("score", "status", "category", "cells", "qc")}
        assert pq.read_table(a / name / "cells.parquet").equals(pq.read_table(b / name / "cells.parquet"))


@pytest.mark.slow
def test_two_dask_workers_match_serial_and_record_bad_files(cohort: list[Path], shared_data: Path,
                                                            tmp_path: Path) -> None:
    bad = [shared_data / "slides" / name for name in BAD_FILES]
    jobs = [SlideJob(p) for p in [cohort[0], *bad[:4], cohort[1], cohort[3], *bad[4:]]]
    serial = run_batch(jobs, tmp_path / "serial", Settings())
    with dask_client(workers=2, gpus=None, scheduler=None) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        parallel = run_batch(jobs, tmp_path / "dask", Settings(), client=client)

    good = [cohort[0].stem, cohort[1].stem]
    for report in (serial, parallel):
        outcomes = {r.name: r for r in report.results}
        assert [outcomes[n].outcome for n in good] == ["scored", "scored"]
        assert re.match(r"tile at \(\d+, \d+\) could not be decoded: ", outcomes["corrupt-tile"].reason)
        for name, word in BAD_FILES.items():
            assert outcomes[Path(name).stem].outcome == "failed" and word in outcomes[Path(name).stem].reason
    assert_same_results(tmp_path / "serial", tmp_path / "dask", good)
    rows = {r["slide"]: r for r in summary(tmp_path / "dask")}
    assert [r["slide"] for r in summary(tmp_path / "dask")] == [j.name for j in jobs]
    assert rows[good[0]]["score"] == "3+" and float(rows[good[0]]["percent_3+"]) > 10
    assert pq.read_table(tmp_path / "dask" / "summary.parquet").num_rows == len(jobs)
    starts = [e for e in events(tmp_path / "dask")[0] if e["event"] == "slide_start"]
    assert len(starts) == len(jobs) and all(e["worker"].startswith("tcp://") for e in starts)


class StubOnWorkers(WorkerPlugin):
    """Dask worker plugin: the stub pipeline on each (re)started worker; slide "d" kills its process."""

    name = "her2slide-stub"

    def setup(self, worker: object) -> None:
        import her2slide.run.batch
        import her2slide.run.pipeline

        stub = StubPipeline()
        her2slide.run.batch.segmenter_for = lambda settings: None

        def score(path: Path, out_root: Path, settings: Settings, **options: Any) -> SlideOutcome:
            if Path(path).stem == "d":
                os._exit(1)
            return stub(path, out_root, settings, **options)

        her2slide.run.pipeline.score_slide_file = score


@pytest.mark.slow
def test_a_worker_that_dies_fails_only_its_slide(inputs: list[Path], tmp_path: Path) -> None:
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), dask_client(1, None, None) as client:
        client.register_plugin(StubOnWorkers())
        report = run_batch(jobs_of(inputs), tmp_path / "out", Settings(), client=client)
    # A result still held by the dying worker is recomputed, and then finds its own marker.
    assert [r.outcome in ("scored", "skipped") for r in report.results] == [True, True, True, False]
    assert report.results[3].reason.startswith("the Dask worker scoring it died, 2 times")
    assert all((tmp_path / "out" / name / DONE).exists() for name in "abc")
    assert json.loads((tmp_path / "out" / "d" / FAILED).read_text())["kind"] == "error"


@pytest.mark.slow
def test_one_worker_per_gpu_each_seeing_only_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("dask_cuda") is not None:
        pytest.skip("dask-cuda is installed: its LocalCUDACluster needs real GPUs")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with dask_client(workers=None, gpus="auto", scheduler=None) as client:
        seen = client.run(os.getenv, "CUDA_VISIBLE_DEVICES")
        daemonic = client.run(is_daemon)
    assert sorted(seen.values()) == ["0", "1"]
    assert not any(daemonic.values())  # the CNN engine's DataLoader may start processes


def is_daemon() -> bool:
    return multiprocessing.current_process().daemon


def batch_command(manifest: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "her2slide.cli.main", "batch", "--manifest", str(manifest), "--out", str(out)]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_killed_batch_resumes_without_redoing_or_corrupting(cohort: list[Path], tmp_path: Path) -> None:
    slides = cohort[:3]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path\n" + "".join(f"{p}\n" for p in slides))
    out = tmp_path / "out"
    child = subprocess.Popen(batch_command(manifest, out), env=child_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: any(out.glob(f"*/{DONE}")), timeout=600)
    finally:  # the whole process group, as a scheduler's kill takes the DataLoader processes too
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    finished = {}
    for folder in out.iterdir():
        if folder.is_dir() and (folder / DONE).exists():  # "looks finished" means a marker: it must be true
            marker = json.loads((folder / DONE).read_text())
            source = next(p for p in slides if p.stem == folder.name)
            assert marker["fingerprint"]["input_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
            report = json.loads((folder / "report.json").read_text())
            assert pq.read_table(folder / "cells.parquet").num_rows == report["cells"]["total"]
            finished[folder.name] = (folder / DONE).stat().st_mtime_ns
    assert 1 <= len(finished) < len(slides)

    rerun = subprocess.run(batch_command(manifest, out), env=child_env(), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    killed, last = events(out)
    if not same_fingerprint({"code_version": killed[0]["code_version"]}, {"code_version": last[0]["code_version"]}):
        finished = {}  # a commit landed in this checkout mid-test: every marker is rightly stale
    assert sorted(e["slide"] for e in last if e["event"] == "slide_skipped") == sorted(finished)
    assert not {e["slide"] for e in last if e["event"] == "slide_start"} & set(finished)
    assert {name: (out / name / DONE).stat().st_mtime_ns for name in finished} == finished
    assert [r["run_status"] for r in summary(out)].count("scored") == len(slides) - len(finished)
    for source in slides:
        assert file_sha256(source) == json.loads((out / source.stem / DONE).read_text())["fingerprint"]["input_sha256"]
    assert not list(out.glob(".*partial*"))


# --- sign-off ----------------------------------------------------------------------------------

def test_summary_carries_the_pathologists_signoff(stub: StubPipeline, inputs: list[Path], tmp_path: Path) -> None:
    from her2slide.outputs.signoff import sign_off

    out = tmp_path / "out"
    run_batch(jobs_of(inputs[:2]), out, Settings())
    sign_off(out / "a", "Dr Ada", score="2+", note="membranes complete at 20x")
    run_batch(jobs_of(inputs[:2]), out, Settings())  # a rerun skips both slides and refreshes the table
    rows = summary(out)
    assert (rows[0]["signoff_score"], rows[0]["signoff_category"], rows[0]["signoff_reviewer"],
            rows[0]["signoff_state"]) == ("2+", "equivocal", "Dr Ada", "signed")
    assert rows[1]["signoff_score"] == rows[1]["signoff_state"] == ""
