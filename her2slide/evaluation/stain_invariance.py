"""Stain invariance on the real cores (issue 14, criterion 1): the same tissue, with and without DAB,
must give the same tumour cells.

Each stained core (1+, 2+, 2+) is scored as it is and with its DAB removed (restain.remove_dab,
the issue's recipe); the DAB-negative core (0) as it is and with synthetic membrane DAB added
around the nuclei the classical colour-deconvolution segmenter finds in the original. Those
nuclei are a fixed input, the same whatever segmenter is under test: the membranes must not
come from the detector being judged. Both versions are written as uncompressed TIFF (the
original's decoded pixels unchanged) and scored by ``score_slide_file`` at --mpp 0.25 with the
gastric-resection criteria; cells.parquet centroids are matched within 4 µm (one to one,
closest first): same-cell F1 and the count ratio (restained / original).

QC tile checks are off for the comparison by default (``with_tile_checks=False``): the
cytoplasmic-DAB check legitimately excludes blocks where DAB fills the cytoplasm, which is a
decision about what to measure, not about which cells are there. Both are reported by the script.

A crop is the window of ``crop_px`` level-0 pixels with the most haematoxylin (the densest
nuclei) on the tissue thumbnail: a fixed rule, applied to the original, blind to DAB.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from her2slide.cells import classical_maps, nucleus_instances
from her2slide.config import Settings, load_settings
from her2slide.errors import UnsuitableSlideError
from her2slide.evaluation.matching import Detection, detection
from her2slide.run.engine import Segmenter
from her2slide.run.pipeline import score_slide_file
from her2slide.run.stain_sample import estimate_slide_stain, sample_patches
from her2slide.slide import detect_tissue, open_slide
from her2slide.stain import estimate_stain_model, estimate_white_point, rgb_to_od
from her2slide.synth.restain import MembraneStyle, add_dab, membrane_dab, remove_dab

#: The cores are 40x scans that do not record their pixel size (shared data README).
CORE_MPP = 0.25
#: Cells of the two versions are the same cell when their centroids are this close (issue 14).
MATCH_UM = 4.0
#: Synthetic membranes added to the 0 core: mostly stained, some arcs, a little haze.
ADDED_MEMBRANES = MembraneStyle(class_weights=(0.1, 0.3, 0.3, 0.3))
#: The pipeline's wording for a slide where no tumour cell was found: zero cells, not a failure.
_NO_TUMOUR_CELLS = "no invasive tumour cells found"


@dataclass(frozen=True)
class Version:
    """One scored version of a core: its tumour-cell centroids (µm) and score, or why it was refused."""

    cells_um: np.ndarray | None
    score: str | None
    refused: str | None = None
    white_point: list[float] | None = None  # the slide's white point as QC read it (RGB)


def core_label(path: Path) -> str:
    """The pathologists' IHC score, from the file name's leading digit (shared data README)."""
    return {"0": "0", "1": "1+", "2": "2+", "3": "3+"}[path.name[0]]


def comparison_settings(config: Path | None = None, segmenter: str | None = None, weights: Path | None = None,
                        *, tile_checks: bool = False) -> Settings:
    """Gastric-resection settings for the comparison, with QC tile checks on or off."""
    settings = load_settings(config, criteria="gastric-resection", segmenter=segmenter)
    settings = settings.model_copy(update={"qc": settings.qc.model_copy(update={"tile_checks": tile_checks})})
    return settings.with_model(weights=str(weights)) if weights else settings


def densest_window(rgb_thumb: np.ndarray, thumb_mpp: float, window_um: float) -> tuple[int, int]:
    """(column, row) of the top-left thumbnail pixel of the square window of ``window_um`` whose mean
    optical density (summed over R, G, B) is highest (first in raster order on ties)."""
    density = rgb_to_od(rgb_thumb, estimate_white_point(rgb_thumb)).sum(axis=-1)
    side = max(1, min(round(window_um / thumb_mpp), *density.shape))
    mean = ndi.uniform_filter(density, size=side, mode="constant")
    lo = side // 2
    valid = mean[lo:density.shape[0] - side + lo + 1, lo:density.shape[1] - side + lo + 1]
    row, col = np.unravel_index(np.argmax(valid), valid.shape)
    return int(col), int(row)


def core_pixels(path: Path, crop_px: int | None, settings: Settings) -> np.ndarray:
    """The core's level-0 RGB, whole or the densest ``crop_px`` window (:func:`densest_window`)."""
    reader = open_slide(path, mpp=CORE_MPP)
    if crop_px is None:
        rgb = reader.read_region(0, 0, 0, *reader.dimensions)
    else:
        thumb, thumb_mpp = reader.thumbnail(settings.tiling.tissue_mpp)
        col, row = densest_window(thumb, thumb_mpp, crop_px * reader.mpp)
        scale = thumb_mpp / reader.mpp
        x0 = int(np.clip(round(col * scale), 0, reader.dimensions[0] - crop_px))
        y0 = int(np.clip(round(row * scale), 0, reader.dimensions[1] - crop_px))
        rgb = reader.read_region(x0, y0, 0, crop_px, crop_px)
    reader.close()
    return rgb


