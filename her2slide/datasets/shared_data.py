"""Where the shared real data are: beside the checkout, or where ``HER2SLIDE_SHARED_DATA`` says."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root of an editable install (the shared data sit beside it, in ../shared/data).
_REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """``$HER2SLIDE_SHARED_DATA`` or ``../shared/data`` beside the checkout. Never part of the
    repository: a user's fresh clone does not have it, and what needs it says so."""
    override = os.environ.get("HER2SLIDE_SHARED_DATA")
    return Path(override) if override else _REPO_ROOT.parent / "shared" / "data"
