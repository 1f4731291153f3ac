"""Atomic output: a result folder appears complete or not at all.

Files are written into a hidden staging folder beside the destination and the folder is
renamed into place at the end. An interrupted run leaves only a ``.<name>.partial-*``
folder, which never looks like a finished result and is cleaned up by the next run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def staged_folder(destination: Path, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``destination`` in one rename.

    ``keep``: files of the previous ``destination`` copied into the new one (a pathologist's
    sign-off history must survive a re-score); copied, not moved, so a crash loses nothing.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    for stale in destination.parent.glob(f".{destination.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for name in keep:
        if (destination / name).is_file() and not (staging / name).exists():
            shutil.copy2(destination / name, staging / name)
    if destination.exists():
        retired = destination.parent / f".{destination.name}.partial-old"
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(destination, retired)
        os.replace(staging, destination)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, destination)


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
