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

The jobs are in her2slide.run.batch_jobs, the records that make a rerun resumable in
her2slide.run.batch_records, and the cohort summary in her2slide.run.batch_summary.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from her2slide.config import Settings
from her2slide.errors import InputError, OutputFolderError, SlideTimeout
from her2slide.outputs.atomic import write_json_atomic
from her2slide.outputs.result_folder import DONE, FAILED, claimed, holding, prepare_out_root, result_folder
from her2slide.provenance import code_version, config_sha256
from her2slide.run.batch_jobs import Outcome, SlideJob, SlideResult, check_jobs, in_shard, job_settings
from her2slide.run.batch_records import (input_hash, fingerprint, is_done, now_iso, read_record, record_failure,
                                         without_score)
from her2slide.run.batch_summary import summary_rows, write_summary
from her2slide.run.time_limit import time_limit

if TYPE_CHECKING:
    from her2slide.run.engine import Segmenter

#: Dask topic on which workers announce the slide they start, so the driver can log it live.
START_TOPIC = "her2slide-batch-start"


# --- one slide ---------------------------------------------------------------------------------

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


def _failed(job: SlideJob, exc: BaseException, start: float, limit_min: float | None) -> SlideResult:
    reason = (f"still running after {limit_min:g} min, the batch's per-slide time limit "
              "(batch.slide_time_limit_min); stopped" if isinstance(exc, SlideTimeout) else failure_reason(exc, job.path))
    return SlideResult(job.name, str(job.path), "failed", reason, round(time.perf_counter() - start, 3))


def _score_and_mark(job: SlideJob, out_root: Path, settings: Settings) -> bool:
    """Score the slide and write its marker; whether it got a score (False: QC failed)."""
    from her2slide.run.pipeline import score_slide_file

    # Hash before scoring: a file changed while it is read gets a marker that no longer matches.
    stat, sha = input_hash(job, None)
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


# --- the batch ---------------------------------------------------------------------------------

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
