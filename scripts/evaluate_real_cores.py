#!/usr/bin/env python3
"""Score the four real HER2 IHC oesophageal TMA cores and draw what was measured.

    python3 scripts/evaluate_real_cores.py [--data ../shared/data/her2-ihc-oesophagus-tma] [--out runs/cores] \
        [--images docs/images] [--segmenter cnn|classical] [--model WEIGHTS]

Prints each core's label and measured score (gastric-resection criteria, --mpp 0.25), the class
percentages and the median stained membrane OD; writes, per core, a side-by-side image of a
tissue crop and the same crop with every measured cell outlined in its class colour
(0 blue, 1+ yellow, 2+ orange, 3+ red), so one can see whether the outlines sit on membranes.
With the CNN a middle panel shows its membrane map (green) and tumour map (faint magenta)
over the tissue, and a panel of *tumour versus the rest*: every nucleus the segmenter found,
outlined magenta when it seeds a tumour cell and cyan when it does not (stroma, lymphocytes,
red cells, normal cells). Images: ``real_core_<name>_<tag>.jpg`` (tag ``cnn`` for v1, ``v2`` for a
v2 model; none for the classical path). Each core's line gives the crop's nuclei and the share
called tumour.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from skimage.segmentation import find_boundaries

from her2slide.cells import find_cells, measure_cells, nucleus_instances
from her2slide.config import load_settings
from her2slide.run.engine import make_segmenter
from her2slide.run.pipeline import score_slide_file
from her2slide.scoring import classify_cells
from her2slide.slide import open_slide
from her2slide.stain import StainModel

CLASS_COLOURS = np.array([[40, 90, 255], [255, 220, 0], [255, 140, 0], [230, 0, 0]], dtype=np.uint8)
ORDER = {"0": 0, "1+": 1, "2+": 2, "3+": 3}


def overlay(path: Path, report: dict, settings, segmenter, crop_px: int = 500) -> tuple[np.ndarray, dict]:
    """Crop around the densest measured cells; outline each cell in its class colour. Returns the
    image and the crop's counts of nuclei and of tumour cells."""
    reader = open_slide(path, mpp=0.25)
    cells = pq.read_table(Path(report["_out"]) / "cells.parquet", columns=["x", "y"]).to_pydict()
    x, y = np.asarray(cells["x"]), np.asarray(cells["y"])
    bins = 400
    hist, xe, ye = np.histogram2d(x, y, bins=[np.arange(0, reader.dimensions[0] + bins, bins),
                                              np.arange(0, reader.dimensions[1] + bins, bins)])
    i, j = np.unravel_index(np.argmax(hist), hist.shape)
    size0 = int(crop_px * settings.tiling.work_mpp / reader.mpp)
    x0 = int(np.clip(xe[i] + bins / 2 - size0 / 2, 0, reader.dimensions[0] - size0))
    y0 = int(np.clip(ye[j] + bins / 2 - size0 / 2, 0, reader.dimensions[1] - size0))
    rgb = reader.read_at_mpp(x0, y0, size0, size0, settings.tiling.work_mpp)
    stain = StainModel(np.array(report["provenance"]["stain"]["haematoxylin"]),
                       np.array(report["provenance"]["stain"]["dab"]),
                       np.array(report["provenance"]["stain"]["white"]))
    maps = segmenter.segment(rgb, stain)
    labels = find_cells(maps, settings.cells, settings.tiling.work_mpp)
    measured = measure_cells(labels, maps.dab, settings.cells, settings.tiling.work_mpp, settings.scoring.faint_od)
    classes = classify_cells(measured["stained_dab_od"], measured["completeness"], measured["lateral"],
                             settings.scoring, settings.criteria)
    lookup = np.concatenate([[0], classes.astype(np.int64) + 1])
    outline = find_boundaries(labels, mode="inner") & (labels > 0)
    drawn = rgb.copy()
    drawn[outline] = CLASS_COLOURS[lookup[labels[outline]] - 1]
    gap = np.full((rgb.shape[0], 8, 3), 255, np.uint8)
    nuclei, _ = nucleus_instances(maps, settings.tiling.work_mpp)
    panels = [rgb, gap, _tumour_panel(rgb, nuclei, labels), gap, drawn]
    if settings.segmenter == "cnn":
        panels[1:1] = [gap, _maps_panel(rgb, maps)]
    counts = {"crop_nuclei": int(len(np.unique(nuclei[nuclei > 0]))), "crop_tumour_cells": int(labels.max())}
    return np.concatenate(panels, axis=1), counts


