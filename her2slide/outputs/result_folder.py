"""The folder a slide's results go to: its name, who may write it, and what may replace it.

``her2slide score`` and ``batch`` write ``DIR/<slide stem>/``. Three rules keep that from ever
losing anything:

- **A name of its own.** The stem must be a plain folder name: not ``.`` or ``..`` (a slide
  called ``..svs`` would otherwise replace DIR itself, ``...svs`` write beside it), not hidden
  (hidden names beside the results are her2slide's own staging, backup and lock files), and not
  a file a batch writes into DIR (``summary.csv``, ``summary.parquet``, its logs).
- **One writer at a time.** A lock beside the folder (``DIR/.<name>.lock``, a ``filelock`` lock
  that the operating system releases if the process dies) is held while the slide is scored;
  it holds the writer's PID, so a second run says who has it, and is removed when released.
- **Only her2slide's own files are replaced.** Every result folder holds ``.her2slide.json``,
  listing the files her2slide put there (``done.json`` and ``failed.json``, which a batch adds
  later, and ``signoff.json``, which ``her2slide signoff`` and the viewer add, are its own too).
  A folder holding anything else — a user's notes, an unrelated folder that shares the slide's
  stem — stops the slide before any work, and nothing in it is touched. (Folders written before
  the list existed count as her2slide's when their ``report.json`` carries provenance and they
  hold nothing but the result files.)

A re-scored folder carries its pathologist's sign-off history over (copied into the new result
before the swap), and a sign-off holds the same lock as a score, so neither can lose the other's
writes (her2slide.outputs.signoff).
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

from her2slide.errors import InputError, OutputFolderError
from her2slide.outputs.atomic import recover, staged_folder, write_json_atomic

#: What her2slide writes into a result folder besides the outputs, and the list of its files.
DONE = "done.json"
FAILED = "failed.json"
SIGNOFF = "signoff.json"
MARKER = ".her2slide.json"
#: Names her2slide may add to a result folder after writing it (with their atomic writes' temporaries).
_RECORDS = frozenset({DONE, FAILED, SIGNOFF, MARKER, f".{DONE}.tmp", f".{FAILED}.tmp", f".{SIGNOFF}.tmp"})
#: Files a batch writes into DIR itself (its logs: ``batch.log.jsonl``, ``batch.shard-I-of-N.log.jsonl``).
BATCH_FILES = ("summary.csv", "summary.parquet")
_BATCH_LOG = re.compile(r"batch(\.shard-\d+-of-\d+)?\.log\.jsonl")
#: Result files of folders written before the marker existed.
_LEGACY_FILES = frozenset({"report.json", "cells.parquet", "maps.zarr", "overlay.png", "review.html",
                           "cells.geojson.gz", "qc_excluded.parquet", "roi.geojson"})


def result_folder(out_root: str | Path, slide: str | Path) -> Path:
    """``out_root / <slide stem>``, or ``OutputFolderError`` naming the slide when that stem cannot
    be a result folder of its own."""
    slide = Path(slide)
    name = slide.stem
    if name in ("", ".", ".."):
        why = f"its name gives no output folder of its own ('{name}' would be DIR itself or its parent)"
    elif name.startswith("."):
        why = f"its output folder '{name}' would be a hidden name, which her2slide keeps for its own working files"
    elif name in BATCH_FILES or _BATCH_LOG.fullmatch(name):
        why = f"its output folder '{name}' would take the name of a file a batch writes into DIR"
    else:
        return Path(out_root) / name
    raise OutputFolderError(slide, f"{why}; rename the file")


def check_out_root(out_root: str | Path) -> Path:
    """Say (one line) why ``out_root`` could not hold results, without creating anything: it, or
    the nearest folder above it that exists, must be a folder this process may write."""
    out_root = Path(out_root)
    existing = next((p for p in (out_root, *out_root.absolute().parents) if p.exists()), None)
    if existing is None:
        return out_root
    if not existing.is_dir():
        why = "exists and is not a folder; --out needs a folder" if existing == out_root else \
            f"a part of this path ({existing}) is a file, not a folder"
        raise OutputFolderError(out_root, why)
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "here" if existing == out_root else f"in {existing}"
        reason = "read-only file system" if _read_only_mount(existing) else "permission denied"
        raise OutputFolderError(out_root, f"cannot write {where} ({reason})")
    return out_root


def _read_only_mount(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def prepare_out_root(out_root: str | Path) -> Path:
    """Create ``out_root`` if needed, or say why it cannot hold results (one line)."""
    out_root = check_out_root(out_root)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(out_root, f"cannot be created ({exc.strerror or type(exc).__name__})") from None
    return check_out_root(out_root)


def lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def holding(lock_file: Path, what: Path, context: str, *, wait_s: float = 0.0,
            advice: str = "wait for it, or use another --out") -> Iterator[None]:
    """Hold ``lock_file`` for this process (re-entrant), waiting up to ``wait_s`` for another
    holder, or raise ``OutputFolderError`` naming ``what`` and the PID of the process that holds
    it ("already being scored by PID n"), followed by ``advice``."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_file), timeout=0, is_singleton=True, on_acquired=_write_pid)
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        raise OutputFolderError(what, f"already being scored by {_holder(lock_file)} ({context}; {lock_file} "
                                      f"is held); {advice}") from None
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise OutputFolderError(what, f"cannot lock {lock_file} ({exc.strerror or type(exc).__name__})") from None
        _warn_unlocked(lock_file.parent)  # e.g. Lustre mounted without flock: run, but say so
        yield
        return
    try:
        yield
    finally:
        lock.release()
        if not lock.is_locked:  # filelock leaves the file; a peer that opened it sees it unlinked and retries
            with suppress(FileNotFoundError):
                lock_file.unlink()


