"""Small hand-made RegionMaps / HeterogeneityResult for the output-writer tests.

Built directly from numpy arrays so the writers are tested without the region grid.
A 5 x 7 grid of 100 µm regions whose top-left corner is at slide µm (1000, 2000), at
0.25 µm per level-0 pixel; region (row 1, col 2) is a lone 3+ region with unique values.
"""

from __future__ import annotations

import numpy as np

from her2slide.maps.region_maps import CHANNELS, SCORE_COLOURS, HeterogeneityResult, RegionMaps

REGION_UM = 100.0
ORIGIN_UM = (1000.0, 2000.0)  # (x, y)
MPP = 0.25
SHAPE = (5, 7)
MARKED = (1, 2)  # (row, col) of the region with unique values


def make_maps(excluded: bool = False) -> RegionMaps:
    """Counts 0 in the first row and column (NaN channels there); a two-region cluster; a marked region."""
    ny, nx = SHAPE
    rows, cols = np.indices(SHAPE)
    counts = (10 + rows * nx + cols).astype(np.int32)
    counts[0, :] = 0
    counts[:, 0] = 0
    has = counts > 0
    channels = {name: np.where(has, (k + 1) / 10 + 0.001 * cols + 0.0001 * rows, np.nan).astype(np.float32)
                for k, name in enumerate(CHANNELS)}
    channels["local_score"] = np.where(has, 1.0, np.nan).astype(np.float32)
    local = np.where(has, 2, 0).astype(np.int32)
    r, c = MARKED
    for name in CHANNELS:
        channels[name][r, c] = 0.777
    channels["local_score"][r, c] = 3.0
    local[r, c] = 4
    clusters = np.zeros(SHAPE, dtype=np.int32)
    clusters[3, 4:6] = 1
    return RegionMaps(
        region_um=REGION_UM, origin_um=ORIGIN_UM, mpp_level0=MPP, counts=counts, channels=channels,
        labels={"local_score_class": local, "heterogeneity_regions": clusters},
        label_colours={"local_score_class": dict(SCORE_COLOURS), "heterogeneity_regions": {1: (128, 0, 128, 255)}},
        excluded=np.where(has, 0.25, 0.0).astype(np.float32) if excluded else None,
    )


def make_heterogeneity() -> HeterogeneityResult:
    return HeterogeneityResult(
        pattern="focal",
        metrics={"reason": "one cluster", "positive_percent": 12.5, "morans_i": {"value": 0.4, "z": float("nan")},
                 "cluster_count": 1},
        clusters=[{"label": 1, "regions": 2, "cells": 40, "bbox_um": [1400.0, 2300.0, 1600.0, 2400.0]}],
    )


def make_report(score: str | None = "2+") -> dict:
    return {
        "score": score, "status": "equivocal" if score else None, "category": "equivocal" if score else None,
        "criteria": "breast", "reasons": ["2+ met: weak-moderate complete staining in 14.0% (140 of 1000 cells)"],
        "cells": {"total": 1000, "percent": {"0": 40.0, "1+": 40.0, "2+": 14.0, "3+": 6.0}},
        "qc": [], "heterogeneity": make_heterogeneity().to_dict(),
        "provenance": {"input": "/data/slide-7.svs", "input_sha256": "ab" * 32,
                       "slide": {"dimensions": [4000, 3000], "vendor": "aperio", "mpp": MPP, "mpp_source": "metadata"},
                       "work_mpp": 0.5, "model": {"id": "classical-segmenter", "sha256": None},
                       "config": {"scoring": {"faint_od": 0.1, "moderate_od": 0.28, "intense_od": 0.55,
                                              "complete_fraction": 0.9}},
                       "code_version": "0.1.0"},
        "timings": {"cells": 3.5, "total": 4.25},
    }