def _tumour_panel(rgb: np.ndarray, nuclei: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Every nucleus outlined: magenta when it lies in a tumour cell, cyan when it does not."""
    out = rgb.copy()
    edge = find_boundaries(nuclei, mode="inner") & (nuclei > 0)
    in_tumour = np.zeros(int(nuclei.max()) + 1, bool)
    in_tumour[np.unique(nuclei[(cells > 0) & (nuclei > 0)])] = True
    out[edge] = np.where(in_tumour[nuclei[edge]][:, None], [220, 0, 220], [0, 200, 220])
    return out


def _maps_panel(rgb: np.ndarray, maps) -> np.ndarray:
    """Membrane probability in green and tumour probability as a faint magenta wash."""
    out = rgb.astype(np.float32)
    tumour = maps.tumour[..., None] * 0.25
    out = out * (1 - tumour) + tumour * np.array([200, 0, 200])
    membrane = maps.membrane[..., None]
    out = out * (1 - membrane) + membrane * np.array([0, 220, 0])
    return np.clip(out, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/her2-ihc-oesophagus-tma"))
    parser.add_argument("--out", type=Path, default=Path("runs/cores"))
    parser.add_argument("--images", type=Path, default=Path("docs/images"))
    parser.add_argument("--config", type=Path)
    parser.add_argument("--segmenter", choices=("cnn", "classical"))
    parser.add_argument("--model", type=Path)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"{args.data}: not found (the real cores live in ../shared/data)", file=sys.stderr)
        return 1
    settings = load_settings(args.config, criteria="gastric-resection", segmenter=args.segmenter)
    if args.model:
        settings = settings.with_model(weights=str(args.model))
    segmenter = make_segmenter(settings)
    suffix = "" if settings.segmenter == "classical" else ("_v2" if segmenter.model.io.haematoxylin_only else "_cnn")
    args.images.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(args.data.glob("*.jpg")):
        label = {"0": "0", "1": "1+", "2": "2+", "3": "3+"}[path.name[0]]
        outcome = score_slide_file(path, args.out, settings, mpp=0.25, segmenter=segmenter)
        report = {**outcome.report, "_out": str(outcome.out_dir)}
        od = pq.read_table(outcome.out_dir / "cells.parquet", columns=["stained_dab_od"]).column(0).to_numpy()
        row = {"core": path.name[:10], "label": label, "score": report["score"],
               "cells": report["cells"]["total"],
               "percent": {k: round(v, 1) for k, v in report["cells"]["percent"].items()},
               "median_stained_od": round(float(np.median(od)), 3),
               "p90_stained_od": round(float(np.percentile(od, 90)), 3)}
        image, counts = overlay(path, report, settings, segmenter)
        row.update(counts, crop_tumour_share=round(counts["crop_tumour_cells"] / max(counts["crop_nuclei"], 1), 3))
        rows.append(row)
        print(json.dumps(row), flush=True)
        Image.fromarray(image).save(args.images / f"real_core_{path.name[:10]}{suffix}.jpg", quality=82)
    in_order = all(ORDER[a["score"]] <= ORDER[b["score"]] for a, b in zip(rows, rows[1:]))
    print(f"scores in the order of the labels: {in_order}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
