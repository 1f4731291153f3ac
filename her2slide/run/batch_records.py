"""A slide's records in its result folder, which make a batch resumable: the fingerprint a
``done.json`` marker carries (a finished slide with the same one is skipped), reading a record,
and writing ``failed.json``.

Both the running batch (her2slide.run.batch) and the cohort summary (her2slide.run.batch_summary)
read them.
"""

from __future__ import annotations

import json
import os
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from her2slide.config import Settings
from her2slide.errors import InputError, OutputFolderError, SlideTimeout, UnsuitableSlideError
from her2slide.outputs.atomic import write_json_atomic
from her2slide.outputs.result_folder import DONE, FAILED, foreign_entries
from her2slide.provenance import code_version, config_sha256, file_sha256
from her2slide.run.batch_jobs import SlideJob, SlideResult


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


def input_hash(job: SlideJob, marker: dict[str, Any] | None) -> tuple[os.stat_result, str]:
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
    _, sha = input_hash(job, marker)
    return same_fingerprint(marker["fingerprint"], fingerprint(job, settings, sha))


def without_score(marker: dict[str, Any]) -> bool:
    """Whether a done marker is of a slide that failed QC (also markers from before the
    "not-scored" outcome, which recorded such a slide's null score all the same)."""
    return marker.get("score", "") is None


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



def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
