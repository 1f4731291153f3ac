"""Where the CNN detector's weights live, and their checksum, without importing torch."""

from __future__ import annotations

from pathlib import Path

from her2slide.config import Settings
from her2slide.provenance import file_sha256

#: The shipped model (see models/README.md, its card). Relative to the repository root.
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_WEIGHTS = MODELS_DIR / "her2slide-cells-v2.pt"


def weights_path(settings: Settings) -> Path | None:
    """The weights file a run uses, or None when the classical segmenter needs none."""
    if settings.segmenter == "classical":
        return None
    return Path(settings.model.weights) if settings.model.weights else DEFAULT_WEIGHTS


def weights_sha256(settings: Settings) -> str | None:
    path = weights_path(settings)
    return file_sha256(path) if path is not None and path.exists() else None
