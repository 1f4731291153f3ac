"""Score one slide: the data path of DESIGN.md, in order. The CLI and batch both call this."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from her2slide.config import Settings
from her2slide.context.sampling import sampling_risk
from her2slide.context.wording import decision_support
from her2slide.errors import InputError, UnsuitableSlideError
from her2slide.maps.heterogeneity import RegionGrid, call_heterogeneity
from her2slide.maps.region_maps import HeterogeneityResult, RegionMaps
from her2slide.outputs.atomic import write_json_atomic
from her2slide.outputs.cells_table import CellTableWriter
from her2slide.outputs.geojson import CellGeoJsonWriter
from her2slide.outputs.qc_blocks import QcBlockWriter
from her2slide.outputs.result_folder import claimed, result_folder, staged_result
from her2slide.outputs.roi_file import write_roi_geojson
from her2slide.outputs.slide_outputs import write_review_outputs
from her2slide.provenance import code_version, file_sha256
from her2slide.qc import QcContext, SlideQc, qc_context
from her2slide.qc.roi import Roi, load_roi
from her2slide.run.engine import Segmenter
from her2slide.run.lazy_segmenter import SegmenterSource, ready
from her2slide.run.progress import Progress, no_progress
from her2slide.run.stain_sample import estimate_slide_stain, sample_patches
from her2slide.run.tile_stream import measured_tiles
from her2slide.scoring import CELL_CLASSES, Criteria, SlideScore, score_slide
from her2slide.slide import TilePlan, TissueMask, check_suitability, detect_tissue, open_slide, plan_tiles, SlideReader
from her2slide.slide.white_balance import WhiteBalancedReader, balanced_for_segmenter
from her2slide.stain import SlideStain, StainModel

#: Why report.json's stage timings add up to more than ``total``.
TIMINGS_NOTE = ("tile_stream is the wall time of the tile stream; read_and_segment (reading and the network), "
                "qc and cells (summed over the measurement threads) and write_cells run inside it at the same "
                "time, so the stages add up to more than total")


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - since, 3)
        return now


@dataclass(frozen=True)
class SlideOutcome:
    """What a caller needs after scoring: where the outputs are and the report itself."""

    out_dir: Path
    report: dict
    maps: RegionMaps | None = None  # the region grid, for the map and review writers
    heterogeneity: HeterogeneityResult | None = None


def measurement_setup(reader: SlideReader, thumb: np.ndarray, mask: TissueMask, region: Roi | None,
                      settings: Settings) -> tuple[QcContext, WhiteBalancedReader, SlideStain]:
    """The slide's QC context, the reader its tiles are measured through, and its stain.

    Stain vectors and the QC reference describe the slide, so they are sampled over all its
    tissue: an ROI then changes which cells count, never how each cell is measured. Tiles are
    read white-balanced to the segmenter's colour (optical densities do not change). Evaluations
    that must follow the scoring path (her2slide.evaluation.nuclei) call this too.
    """
    sample = sample_patches(reader, mask, settings)
    slide_stain = estimate_slide_stain(sample, settings, thumb, mask)
    context = qc_context(mask, reader.mpp, region, slide_stain.model, sample, settings)
    tile_reader, slide_stain = balanced_for_segmenter(reader, slide_stain)
    return context, tile_reader, slide_stain


def score_slide_file(path: str | Path, out_root: str | Path, settings: Settings,
                     mpp: float | None = None, segmenter: SegmenterSource | None = None,
                     roi: str | Path | None = None, progress: Progress = no_progress) -> SlideOutcome:
    """Read, measure and score one slide; write its output folder atomically.

    Raises :class:`her2slide.errors.InputError` (or its subclass for unsuitable slides)
    with a one-line reason; nothing is written for a slide that fails. The output folder is
    held for this run and replaced only if her2slide wrote it (her2slide.outputs.result_folder).
    ``segmenter`` lets a caller scoring many slides load the model once: a segmenter, or a
    function making one, called only after the slide passed its checks, so refusing a bad
    file never loads the model (default: the one the settings name). ``roi``: a QuPath
    GeoJSON or polygon-list file (her2slide.qc.roi); only cells inside it are scored and tiles
    wholly outside it are never read. A slide that fails QC is written with score None and
    status "not-scored" (her2slide.qc), never as HER2 0. ``progress`` hears of every tile.
    """
    path = Path(path)
    destination = result_folder(out_root, path)
    with claimed(destination, path):
        return _score_into(destination, path, settings, mpp, segmenter, roi, progress)


def _score_into(destination: Path, path: Path, settings: Settings, mpp: float | None,
                segmenter: SegmenterSource | None, roi: str | Path | None, progress: Progress) -> SlideOutcome:
    timer = _Timer()
    start = t = time.perf_counter()
    reader = open_slide(path, mpp=mpp)
    thumb, thumb_mpp = reader.thumbnail(settings.tiling.tissue_mpp)
    mask = detect_tissue(thumb, thumb_mpp, level0_mpp=reader.mpp)
    check_suitability(reader, thumb, thumb_mpp, tissue=mask)
    if not mask.mask.any():
        raise UnsuitableSlideError(path, "no tissue found; not scored")
    plan = plan_tiles(reader, mask, work_mpp=settings.tiling.work_mpp, tile_px=settings.tiling.tile_px,
                      margin_um=settings.tiling.margin_um, min_tissue_fraction=settings.tiling.min_tissue_fraction)
    region = load_roi(roi, settings.roi, slide_size=reader.dimensions, mpp=reader.mpp) if roi is not None else None
    t = timer.lap("tissue_and_plan", t)
    context, tile_reader, slide_stain = measurement_setup(reader, thumb, mask, region, settings)
    stain = slide_stain.model
    t = timer.lap("stain_estimate", t)
    if region is not None:
        plan = region.restrict(plan)  # tiles wholly outside the ROI are never measured
        roi_area_um2 = region.scored_area_um2(mask, reader.mpp)
        if len(plan) == 0 or roi_area_um2 == 0:
            raise InputError(roi, "the ROI holds no tissue of this slide; not scored")

    segmenter = ready(segmenter, settings)
    input_sha256 = file_sha256(path)
    with staged_result(destination, path) as staging:
        grid = RegionGrid(reader.dimensions[0] * reader.mpp, reader.dimensions[1] * reader.mpp, reader.mpp, settings)
        with CellGeoJsonWriter(staging / "cells.geojson.gz", id_seed=input_sha256) as geojson, \
                QcBlockWriter(staging / "qc_excluded.parquet") as qc_blocks, progress(len(plan)) as tick:
            slide_qc = SlideQc(context, region, slide_stain, settings,
                               on_excluded=grid.add_excluded, on_tile_qc=qc_blocks.append)
            classes, xy_um, t = _measure_all_tiles(tile_reader, plan, stain, settings, segmenter,
                                                   staging / "cells.parquet", timer, t,
                                                   sinks=[grid.add, geojson.append, tick], screen=slide_qc)
            if len(classes) == 0 and not any(slide_qc.tally.removed.values()):
                raise UnsuitableSlideError(path, "no invasive tumour cells found; not scored")
            scored = score_slide(classes, settings.criteria, settings.scoring, xy_um=xy_um) if len(classes) else None
            qc = slide_qc.verdict(len(classes), scored.score if scored else None)
            result = _score(scored, len(classes), qc, settings)
            t = timer.lap("scoring", t)
            maps = grid.finish()
            geojson.add_regions(maps)
        heterogeneity = call_heterogeneity(maps, settings)
        t = timer.lap("heterogeneity", t)
        risk = _sampling_risk(classes, xy_um, result["score"], settings)
        t = timer.lap("sampling_risk", t)
        report = {
            **result,
            "qc": qc,
            "roi": None if region is None else {**region.to_dict(reader.mpp),
                                                "scored_area_mm2": round(roi_area_um2 / 1e6, 4)},
            "heterogeneity": heterogeneity.to_dict(),
            "sampling_risk": risk,
            "tissue": {"area_mm2": round(mask.area_um2 / 1e6, 4), "tiles": len(plan)},
            "provenance": {
                "input": str(path.resolve()), "input_sha256": input_sha256,
                "slide": {"dimensions": list(reader.dimensions), "vendor": reader.vendor,
                          "mpp": reader.mpp, "mpp_source": reader.mpp_source},
                "work_mpp": settings.tiling.work_mpp,
                "stain": {**stain.to_dict(), "white_balance_gains": [round(float(g), 4) for g in tile_reader.gains]},
                "model": {"id": segmenter.model_id, "sha256": segmenter.model_sha256},
                "config": settings.dump(),
                "code_version": code_version(),
            },
        }
        report["decision_support"] = decision_support(report)
        t = timer.lap("report", t)
        if region is not None:
            write_roi_geojson(staging / "roi.geojson", region)
        write_review_outputs(staging, reader, report, maps, heterogeneity, settings)
        timer.lap("maps_and_review", t)
        report["timings"] = {**timer.seconds, "total": round(time.perf_counter() - start, 3)}
        report["timings_note"] = TIMINGS_NOTE
        write_json_atomic(staging / "report.json", report)
    reader.close()
    return SlideOutcome(destination, report, maps, heterogeneity)


def _sampling_risk(classes: np.ndarray, xy_um: np.ndarray, score: str | None, settings: Settings) -> dict | None:
    """Simulated core biopsies of this section; none for a slide that is not scored or
    already is a gastric biopsy."""
    if score is None or settings.criteria is Criteria.GASTRIC_BIOPSY:
        return None
    return sampling_risk(xy_um[:, 0], xy_um[:, 1], classes, settings.criteria, settings.scoring, settings.context)


def _measure_all_tiles(reader: SlideReader, plan: TilePlan, stain: StainModel, settings: Settings,
                       segmenter: Segmenter, cells_path: Path, timer: _Timer, t: float,
                       sinks: list[Callable[[dict[str, np.ndarray]], None]],
                       screen: SlideQc) -> tuple[np.ndarray, np.ndarray, float]:
    """Stream tiles through measurement (her2slide.run.tile_stream), appending cells to Parquet (and
    each of ``sinks``: the region grid, the GeoJSON) as they come; ``screen`` first removes the
    cells outside the ROI or in blocks QC excludes.

    Timings: ``tile_stream`` is the wall time of the whole stream; inside it ``read_and_segment``
    (this thread), ``qc`` and ``cells`` (summed over the measurement threads) overlap, so they add
    up to more than it; ``write_cells`` is this thread's time in the sinks.

    Only the class code and position of each cell stay in memory (for the slide score
    and the gastric-biopsy cluster rule): 17 bytes per cell.
    """
    classes: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    seconds = timer.seconds
    with CellTableWriter(cells_path) as writer:
        for measured in measured_tiles(reader, plan, stain, settings, segmenter, screen, seconds):
            start = time.perf_counter()
            cells = screen.keep_scored(measured.qc, measured.cells)
            writer.append(cells)
            for sink in sinks:
                sink(cells)
            classes.append(cells["cell_class"])
            positions.append(np.column_stack([cells["x_um"], cells["y_um"]]).astype(np.float32))
            timer.lap("write_cells", start)
    for name in ("read_and_segment", "qc", "cells"):
        seconds[name] = round(seconds.get(name, 0.0), 3)
    t = timer.lap("tile_stream", t)
    return np.concatenate(classes), np.concatenate(positions), t


def _score(result: SlideScore | None, n_cells: int, qc: dict, settings: Settings) -> dict:
    """The score fields of report.json from the cells' score (None without cells). A slide that
    fails QC is "not-scored" with QC's reasons: it must never read as HER2 0. Its class
    percentages are still given (0 with no cells)."""
    cells = {"total": n_cells,
             "percent": dict(result.percent) if result else dict.fromkeys(CELL_CLASSES, 0.0)}
    if qc["verdict"] == "fail":
        return {"score": None, "status": "not-scored", "category": None, "criteria": settings.criteria.value,
                "reasons": [f"not scored, QC failed: {reason}" for reason in qc["reasons"]], "cells": cells}
    return {"score": result.score, "status": result.status, "category": result.category, "criteria": result.criteria,
            "reasons": result.reasons, "cells": cells}
