#!/usr/bin/env python3
"""Nucleus detection on real annotated nuclei rendered as HER2 IHC fields (issue 14, criterion 2).

    python3 scripts/evaluate_real_nuclei.py [--segmenter classical|cnn] [--model WEIGHTS] [--json OUT] \
        [--data ../shared/data] [--levels pale typical dark] [--keep DIR]

The fixed validation images of ../shared/data/nuclei (her2slide.datasets.nuclei.VALIDATION: 8
MoNuSeg, 4 CPM-15; never trained on) are rendered IHC-like (eosin dropped, nuclear haematoxylin
at a pale / typical / dark counterstain level, with and without synthetic membrane DAB), written
as JPEG (quality 90, as the real cores come) and read back through the scoring path at the
pipeline's working resolution (her2slide.evaluation.nuclei). A found nucleus matches an annotated
one when their centroids are within 3 µm, one to one, closest pairs first. Printed and written:
precision, recall and F1 per image, per source and pooled, per condition; how many of the nuclei
found without DAB come back with it (F1 between the two sets, 3 µm); and, for information, how many
tumour cells the pipeline's cell finder makes per image.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from her2slide.config import load_settings
from her2slide.datasets.nuclei import nuclei_index, split
from her2slide.datasets.shared_data import shared_data_dir
from her2slide.errors import InputError
from her2slide.evaluation.matching import Detection, detection, pooled
from her2slide.evaluation.nuclei import COUNTERSTAIN_LEVELS, MATCH_UM, detect_field, render_field, true_centroids
from her2slide.evaluation.script_options import evaluation_parser
from her2slide.run.engine import make_segmenter

JPEG_QUALITY = 90


def evaluate_image(entry, seed: int, levels: list[str], settings, segmenter, folder: Path) -> list[dict]:
    """Every condition of one validation image: one row per (level, membranes)."""
    rows = []
    for level in levels:
        found = {}
        for membranes in (False, True):
            rgb, labels = render_field(entry, COUNTERSTAIN_LEVELS[level], membranes, seed)
            path = folder / f"{entry.name}_{level}_{'dab' if membranes else 'nodab'}.jpg"
            Image.fromarray(rgb).save(path, quality=JPEG_QUALITY)
            result = detect_field(path, entry.mpp, settings, segmenter)
            truth = true_centroids(labels) * entry.mpp
            found[membranes] = result.nuclei_xy * entry.mpp
            score = detection(truth, found[membranes], MATCH_UM)
            rows.append({"source": entry.folder, "image": entry.name, "level": level, "membranes": membranes,
                         **score.to_dict(), "tumour_cells": len(result.tumour_xy),
                         "tumour_share_of_found": round(len(result.tumour_xy) / max(len(found[membranes]), 1), 4)})
        rows[-1]["same_nuclei_with_dab_f1"] = round(detection(found[False], found[True], MATCH_UM).f1, 4)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Pooled scores per condition, per source and over all images."""
    def pool(selected: list[dict]) -> dict:
        total = pooled([Detection(r["true"], r["found"], r["matched"]) for r in selected]).to_dict()
        total["mean_image_f1"] = round(float(np.mean([r["f1"] for r in selected])), 4)
        total["tumour_cells_per_found_nucleus"] = round(sum(r["tumour_cells"] for r in selected)
                                                        / max(sum(r["found"] for r in selected), 1), 4)
        same = [r["same_nuclei_with_dab_f1"] for r in selected if "same_nuclei_with_dab_f1" in r]
        if same:
            total["mean_same_nuclei_with_dab_f1"] = round(float(np.mean(same)), 4)
        return total

    summary = {}
    conditions = sorted({(r["level"], r["membranes"]) for r in rows}, key=lambda c: (list(COUNTERSTAIN_LEVELS).index(c[0]), c[1]))
    for level, membranes in conditions:
        selected = [r for r in rows if r["level"] == level and r["membranes"] == membranes]
        key = f"{level}/{'dab' if membranes else 'no-dab'}"
        summary[key] = {"pooled": pool(selected),
                        **{source: pool([r for r in selected if r["source"] == source])
                           for source in sorted({r["source"] for r in selected})}}
    summary["all"] = {"pooled": pool(rows), **{source: pool([r for r in rows if r["source"] == source])
                                                for source in sorted({r["source"] for r in rows})}}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = evaluation_parser(__doc__)
    parser.add_argument("--levels", nargs="+", choices=list(COUNTERSTAIN_LEVELS), default=list(COUNTERSTAIN_LEVELS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the rendered fields in this folder")
    args = parser.parse_args(argv)
    data = (args.data or shared_data_dir()) / "nuclei"
    try:
        settings = load_settings(args.config, segmenter=args.segmenter)
        if args.model:
            settings = settings.with_model(weights=str(args.model))
        segmenter = make_segmenter(settings)
        _, validation = split(nuclei_index(data))
    except InputError as exc:
        print(f"her2slide: {exc}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="her2slide-nuclei-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for seed, entry in enumerate(validation):
            for row in evaluate_image(entry, seed, args.levels, settings, segmenter, folder):
                rows.append(row)
                print(f"{row['image'][:23]:23s} {row['level']:7s} {'dab' if row['membranes'] else '   '} "
                      f"F1 {row['f1']:.3f} P {row['precision']:.3f} R {row['recall']:.3f} "
                      f"({row['true']} true / {row['found']} found) tumour cells {row['tumour_cells']}", flush=True)
    summary = summarise(rows)
    meta = {"segmenter": settings.segmenter, "model": segmenter.model_id, "model_sha256": segmenter.model_sha256,
            "match_um": MATCH_UM, "work_mpp": settings.tiling.work_mpp,
            "counterstain_od": {k: COUNTERSTAIN_LEVELS[k] for k in args.levels},
            "wall_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps({"meta": meta, "summary": summary}, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "summary": summary, "images": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
