"""The cohort summary: ``summary.csv`` and ``summary.parquet``, one row per manifest slide, from
this run's results and, for slides it did not handle, from their records on disk.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from her2slide.errors import OutputFolderError
from her2slide.outputs import signoff
from her2slide.outputs.result_folder import DONE, FAILED, result_folder
from her2slide.run.batch_jobs import SlideJob, SlideResult
from her2slide.run.batch_records import read_record, without_score

CLASSES = ("0", "1+", "2+", "3+")
SUMMARY_COLUMNS = ("slide", "path", "run_status", "reason", "score", "status", "category", "criteria",
                   "cells_total", *(f"percent_{c}" for c in CLASSES), "pattern", "qc_verdict", "qc_flags",
                   "seconds", "out_dir", *signoff.SUMMARY_COLUMNS)

#: Characters that make a spreadsheet read a CSV cell as a formula (OWASP, "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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
