"""Nucleus detection on real annotated nuclei rendered as HER2 IHC fields, through the scoring path.

A rendered field (her2slide.synth.restain.ihc_like) is written to an image file and read back
the way ``her2slide score`` reads a TMA core: ``open_slide`` with ``--mpp``, the tile plan, the
slide's stain sample, white point and estimate, the white-balanced tile reader, the segmenter's stream and maps (with the QC spoilt-pixel
mask the tile stream gives them), then ``cells.nucleus_instances``, the nuclei the cell finder
works from. Each tile keeps the nuclei in its owned box, as the pipeline keeps cells.

One difference, on purpose: the field is tissue to its border, so the tile plan is made from an
all-tissue mask. The pipeline's tissue detector thresholds optical density against the slide's
glass, and a field without glass has none to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from her2slide.cells import label_centroids, nucleus_instances
from her2slide.cells.tile_cells import level0_xy, measure_tile_maps
from her2slide.config import Settings
from her2slide.datasets.nuclei import NucleiImage
from her2slide.qc import SlideQc
from her2slide.run.engine import Segmenter
from her2slide.run.pipeline import measurement_setup
from her2slide.slide import TissueMask, open_slide, plan_tiles
from her2slide.synth.restain import MembraneStyle, ihc_like

#: A detected nucleus matches an annotated one when their centroids are this close (issue 14).
MATCH_UM = 3.0
#: Nuclear haematoxylin of the rendered fields (OD): the real cores measure 0.12–0.14
#: (scripts/measure_counterstain.py); pale and dark are about half and twice that.
COUNTERSTAIN_LEVELS = {"pale": 0.07, "typical": 0.13, "dark": 0.26}


@dataclass(frozen=True)
class FieldDetections:
    """What the pipeline found in one field, in level-0 pixels: every nucleus, and the tumour cells."""

    nuclei_xy: np.ndarray  # (n, 2) x, y
    tumour_xy: np.ndarray  # (m, 2) x, y


def render_field(entry: NucleiImage, counterstain_od: float, membranes: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The annotated image as an IHC field at its own resolution, and its nucleus labels.

    With ``membranes``, the default synthetic membrane mix (none / faint / moderate / strong, arcs,
    haze) drawn from ``seed``, so every counterstain level of an image gets the same membranes."""
    rgb, labels = entry.load()
    style = MembraneStyle() if membranes else None
    return ihc_like(rgb, labels, entry.mpp, np.random.default_rng(seed), counterstain_od=counterstain_od,
                    membranes=style), labels


def true_centroids(labels: np.ndarray) -> np.ndarray:
    """(n, 2) x, y centroid of every annotated nucleus, in pixel-index coordinates."""
    area, cy, cx = label_centroids(labels, int(labels.max()))
    present = area[1:] > 0
    return np.column_stack([cx[1:][present], cy[1:][present]])


def detect_field(path: Path, mpp: float, settings: Settings, segmenter: Segmenter) -> FieldDetections:
    """Nuclei and tumour cells of an image field, as ``her2slide score --mpp`` finds them."""
    reader = open_slide(path, mpp=mpp)
    thumb, thumb_mpp = reader.thumbnail(settings.tiling.tissue_mpp)
    tissue = TissueMask(np.ones(thumb.shape[:2], bool), thumb_mpp, thumb_mpp / reader.mpp)
    tiling = settings.tiling
    plan = plan_tiles(reader, tissue, work_mpp=tiling.work_mpp, tile_px=tiling.tile_px, margin_um=tiling.margin_um,
                      min_tissue_fraction=tiling.min_tissue_fraction)
    context, tile_reader, slide_stain = measurement_setup(reader, thumb, tissue, None, settings)
    stain = slide_stain.model
    screen = SlideQc(context, None, slide_stain, settings)
    nuclei, tumour = [], []
    for tile, rgb, evidence in segmenter.stream(tile_reader, plan, stain):
        spoilt = screen.assess(tile, rgb, plan.downsample, reader.mpp).spoilt
        maps = segmenter.maps(rgb, evidence, stain, spoilt)
        _, props = nucleus_instances(maps, tiling.work_mpp)
        x, y = level0_xy(tile, props["cx"], props["cy"], plan.downsample)
        owned = tile.owns(x, y)
        nuclei.append(np.column_stack([x[owned], y[owned]]))
        cells = measure_tile_maps(maps, tile, plan.downsample, reader.mpp, settings)
        tumour.append(np.column_stack([cells["x"], cells["y"]]))
    reader.close()
    empty = np.zeros((0, 2))
    return FieldDetections(np.concatenate(nuclei) if nuclei else empty, np.concatenate(tumour) if tumour else empty)
