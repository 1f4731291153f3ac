"""A scored synthetic slide for the viewer tests, and a headless Chromium driven by selenium.

The slide's file name, its vendor metadata, its ROI's class names (and, in the tests, the
reviewer's name) carry HTML that would run script if any page put it in as markup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from her2slide.config import load_settings
from her2slide.run.pipeline import score_slide_file
from her2slide.slide import open_slide
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec
from her2slide.synth.svs import write_svs
from her2slide.viewer import headless

EVIL_NAME = 'focal <img src=x onerror="window.pwned=1"> & co'
EVIL_TITLE = '<img src=x onerror="window.pwned=2">'
EVIL_ROI_CLASS = '<b id="pwned-roi">Tumour</b>'


def scored_slide(folder: Path) -> Path:
    """Render a small focal slide, rewrite it under a hostile name and metadata, score it with an ROI."""
    made = make_synthetic_slide(SlideSpec(name="focal", pattern="focal", score="1+", fraction=0.25, positive="3+",
                                          size_um=(500.0, 500.0), seed=3), folder / "render")
    reader = open_slide(made.svs)
    width, height = reader.dimensions
    svs = write_svs(folder / f"{EVIL_NAME}.svs", lambda y0, x0, h, w: reader.read_region(x0, y0, 0, w, h),
                    (height, width), mpp=reader.mpp, extra={"Title": EVIL_TITLE})
    reader.close()
    roi = folder / "roi.geojson"
    margin, hole = 100, (width // 2, height // 2, 160)
    roi.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _polygon([(margin, margin), (width - margin, margin), (width - margin, height - margin),
                  (margin, height - margin)], EVIL_ROI_CLASS),
        _polygon([(hole[0], hole[1]), (hole[0] + hole[2], hole[1]), (hole[0] + hole[2], hole[1] + hole[2]),
                  (hole[0], hole[1] + hole[2])], "Exclude")]}))
    return score_slide_file(svs, folder / "results", load_settings(), roi=roi).out_dir


def _polygon(points: list[tuple[int, int]], name: str) -> dict[str, Any]:
    ring = [list(p) for p in points] + [list(points[0])]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"objectType": "annotation", "classification": {"name": name, "color": [0, 0, 0]}}}


def chromium_driver(profile: Path) -> Iterator[Any]:
    """A headless Chromium for a test; skips with the reason when it is not installed."""
    reason = headless.missing()
    if reason is not None:
        pytest.skip(reason)
    with headless.chromium(profile) as driver:
        yield driver