#: errno values of a filesystem that has no file locks at all.
_NO_LOCKS = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK})
_warned_unlocked: set[Path] = set()


def _warn_unlocked(folder: Path) -> None:
    if folder not in _warned_unlocked:
        _warned_unlocked.add(folder)
        print(f"her2slide: warning: {folder}: this filesystem has no file locks, so two runs writing here at "
              "the same time are not kept apart", file=sys.stderr)


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())


def _holder(lock_file: Path) -> str:
    try:
        pid = lock_file.read_text().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "another process"


@contextmanager
def claimed(folder: Path, slide: str | Path) -> Iterator[Path]:
    """Hold ``folder`` for this slide: take its lock, finish or undo a replacement a killed run
    left half done, and refuse a folder with files her2slide did not write."""
    prepare_out_root(folder.parent)
    with holding(lock_path(folder), Path(slide), f"into {folder}"):
        try:
            recover(folder)
        except OSError as exc:
            raise OutputFolderError(folder, f"an earlier interrupted run cannot be tidied up "
                                            f"({exc.strerror or type(exc).__name__})") from None
        check_replaceable(folder)
        yield folder


def foreign_entries(folder: Path) -> list[str]:
    """Entries of ``folder`` that her2slide did not write (``[folder.name]`` when the folder
    itself is not one her2slide writes: a file, or a link)."""
    if not folder.exists() and not folder.is_symlink():
        return []
    if folder.is_symlink() or not folder.is_dir():
        return [folder.name]
    entries = set(os.listdir(folder))
    return sorted(entries - _written_by_her2slide(folder) - _RECORDS)


def _written_by_her2slide(folder: Path) -> set[str]:
    marker = _read_json(folder / MARKER)
    if isinstance(marker, dict) and isinstance(marker.get("files"), list):
        return {name for name in marker["files"] if isinstance(name, str)}
    report = _read_json(folder / "report.json")
    if isinstance(report, dict) and isinstance(report.get("provenance"), dict):
        return set(_LEGACY_FILES)
    return set()


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None


def check_replaceable(folder: Path) -> None:
    """Raise ``OutputFolderError`` unless everything at ``folder`` is her2slide's to replace."""
    foreign = foreign_entries(folder)
    if not foreign:
        return
    if folder.is_symlink() or not folder.is_dir():
        what = "a link" if folder.is_symlink() else "a file"
        raise OutputFolderError(folder, f"exists and is {what} her2slide did not write; nothing was changed")
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    raise OutputFolderError(folder, f"holds {shown}, which her2slide did not write; move it out of the way "
                                    "or use another --out (nothing was changed)")


@contextmanager
def staged_result(folder: Path, slide: str | Path) -> Iterator[Path]:
    """A staging folder that replaces ``folder`` when the body succeeds (her2slide.outputs.atomic),
    with the list of its files written last and the earlier result's sign-off history carried
    over. Call it while :func:`claimed` holds the folder.

    A write that fails (disk full, quota, the folder removed) becomes an ``InputError`` naming
    the folder; the staging folder is removed and an earlier result stays as it was.
    """
    try:
        with staged_folder(folder, replaceable=check_replaceable, keep=(SIGNOFF,)) as staging:
            yield staging
            write_json_atomic(staging / MARKER, {
                "written_by": "her2slide", "slide": str(Path(slide)), "written": _now(),
                "files": sorted(os.listdir(staging)),
            })
    except OSError as exc:
        raise InputError(folder, f"results could not be written ({exc.strerror or type(exc).__name__}); "
                                 "nothing was kept") from exc


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
