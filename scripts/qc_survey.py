"""QC statistics of an image without its cells: the pipeline's tissue mask, white point, stain
fit and per-block stain statistics (her2slide.qc), tile by tile, with no segmenter.

Shared by scripts/derive_qc_ranges.py and scripts/scanner_variation.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from her2slide.config import Settings
from her2slide.qc import QcTally, assess_tile, qc_context
from her2slide.run.stain_sample import estimate_slide_stain, sample_patches
from her2slide.slide import detect_tissue, open_slide, plan_tiles
from her2slide.slide.tiles import read_box


def survey(path: str | Path, mpp: float | None, settings: Settings) -> dict:
    """White point, stain fit and slide stain statistics (medians over kept blocks) of one image."""
    reader = open_slide(path, mpp=mpp)
    thumb, thumb_mpp = reader.thumbnail(settings.tiling.tissue_mpp)
    mask = detect_tissue(thumb, thumb_mpp, level0_mpp=reader.mpp)
    plan = plan_tiles(reader, mask, work_mpp=settings.tiling.work_mpp, tile_px=settings.tiling.tile_px,
                      margin_um=settings.tiling.margin_um, min_tissue_fraction=settings.tiling.min_tissue_fraction)
    sample = sample_patches(reader, mask, settings)
    stain = estimate_slide_stain(sample, settings, thumb, mask)
    context = qc_context(mask, reader.mpp, None, stain.model, sample, settings)
    tally = QcTally()
    for tile in plan.tiles:
        rgb = read_box(reader, tile.read, settings.tiling.work_mpp)
        tally.add(assess_tile(rgb, stain.model, tile, plan.downsample, reader.mpp, context, settings), {})
    evidence = tally.evidence(0)
    reader.close()
    return {"stain": stain.to_dict(), "tissue_mm2": round(mask.area_um2 / 1e6, 4),
            "glass_share": round(float(mask.outer_glass.mean()), 4),
            "excluded": {k: round(v / max(evidence.scope_um2, 1e-9), 4) for k, v in evidence.excluded_um2.items() if v},
            **{name: (round(v, 4) if np.isfinite(v) else None) for name, v in evidence.stain_stats.items()}}
