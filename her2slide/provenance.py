"""Where a result came from: file checksums, code version, settings checksum (her2slide.run.batch_records
combines them into the fingerprint that decides whether a slide needs rescoring)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import lru_cache
from pathlib import Path

import her2slide


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version, plus the git commit when running from a checkout."""
    version = her2slide.__version__
    repo = Path(her2slide.__file__).resolve().parents[1]
    if (repo / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=5, check=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return f"{version}+g{commit}{'.dirty' if dirty else ''}"
        except (OSError, subprocess.SubprocessError):
            pass
    return version


def config_sha256(settings_dump: dict) -> str:
    """Checksum of the settings that decide a result, independent of key order. The ``batch``
    section (how a batch runs: its time limit) is left out: changing it must not redo a cohort."""
    deciding = {key: value for key, value in settings_dump.items() if key != "batch"}
    return hashlib.sha256(json.dumps(deciding, sort_keys=True).encode()).hexdigest()
