"""Atomic output: a result folder appears complete or not at all, and a replaced one is never lost.

Files are written into a hidden staging folder beside the destination, which is renamed into
place at the end. Replacing an earlier result takes two renames — the old folder steps aside as
``.<name>.previous``, the new one takes its place — and only then is the old one deleted. A
kill between the two renames leaves no folder at the destination but the whole old result under
a name :func:`recover` knows: the next run (of the same slide) puts it back before doing
anything else, or deletes it if the new result did arrive. An interrupted run otherwise leaves
only a ``.<name>.partial-*`` folder, which never looks like a finished result and is removed by
the next run.

Folders are made with ``os.mkdir``, so they follow the umask (a lab sharing results by group
gets group-readable folders), unlike ``tempfile.mkdtemp``'s private 0700.

The caller must be the only writer of ``destination`` (her2slide.outputs.result_folder holds a
lock for it), or own the folder it lives in (a staging folder).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def previous_path(destination: Path) -> Path:
    """Where the old result waits while a new one replaces it."""
    return destination.parent / f".{destination.name}.previous"


def recover(destination: Path) -> None:
    """Finish or undo a replacement that a killed run left half done, and remove its staging folders.

    Old result aside and no result in place: the old one comes back. Both there: the kill
    came after the new result arrived, so the old one goes.
    """
    destination = Path(destination)
    previous = previous_path(destination)
    if previous.exists():
        if destination.exists() or destination.is_symlink():
            shutil.rmtree(previous)
        else:
            os.replace(previous, destination)
    for stale in destination.parent.glob(f".{destination.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def staged_folder(destination: Path, replaceable: Callable[[Path], None] | None = None,
                  keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a staging folder; when the body succeeds it replaces ``destination``.

    ``replaceable(destination)`` is called just before the replacement and may raise to stop
    it (her2slide.outputs.result_folder checks that nothing there is foreign). ``keep``: files
    of the previous ``destination`` that the new one carries on (a pathologist's sign-off
    history must survive a re-score), copied into the staging folder, never moved, so the old
    result stays whole until the swap. On any error the staging folder is removed and
    ``destination`` is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    recover(destination)
    staging = destination.parent / f".{destination.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.mkdir(staging)
    try:
        yield staging
        if replaceable is not None:
            replaceable(destination)
        _carry_over(destination, staging, keep)
        _replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _carry_over(destination: Path, staging: Path, keep: tuple[str, ...]) -> None:
    for name in keep:
        if (destination / name).is_file() and not (staging / name).exists():
            shutil.copy2(destination / name, staging / name)


def _replace(staging: Path, destination: Path) -> None:
    if not destination.exists() and not destination.is_symlink():
        os.replace(staging, destination)
        return
    previous = previous_path(destination)
    os.replace(destination, previous)  # 1. the old result steps aside, under a name recover() knows
    try:
        os.replace(staging, destination)  # 2. the new one takes its place
    except BaseException:
        os.replace(previous, destination)  # an error (not a kill) puts the old one back at once
        raise
    shutil.rmtree(previous)  # 3. only now is the old one deleted


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
