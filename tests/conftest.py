"""Shared pytest fixtures.

Real-data tests read ``../shared/data`` beside the checkout (or ``$HER2SLIDE_SHARED_DATA``)
and skip where it is absent, as in a user's fresh clone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from her2slide.datasets.shared_data import shared_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is not there."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip("../shared/data not found: real-data tests need the shared folder beside the checkout")
    return path
