"""Many slides: serially or on a Dask cluster, resumable, one slide's failure never stops the rest.

Each slide is one idempotent task (:func:`process_slide`): unless its result is already
there, score it with :func:`her2slide.run.pipeline.score_slide_file` (whose output folder
appears in one rename) and then, LAST, write ``done.json`` into that folder. A slide counts
as finished only when its marker is there and the marker's fingerprint — input, config and
model checksums, code version, mpp and ROI — is what this run would use. So a rerun skips
finished slides, redoes changed ones, retries failures, and a kill at any moment leaves at
worst a folder without a marker, which the next run redoes.

A slide's folder is held (her2slide.outputs.result_folder) while its task runs, and the batch
folder while the batch runs (one lock per shard: shards of one cohort run side by side), so
two runs never write through each other. A slide that fails QC is "not scored": its own
outcome, count, log event and exit status, never counted as scored.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence

from her2slide.outputs import signoff
from her2slide.config import Settings
from her2slide.errors import InputError, OutputFolderError, SlideTimeout, UnsuitableSlideError
from her2slide.outputs.atomic import write_json_atomic
from her2slide.outputs.result_folder import (DONE, FAILED, claimed, foreign_entries, holding, prepare_out_root,
                                             result_folder)
from her2slide.provenance import code_version, config_sha256, file_sha256
from her2slide.scoring import Criteria
from her2slide.run.time_limit import time_limit

if TYPE_CHECKING:
    from her2slide.run.engine import Segmenter

CLASSES = ("0", "1+", "2+", "3+")
SUMMARY_COLUMNS = ("slide", "path", "run_status", "reason", "score", "status", "category", "criteria",
                   "cells_total", *(f"percent_{c}" for c in CLASSES), "pattern", "qc_verdict", "qc_flags",
                   "seconds", "out_dir", *signoff.SUMMARY_COLUMNS)
#: Dask topic on which workers announce the slide they start, so the driver can log it live.
START_TOPIC = "her2slide-batch-start"

#: Characters that make a spreadsheet read a CSV cell as a formula (OWASP, "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: ``not-scored``: read and measured, but failed QC (report.json has no score).
#: ``pending``: only in a summary, for a slide no run has reached yet.
Outcome = Literal["scored", "not-scored", "skipped", "failed", "pending"]


@dataclass(frozen=True)
class SlideJob:
    """One slide of the batch and its own overrides (None: the batch default)."""

    path: Path
    mpp: float | None = None
    criteria: Criteria | None = None
    roi: Path | None = None

    @property
    def name(self) -> str:
        """The output folder name, as ``her2slide score`` names it."""
        return self.path.stem


@dataclass(frozen=True)
class SlideResult:
    """What one task reports back; small and picklable (the report stays on disk)."""

    name: str
    path: str
    outcome: Outcome
    reason: str = ""
    seconds: float = 0.0
    not_scored: bool = False  # QC failed: set for "not-scored", and for "skipped" when the done result has no score


# --- what to score ----------------------------------------------------------------------------

def read_manifest(manifest: Path) -> list[SlideJob]:
    """Jobs from a CSV with a ``path`` column and optional ``mpp``, ``criteria``, ``roi``.

    Relative paths resolve against the manifest's folder, so a manifest travels with its
    slides. Other columns are ignored (a study's own ids may sit beside the paths).
    """
    manifest = Path(manifest)
    try:
        text = manifest.read_text(encoding="utf-8-sig")  # a spreadsheet's BOM is not part of "path"
    except FileNotFoundError:
        raise InputError(manifest, "manifest not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(manifest, f"manifest cannot be read ({exc.__class__.__name__})") from None
    reader = csv.DictReader(text.splitlines())
    if "path" not in [(name or "").strip() for name in reader.fieldnames or ()]:
        raise InputError(manifest, "manifest needs a header row with a 'path' column")
    jobs = []
    for row in reader:
        cells = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
        try:
            jobs.append(_job_from_row(cells, manifest.parent))
        except ValueError as exc:
            raise InputError(manifest, f"line {reader.line_num}: {exc}") from None
    return jobs


def _job_from_row(cells: dict[str, str], base: Path) -> SlideJob:
    if not cells.get("path"):
        raise ValueError("empty path")
    mpp = cells.get("mpp") or None
    criteria = cells.get("criteria") or None
    roi = cells.get("roi") or None
    try:
        mpp_value = float(mpp) if mpp else None
    except ValueError:
        raise ValueError(f"mpp {mpp!r} is not a number") from None
    if criteria and criteria not in {c.value for c in Criteria}:
        raise ValueError(f"criteria {criteria!r} is not one of {', '.join(c.value for c in Criteria)}")
    return SlideJob(_resolve(cells["path"], base), mpp_value, Criteria(criteria) if criteria else None,
                    _resolve(roi, base) if roi else None)


def _resolve(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def is_manifest(argument: str | Path) -> bool:
    """Whether a command-line path is a manifest rather than a slide: a ``.csv`` file, or a text
    file whose first line is a CSV header with a ``path`` column (no slide format is either)."""
    path = Path(argument)
    if path.suffix.lower() == ".csv":
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
        first = head.decode("utf-8-sig").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return False
    return "path" in (field.strip() for field in next(csv.reader([first]), []))


def jobs_from_paths(patterns: Iterable[str]) -> list[SlideJob]:
    """Jobs from command-line paths and globs, each glob's matches sorted by name.

    A plain path is kept even when missing (it is recorded as failed, as ``score`` does);
    a glob that matches nothing is a mistake in the command, refused up front.
    """
    jobs = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            if not matches:
                raise InputError(pattern, "no files match this pattern")
            jobs.extend(SlideJob(Path(m)) for m in matches)
        else:
            jobs.append(SlideJob(Path(pattern)))
    return jobs


def check_jobs(jobs: Sequence[SlideJob]) -> None:
    """Refuse a batch whose slides would write the same output folder."""
    seen: dict[str, Path] = {}
    for job in jobs:
        if job.name in seen:
            raise InputError(job.path, f"same name as {seen[job.name]}: both would write DIR/{job.name}/; "
                                       "rename one, or score them in separate batches")
        seen[job.name] = job.path


def in_shard(position: int, shard: tuple[int, int] | None) -> bool:
    """Round-robin over manifest order: stable, and shards stay balanced when slides sort by size."""
    return shard is None or position % shard[1] == shard[0]


# --- one slide ---------------------------------------------------------------------------------

def job_settings(settings: Settings, job: SlideJob) -> Settings:
    return settings if job.criteria is None else settings.model_copy(update={"criteria": job.criteria})


def run_fingerprint(settings: Settings, input_sha256: str) -> dict[str, str | None]:
    """What decides a slide's result: the input, the deciding settings, the weights and the code."""
    from her2slide.model.weights_path import weights_sha256

    return {
        "input_sha256": input_sha256,
        "config_sha256": config_sha256(settings.dump()),
        "model_sha256": weights_sha256(settings),
        "code_version": code_version(),
    }


def fingerprint(job: SlideJob, settings: Settings, input_sha256: str) -> dict[str, Any]:
    """:func:`run_fingerprint` plus the per-slide mpp and ROI: a finished result with the same
    fingerprint needs no rerun. ``input_sha256`` is passed in so an unchanged file (same size
    and mtime as when it was hashed) is not read again on every rerun."""
    return {
        **run_fingerprint(settings, input_sha256),
        "mpp": job.mpp,
        "roi_sha256": file_sha256(job.roi) if job.roi is not None else None,
    }


def same_fingerprint(recorded: dict[str, Any], current: dict[str, Any]) -> bool:
    """Equal, except that a ``.dirty`` code version matches its commit.

    The git dirty flag says only "some uncommitted edit", not which: honouring it would redo
    the whole cohort after any edit yet miss a second edit. Commits and versions do count.
    """
    def clean(fp: dict[str, Any]) -> dict[str, Any]:
        return {**fp, "code_version": str(fp.get("code_version", "")).removesuffix(".dirty")}

    return clean(recorded) == clean(current)


def read_record(folder: Path, name: str) -> dict[str, Any] | None:
    """A done or failed record, or None when absent or unreadable (a torn record is no record)."""
    try:
        record = json.loads((folder / name).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _input_hash(job: SlideJob, marker: dict[str, Any] | None) -> tuple[os.stat_result, str]:
    """The input's stat and SHA-256, reusing the marker's hash when size and mtime are unchanged."""
    try:
        stat = job.path.stat()
    except FileNotFoundError:
        raise InputError(job.path, "file not found") from None
    recorded = (marker or {}).get("fingerprint", {}).get("input_sha256")
    if recorded and (marker.get("input_size"), marker.get("input_mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
        return stat, recorded
    return stat, file_sha256(job.path)


def is_done(job: SlideJob, folder: Path, settings: Settings) -> bool:
    """A marker whose fingerprint matches, beside a report: nothing to do for this slide."""
    marker = read_record(folder, DONE)
    if marker is None or not isinstance(marker.get("fingerprint"), dict) or not (folder / "report.json").exists():
        return False
    _, sha = _input_hash(job, marker)
    return same_fingerprint(marker["fingerprint"], fingerprint(job, settings, sha))


def process_slide(job: SlideJob, out_root: Path, settings: Settings, overwrite: bool = False,
                  announce: Callable[[SlideJob], None] | None = None) -> SlideResult:
    """Make sure one slide is scored: skip it if done, else score it and mark it done.

    Never raises for a slide's own problems: an ``InputError`` is recorded with its
    one-line reason, anything else with its type and message (and the traceback in
    ``failed.json``), a slide past ``batch.slide_time_limit_min`` with that reason, and the
    batch goes on with the next slide. The slide's folder is held throughout; when it cannot
    be (its name, another run, files her2slide did not write) nothing is written into it.
    """
    start = time.perf_counter()
    settings = job_settings(settings, job)
    limit = settings.batch.slide_time_limit_min
    try:
        folder = result_folder(out_root, job.path)
        with claimed(folder, job.path), time_limit(None if limit is None else 60.0 * limit):
            try:
                if not overwrite and is_done(job, folder, settings):
                    (folder / FAILED).unlink(missing_ok=True)
                    marker = read_record(folder, DONE) or {}
                    return SlideResult(job.name, str(job.path), "skipped",
                                       not_scored=without_score(marker))
                if announce is not None:
                    announce(job)
                scored = _score_and_mark(job, Path(out_root), settings)
            except (Exception, SlideTimeout) as exc:  # noqa: BLE001 -- isolating one slide's failure is the job here
                result = _failed(job, exc, start, limit)
                record_failure(folder, result, exc)
                return result
    except (Exception, SlideTimeout) as exc:  # noqa: BLE001 -- the folder could not be held: nothing written
        return _failed(job, exc, start, limit)
    outcome = "scored" if scored else "not-scored"
    return SlideResult(job.name, str(job.path), outcome, seconds=round(time.perf_counter() - start, 3),
                       not_scored=not scored)


def without_score(marker: dict[str, Any]) -> bool:
    """Whether a done marker is of a slide that failed QC (also markers from before the
    "not-scored" outcome, which recorded such a slide's null score all the same)."""
    return marker.get("score", "") is None


def _failed(job: SlideJob, exc: BaseException, start: float, limit_min: float | None) -> SlideResult:
    reason = (f"still running after {limit_min:g} min, the batch's per-slide time limit "
              "(batch.slide_time_limit_min); stopped" if isinstance(exc, SlideTimeout) else failure_reason(exc, job.path))
    return SlideResult(job.name, str(job.path), "failed", reason, round(time.perf_counter() - start, 3))


def _score_and_mark(job: SlideJob, out_root: Path, settings: Settings) -> bool:
    """Score the slide and write its marker; whether it got a score (False: QC failed)."""
    from her2slide.run.pipeline import score_slide_file

    # Hash before scoring: a file changed while it is read gets a marker that no longer matches.
    stat, sha = _input_hash(job, None)
    outcome = score_slide_file(job.path, out_root, settings, mpp=job.mpp, roi=job.roi,
                               segmenter=lambda: segmenter_for(settings))
    report = outcome.report
    scored = report["score"] is not None
    marker = {
        "slide": job.name, "input": str(job.path), "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
        "fingerprint": fingerprint(job, settings, sha), "finished": now_iso(),
        "outcome": "scored" if scored else "not-scored",
        "score": report["score"], "status": report["status"], "category": report["category"],
    }
    write_json_atomic(outcome.out_dir / DONE, marker)
    return scored


def segmenter_for(settings: Settings) -> Segmenter:
    """This process's segmenter: a worker loads the CNN's weights once, not once per slide.
    Criteria do not change it, so slides with their own criteria share it."""
    return _segmenter(json.dumps({k: v for k, v in settings.dump().items() if k != "criteria"}, sort_keys=True))


@lru_cache(maxsize=1)
def _segmenter(settings_json: str) -> Segmenter:
    from her2slide.run.engine import make_segmenter

    return make_segmenter(Settings.model_validate(json.loads(settings_json)))


def failure_reason(exc: BaseException, slide: Path | None = None) -> str:
    """One line: the reason an ``InputError`` gives (naming its file when that is not the
    slide, e.g. a bad ROI file), else the exception's type and message."""
    from her2slide.slide.reader import short_cause

    if isinstance(exc, InputError):
        return exc.reason if slide is not None and exc.path == str(slide) else f"{exc.path}: {exc.reason}"
    return f"{type(exc).__name__}: {short_cause(exc, limit=300)}"


def record_failure(folder: Path, result: SlideResult, exc: BaseException) -> None:
    """``failed.json`` beside (never instead of) an earlier good result; a later success removes it.

    Not for a folder her2slide may not write (``OutputFolderError``: another run holds it, or it
    holds files her2slide did not write): the log and the summary carry that failure."""
    if isinstance(exc, OutputFolderError) or foreign_entries(folder):
        return
    kind = ("unsuitable" if isinstance(exc, UnsuitableSlideError)
            else "input" if isinstance(exc, InputError)
            else "time-limit" if isinstance(exc, SlideTimeout) else "error")
    record = {"slide": result.name, "input": result.path, "failed": now_iso(), "kind": kind,
              "reason": result.reason, "error": type(exc).__name__, "seconds": result.seconds}
    if kind == "error":
        record["traceback"] = "".join(traceback.format_exception(exc))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / FAILED, record)
    except OSError:
        pass  # the log and the summary still carry the failure; a full disk must not stop the batch


# --- the batch ---------------------------------------------------------------------------------

def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class EventLog:
    """JSON lines (``ts``, ``event``, fields), written by the driver only, one flushed line per event."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8")
        if _ends_torn(path):  # a run killed mid-line must not glue its torn line to ours
            self._file.write("\n")
        self._lock = threading.Lock()  # Dask start events arrive on the client's event-loop thread

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"ts": now_iso(), "event": event, **fields}, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def _ends_torn(path: Path) -> bool:
    with open(path, "rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


@dataclass(frozen=True)
class BatchReport:
    """This run's results in manifest order (None: another shard's slide) and where the summary is."""

    results: list[SlideResult | None]
    summary_csv: Path
    summary_parquet: Path
    log: Path

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r is not None and r.outcome == outcome)

    @property
    def not_scored(self) -> int:
        """Slides of this run without a score because QC failed (this run, or already done so)."""
        return sum(1 for r in self.results if r is not None and r.not_scored)

    @property
    def failed(self) -> list[SlideResult]:
        return [r for r in self.results if r is not None and r.outcome == "failed"]


def log_name(shard: tuple[int, int] | None) -> str:
    """Shards write separate logs: appends from several nodes to one file can interleave on NFS."""
    return "batch.log.jsonl" if shard is None else f"batch.shard-{shard[0]}-of-{shard[1]}.log.jsonl"


def batch_lock(out_root: Path, shard: tuple[int, int] | None) -> Path:
    """One batch per folder and shard at a time (the shards of one cohort run side by side)."""
    return out_root / f".{log_name(shard).removesuffix('.log.jsonl')}.lock"


def run_batch(jobs: Sequence[SlideJob], out_root: Path, settings: Settings, *, overwrite: bool = False,
              shard: tuple[int, int] | None = None, client: Any = None, progress: bool | None = None) -> BatchReport:
    """Score this shard's slides (all of them by default), serially or on a Dask ``client``.

    Writes ``summary.csv`` / ``summary.parquet`` over the whole manifest (other shards'
    slides from their records on disk) and appends events to the JSON-lines log. Raises
    ``OutputFolderError`` when DIR cannot be written or another batch (of this shard) holds it.
    """
    out_root = Path(out_root)
    check_jobs(jobs)
    prepare_out_root(out_root)
    with holding(batch_lock(out_root, shard), out_root, "another batch on this folder"):
        return _run_batch(jobs, out_root, settings, overwrite, shard, client, progress)


def _run_batch(jobs: Sequence[SlideJob], out_root: Path, settings: Settings, overwrite: bool,
               shard: tuple[int, int] | None, client: Any, progress: bool | None) -> BatchReport:
    from tqdm import tqdm

    mine = [k for k in range(len(jobs)) if in_shard(k, shard)]
    log = EventLog(out_root / log_name(shard))
    results: list[SlideResult | None] = [None] * len(jobs)
    started = time.perf_counter()
    log.write("start", slides=len(mine), manifest_slides=len(jobs), out=str(out_root), overwrite=overwrite,
              shard=None if shard is None else f"{shard[0]}/{shard[1]}",
              workers="serial" if client is None else _describe(client),
              code_version=code_version(), config_sha256=config_sha256(settings.dump()))
    run = _run_serial if client is None else _run_on_dask
    quiet = not sys.stderr.isatty() if progress is None else not progress
    try:
        with tqdm(total=len(mine), unit="slide", desc="slides", file=sys.stderr, disable=quiet) as bar:
            failed = 0
            for k, result in run([(k, jobs[k]) for k in mine], out_root, settings, overwrite, log, client):
                results[k] = result
                _log_result(log, result)
                failed += result.outcome == "failed"
                bar.set_postfix(failed=failed, refresh=False)
                bar.update()
    finally:
        report = BatchReport(results, *write_summary(summary_rows(jobs, results, out_root), out_root), log.path)
        log.write("end", **{o.replace("-", "_"): report.count(o) for o in ("scored", "not-scored", "skipped", "failed")},
                  unfinished=sum(results[k] is None for k in mine), seconds=round(time.perf_counter() - started, 3))
        log.close()
    return report


Work = list[tuple[int, SlideJob]]


def _run_serial(work: Work, out_root: Path, settings: Settings, overwrite: bool, log: EventLog,
                client: None) -> Iterator[tuple[int, SlideResult]]:
    def announce(job: SlideJob) -> None:
        log.write("slide_start", slide=job.name, path=str(job.path))

    for k, job in work:
        yield k, process_slide(job, out_root, settings, overwrite, announce)


def _run_on_dask(work: Work, out_root: Path, settings: Settings, overwrite: bool, log: EventLog,
                 client: Any) -> Iterator[tuple[int, SlideResult]]:
    """One task per slide; results as they finish. A worker that dies (out of memory, a crash in
    a native decoder) fails its slide after Dask's retries, and the batch goes on."""
    from distributed import as_completed

    def on_start(event: tuple[float, dict[str, Any]]) -> None:
        log.write("slide_start", **event[1])

    client.subscribe_topic(START_TOPIC, on_start)
    try:
        futures = {client.submit(process_slide, job, out_root, settings, overwrite, announce_to_driver,
                                 pure=False): (k, job) for k, job in work}
        for future in as_completed(futures):
            k, job = futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 -- the task itself never raises: its worker died
                result = SlideResult(job.name, str(job.path), "failed", _lost_reason(exc))
                _record_lost(job, out_root, result, exc)
            yield k, result
    finally:
        client.unsubscribe_topic(START_TOPIC)


def _record_lost(job: SlideJob, out_root: Path, result: SlideResult, exc: Exception) -> None:
    """A failure record for a slide whose worker died (its lock died with it)."""
    try:
        folder = result_folder(out_root, job.path)
    except OutputFolderError:
        return
    record_failure(folder, result, exc)


def _lost_reason(exc: Exception) -> str:
    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker):
        return (f"the Dask worker scoring it died, {exc.allowed_failures + 1} times (out of memory, or a crash "
                "in a native library; see the worker logs)")
    return f"lost on the Dask cluster: {failure_reason(exc)}"


def announce_to_driver(job: SlideJob) -> None:
    """Runs on a Dask worker: tell the driver, through the scheduler, that this slide starts."""
    from distributed import get_worker

    worker = get_worker()
    worker.log_event(START_TOPIC, {"ts": now_iso(), "slide": job.name, "path": str(job.path),
                                   "worker": worker.address})


def _describe(client: Any) -> str:
    info = client.scheduler_info()
    return f"dask {info.get('address')} ({len(info.get('workers', {}))} workers)"


def _log_result(log: EventLog, result: SlideResult) -> None:
    fields: dict[str, Any] = {"slide": result.name, "path": result.path}
    if result.outcome != "skipped":
        fields["seconds"] = result.seconds
    if result.outcome == "failed":
        fields["reason"] = result.reason
    if result.not_scored:
        fields["not_scored"] = True  # QC failed: no score (also for a slide skipped as already done)
    event = {"scored": "done", "not-scored": "not_scored"}.get(result.outcome, result.outcome)
    log.write(f"slide_{event}", **fields)


# --- cohort summary ----------------------------------------------------------------------------

def summary_rows(jobs: Sequence[SlideJob], results: Sequence[SlideResult | None],
                 out_root: Path) -> list[dict[str, Any]]:
    """One row per manifest slide, in manifest order.

    A slide this run did not handle (another shard's, or one a kill left unreached) is
    described from its records on disk: ``skipped`` when its marker is there (not rechecked),
    ``failed`` when its latest attempt failed, ``pending`` when nothing is there yet.
    """
    rows = []
    for job, result in zip(jobs, results):
        try:
            folder: Path | None = result_folder(out_root, job.path)
        except OutputFolderError:
            folder = None  # a name that has no folder: nothing on disk to describe
        if result is None:
            result = _result_on_disk(job, folder) if folder is not None else SlideResult(job.name, str(job.path),
                                                                                         "pending")
        row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
        row.update(slide=job.name, path=str(job.path), run_status=result.outcome, reason=result.reason or None)
        has_report = folder is not None and result.outcome in ("scored", "not-scored", "skipped")
        report = read_record(folder, "report.json") if has_report else None
        if report is not None:
            row.update(_report_columns(report), out_dir=str(folder), **signoff.summary_columns(folder))
        elif result.outcome == "failed":
            row["seconds"] = result.seconds
        rows.append(row)
    return rows


def _result_on_disk(job: SlideJob, folder: Path) -> SlideResult:
    failed = read_record(folder, FAILED)
    if failed is not None:
        return SlideResult(job.name, str(job.path), "failed", str(failed.get("reason", "")),
                           float(failed.get("seconds") or 0.0))
    done = read_record(folder, DONE)
    if done is not None:
        return SlideResult(job.name, str(job.path), "skipped", not_scored=without_score(done))
    return SlideResult(job.name, str(job.path), "pending")


def _report_columns(report: dict[str, Any]) -> dict[str, Any]:
    cells = report.get("cells", {})
    percent = cells.get("percent", {})
    qc = report.get("qc")
    verdict, flags = (qc.get("verdict"), qc.get("flags", [])) if isinstance(qc, dict) else (None, qc or [])
    return {
        "score": report.get("score"), "status": report.get("status"), "category": report.get("category"),
        "criteria": report.get("criteria"), "cells_total": cells.get("total"),
        **{f"percent_{c}": percent.get(c) for c in CLASSES},
        "pattern": (report.get("heterogeneity") or {}).get("pattern"),
        "qc_verdict": verdict,
        "qc_flags": ";".join(f if isinstance(f, str) else json.dumps(f, sort_keys=True) for f in flags),
        "seconds": (report.get("timings") or {}).get("total"),
    }


def write_summary(rows: list[dict[str, Any]], out_root: Path) -> tuple[Path, Path]:
    """``summary.csv`` and ``summary.parquet``, each written to a unique temporary name and
    renamed into place (shards finishing together must not write through each other's file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    numeric = {"cells_total": pa.int64(), "seconds": pa.float64(), **{f"percent_{c}": pa.float64() for c in CLASSES}}
    schema = pa.schema([(name, numeric.get(name, pa.string())) for name in SUMMARY_COLUMNS])
    table = pa.Table.from_pylist(rows, schema=schema)
    csv_path, parquet_path = out_root / "summary.csv", out_root / "summary.parquet"

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
            writer.writeheader()
            writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)

    _replace_atomically(csv_path, write_csv)
    _replace_atomically(parquet_path, lambda tmp: pq.write_table(table, tmp))
    return csv_path, parquet_path


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (a slide named ``=1+1.svs``) gets a
    leading apostrophe, which spreadsheets show as text; numbers and other text are unchanged.
    summary.parquet keeps the exact text."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
