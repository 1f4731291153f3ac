"""The generator's existing outputs are pinned: the 40-slide evaluation suite, the demo slide and
the v1 training tiles must stay pixel-identical while the generator grows (issue 14 compares the
new detector with v1 on that same suite). Hashes were recorded before the style families were
added; a change here means old results are no longer comparable, so it is never "fixed" by
updating a hash without saying so in the commit."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from her2slide.synth.render import render_region
from her2slide.synth.slides import build_scene, suite_specs
from her2slide.synth.spec import SlideSpec
from her2slide.synth.tiles import make_training_tiles

REGION_KEYS = ("rgb", "cells", "membrane", "boundary", "nucleus", "tumour")
V1_TILE_KEYS = ("image", "membrane", "membrane_all", "membrane_od", "nucleus", "cells", "tumour", "cell_class", "mpp")


def digest(arrays: dict[str, np.ndarray]) -> str:
    """Short SHA-256 over names, dtypes, shapes and bytes; text arrays by their content (the width of
    a numpy string dtype is not part of what a slide is)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.asarray(arrays[k])
        if a.dtype == object or a.dtype.kind == "U":
            h.update(f"{k}|text|{a.shape}|".encode())
            h.update("\x00".join(a.astype(str).ravel().tolist()).encode())
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{k}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def region_digest(scene, y0: int, x0: int, h: int, w: int) -> str:
    region = render_region(scene, y0, x0, h, w)
    return digest({k: getattr(region, k) for k in REGION_KEYS})


def test_suite_definition_is_pinned():
    specs = suite_specs(40, 0)
    fields = {f"{i}": np.array([s.name, s.pattern, s.score, s.fraction, s.positive, s.clusters, s.seed, *s.size_um,
                                *(s.layout.architecture.get(k, 0.0) for k in ("nest", "sheet", "gland"))], dtype=str)
              for i, s in enumerate(specs)}
    assert digest(fields) == "4f42d797191961df"


@pytest.mark.parametrize("index, truth, regions", [
    (2, "f95dfb7ffcd1ef5b", {(1500, 1500, 256, 256): "fcdd08ca891a38cc", (2260, 500, 200, 800): "eb71e3ea30c6d24a"}),
])
def test_suite_slide_truth_and_pixels_are_pinned(index, truth, regions):
    scene, cells = build_scene(suite_specs(40, 0)[index])
    assert digest(cells) == truth
    for box, want in regions.items():
        assert region_digest(scene, *box) == want, box


def test_demo_slide_is_pinned():
    # the spec her2slide.cli.demo.run_demo renders (seed 7)
    spec = SlideSpec(name="demo-focal", pattern="focal", score="1+", fraction=0.25, positive="3+",
                     size_um=(900.0, 900.0), seed=7)
    scene, cells = build_scene(spec)
    assert digest(cells) == "932b0222104c7aa8"
    assert region_digest(scene, 1700, 1700, 256, 256) == "cb4dc6e99ba3025b"


@pytest.mark.parametrize("mpp, want", [(0.5, "dee578550fd10d83"), (0.6, "c2f1e6537a8fec97")])
def test_v1_training_tiles_are_pinned(tmp_path, mpp, want):
    (path,) = make_training_tiles(1, tmp_path, tile_px=96, mpp=mpp, seed=0, first=3)
    with np.load(path) as d:
        assert digest({k: d[k] for k in V1_TILE_KEYS}) == want
