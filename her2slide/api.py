"""The library API a notebook or another program uses instead of the command line.

``her2slide score`` and ``her2slide.score_slide`` are the same path (her2slide.run.pipeline): the
same settings, the same output folder, the same report. Errors in the input raise
:class:`her2slide.errors.InputError` with the one-line reason the CLI prints.
"""

from __future__ import annotations

from pathlib import Path

from her2slide.config import Settings, load_settings
from her2slide.run.pipeline import SlideOutcome, score_slide_file


def score_slide(path: str | Path, out_root: str | Path, settings: Settings | str | Path | None = None, *,
                criteria: str | None = None, segmenter: str | None = None, mpp: float | None = None,
                roi: str | Path | None = None) -> SlideOutcome:
    """Score one slide into ``out_root/<slide stem>/`` and return its outcome.

    ``settings``: a :class:`Settings`, a YAML file, or None for configs/default.yaml; ``criteria``
    ("breast", "gastric-resection", "gastric-biopsy") and ``segmenter`` ("classical", "cnn")
    override it as the CLI's options do. ``mpp`` gives the pixel size of images without one;
    ``roi`` is a QuPath GeoJSON or polygon list (docs/roi_and_qc.md). ``outcome.report`` is
    report.json as a dict (``report["score"]`` is None for a slide QC did not score) and
    ``outcome.out_dir`` the folder with the cells, maps and review page.
    """
    overrides = {key: value for key, value in (("criteria", criteria), ("segmenter", segmenter)) if value is not None}
    if isinstance(settings, Settings):
        settings = load_settings(None, **{**settings.model_dump(), **overrides})
    else:
        settings = load_settings(settings, **overrides)
    return score_slide_file(path, out_root, settings, mpp=mpp, roi=roi)
