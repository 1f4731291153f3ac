"""A batch's slides: the jobs (a slide and its own overrides) read from a manifest or from
command-line paths and globs, the checks on them, and the result each job reports back.

Running them is her2slide.run.batch's; the command line reads and checks them here before a
batch starts.
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from her2slide.config import Settings
from her2slide.errors import InputError
from her2slide.scoring import Criteria

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


def job_settings(settings: Settings, job: SlideJob) -> Settings:
    return settings if job.criteria is None else settings.model_copy(update={"criteria": job.criteria})
