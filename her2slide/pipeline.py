"""Score one slide: the data path of DESIGN.md, in order. The CLI and batch both call this."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from her2slide.config import Settings
from her2slide.errors import UnsuitableSlideError
from her2slide.measure import measure_tile_pixels, read_tile
from her2slide.outputs.atomic import staged_folder, write_json_atomic
from her2slide.outputs.cells_table import CellTableWriter
from her2slide.provenance import code_version, file_sha256
from her2slide.scoring import score_slide
from her2slide.slide import TilePlan, check_suitability, detect_tissue, open_slide, plan_tiles, SlideReader
from her2slide.stain import StainModel, estimate_stain_model


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


def score_slide_file(path: str | Path, out_root: str | Path, settings: Settings,
                     mpp: float | None = None) -> SlideOutcome:
    """Read, measure and score one slide; write its output folder atomically.

    Raises :class:`her2slide.errors.InputError` (or its subclass for unsuitable slides)
    with a one-line reason; nothing is written for a slide that fails.
    """
    path = Path(path)
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
    t = timer.lap("tissue_and_plan", t)
    stain = slide_stain_model(reader, plan, settings)
    t = timer.lap("stain_estimate", t)

    destination = Path(out_root) / path.stem
    with staged_folder(destination) as staging:
        classes, xy_um, t = _measure_all_tiles(reader, plan, stain, settings, staging / "cells.parquet", timer, t)
        if len(classes) == 0:
            raise UnsuitableSlideError(path, "no invasive tumour cells found; not scored")
        result = score_slide(classes, settings.criteria, settings.scoring, xy_um=xy_um)
        t = timer.lap("scoring", t)
        report = {
            "score": result.score, "status": result.status, "category": result.category,
            "criteria": result.criteria, "reasons": result.reasons,
            "cells": {"total": result.total, "percent": result.percent},
            "qc": _qc_flags(result.total, settings.qc.min_tumour_cells),
            "tissue": {"area_mm2": round(mask.area_um2 / 1e6, 4), "tiles": len(plan)},
            "provenance": {
                "input": str(path.resolve()), "input_sha256": file_sha256(path),
                "slide": {"dimensions": list(reader.dimensions), "vendor": reader.vendor,
                          "mpp": reader.mpp, "mpp_source": reader.mpp_source},
                "work_mpp": settings.tiling.work_mpp,
                "stain": stain.to_dict(),
                "model": {"id": f"{settings.segmenter}-segmenter", "sha256": None},
                "config": settings.dump(),
                "code_version": code_version(),
            },
        }
        timer.lap("hash_and_report", t)
        report["timings"] = {**timer.seconds, "total": round(time.perf_counter() - start, 3)}
        write_json_atomic(staging / "report.json", report)
    reader.close()
    return SlideOutcome(destination, report)


def slide_stain_model(reader: SlideReader, plan: TilePlan, settings: Settings) -> StainModel:
    """Stain vectors from a few tissue tiles spread over the slide (never normalises)."""
    if not settings.stain.estimate_per_slide or len(plan) == 0:
        return StainModel.default()
    picks = np.linspace(0, len(plan) - 1, min(settings.stain.sample_tiles, len(plan))).astype(int)
    pixels = np.concatenate([read_tile(reader, plan.tiles[i], plan.work_mpp).reshape(-1, 3) for i in np.unique(picks)])
    return estimate_stain_model(pixels[None], max_angle_deg=settings.stain.max_angle_deg)


def _measure_all_tiles(reader: SlideReader, plan: TilePlan, stain: StainModel, settings: Settings,
                       cells_path: Path, timer: _Timer, t: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Stream tiles through measurement, appending cells to Parquet as they come.

    Only the class code and position of each cell stay in memory (for the slide score
    and the gastric-biopsy cluster rule): 17 bytes per cell.
    """
    classes: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    with CellTableWriter(cells_path) as writer:
        for tile in plan:
            rgb = read_tile(reader, tile, plan.work_mpp)
            t = timer.lap("read", t)
            cells = measure_tile_pixels(rgb, tile, plan.downsample, reader.mpp, stain, settings)
            t = timer.lap("cells", t)
            writer.append(cells)
            classes.append(cells["cell_class"])
            positions.append(np.column_stack([cells["x_um"], cells["y_um"]]).astype(np.float32))
            t = timer.lap("write_cells", t)
    return np.concatenate(classes), np.concatenate(positions), t


def _qc_flags(total_cells: int, min_cells: int) -> list[str]:
    return ["few_tumour_cells"] if total_cells < min_cells else []