def with_added_membranes(rgb: np.ndarray, settings: Settings, seed: int = 0) -> np.ndarray:
    """``rgb`` (level 0, CORE_MPP) with synthetic membrane DAB around the tumour nuclei that the
    classical colour-deconvolution segmenter finds in it at the working resolution."""
    work_mpp = settings.tiling.work_mpp
    h, w = rgb.shape[:2]
    small = np.asarray(Image.fromarray(rgb).resize((round(w * CORE_MPP / work_mpp), round(h * CORE_MPP / work_mpp)),
                                                   Image.Resampling.BOX))
    stain = estimate_stain_model(small, max_angle_deg=settings.stain.max_angle_deg)
    maps = classical_maps(small, stain, settings.cells, work_mpp)
    nuclei, props = nucleus_instances(maps, work_mpp)
    rows = np.clip(np.rint(props["cy"]).astype(int), 0, nuclei.shape[0] - 1)
    cols = np.clip(np.rint(props["cx"]).astype(int), 0, nuclei.shape[1] - 1)
    keep = np.zeros(nuclei.max() + 1, bool)
    keep[props["label"][maps.tumour[rows, cols] >= 0.5]] = True
    dab = membrane_dab(np.where(keep[nuclei], nuclei, 0), work_mpp, np.random.default_rng(seed), ADDED_MEMBRANES)
    full = np.asarray(Image.fromarray(dab).resize((w, h), Image.Resampling.BILINEAR))
    return add_dab(rgb, full)


def restained(rgb: np.ndarray, label: str, settings: Settings, literal: bool = False,
              glass: np.ndarray | None = None) -> np.ndarray:
    """The stained cores without their DAB, taken against the core's ``glass`` (``literal``: the
    issue's clipping recipe against 255, see restain.remove_dab); the 0 core with membranes added."""
    if label == "0":
        return with_added_membranes(rgb, settings)
    return remove_dab(rgb, literal=literal, white=None if literal else glass)


def core_glass(path: Path, settings: Settings) -> np.ndarray:
    """The whole core's white point as the pipeline reads it (its glass; her2slide.stain.white_point),
    also for a crop of it that holds no glass."""
    reader = open_slide(path, mpp=CORE_MPP)
    thumb, thumb_mpp = reader.thumbnail(settings.tiling.tissue_mpp)
    mask = detect_tissue(thumb, thumb_mpp, level0_mpp=reader.mpp)
    white = estimate_slide_stain(sample_patches(reader, mask, settings), settings, thumb, mask).white.rgb
    reader.close()
    return white


def score_cells(path: Path, out_root: Path, settings: Settings, segmenter: Segmenter) -> Version:
    """Tumour-cell centroids (µm) and score of one image, as ``her2slide score --mpp 0.25`` gives them."""
    try:
        outcome = score_slide_file(path, out_root, settings, mpp=CORE_MPP, segmenter=segmenter)
    except UnsuitableSlideError as exc:
        if exc.reason.startswith(_NO_TUMOUR_CELLS):
            return Version(np.zeros((0, 2)), None)
        return Version(None, None, exc.reason)
    cells = pq.read_table(outcome.out_dir / "cells.parquet", columns=["x_um", "y_um"]).to_pydict()
    return Version(np.column_stack([cells["x_um"], cells["y_um"]]), outcome.report["score"],
                   white_point=outcome.report["qc"]["stain"]["white_point"]["rgb"])


def compare_core(path: Path, settings: Settings, segmenter: Segmenter, crop_px: int | None = None,
                 work_dir: Path | None = None, literal_removal: bool = False) -> dict:
    """Score a core (or its densest crop) and its restained version; same-cell F1 and count ratio."""
    label = core_label(path)
    original = core_pixels(path, crop_px, settings)
    glass = core_glass(path, settings)
    versions = {"original": original, "restained": restained(original, label, settings, literal_removal, glass)}
    with tempfile.TemporaryDirectory(prefix="her2slide-invariance-", dir=work_dir) as scratch:
        scored = {}
        for name, rgb in versions.items():
            image = Path(scratch) / f"{path.stem[:10]}_{name}.tif"
            tifffile.imwrite(image, rgb)
            scored[name] = score_cells(image, Path(scratch) / "out", settings, segmenter)
    row = {"core": path.name[:10], "label": label, "change": "dab-added" if label == "0" else "dab-removed",
           "crop_px": crop_px, "score_original": scored["original"].score, "score_restained": scored["restained"].score,
           "white_point_original": scored["original"].white_point,
           "white_point_restained": scored["restained"].white_point}
    refused = {name: v.refused for name, v in scored.items() if v.refused}
    if refused:
        return {**row, "refused": refused}
    same = detection(scored["original"].cells_um, scored["restained"].cells_um, MATCH_UM)
    return {**row, **_summary(same)}


def _summary(same: Detection) -> dict:
    """Counts, F1 and ratio; both undefined (None) when the original has no cells to compare with."""
    defined = same.true > 0
    return {"cells_original": same.true, "cells_restained": same.found, "matched": same.matched,
            "same_cell_f1": round(same.f1, 4) if defined else None,
            "count_ratio": round(same.found / same.true, 4) if defined else None}
