#!/usr/bin/env python3
"""Accuracy of the whole pipeline against the synthetic generator's exact truth.

For every slide of a synthetic suite: cell detection F1 (a detected centroid matches a true
tumour cell within 4 µm, one to one), completeness mean absolute error and per-cell class
accuracy over matched cells, and whether the slide score equals the true score.

    python3 scripts/evaluate_synthetic.py --suite-dir runs/suite --out runs/eval [--n 40] [--json runs/eval.json] \
        [--segmenter cnn|classical] [--model WEIGHTS] [--family trabecular]

The suite is generated into --suite-dir when it is not there yet (--family: that style family's
suite, e.g. the held-out one, ``--n 10``; see docs/synthetic.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from her2slide.config import load_settings
from her2slide.evaluation.matching import match_points
from her2slide.run.engine import make_segmenter
from her2slide.run.pipeline import score_slide_file
from her2slide.scoring import CELL_CLASSES

MATCH_UM = 4.0


def evaluate_slide(truth_parquet: Path, truth_json: Path, result_dir: Path) -> dict:
    truth = pq.read_table(truth_parquet).to_pydict()
    pred = pq.read_table(result_dir / "cells.parquet").to_pydict()
    report = json.loads((result_dir / "report.json").read_text())
    true_json = json.loads(truth_json.read_text())
    t_xy = np.column_stack([truth["x_um"], truth["y_um"]])
    p_xy = np.column_stack([pred["x_um"], pred["y_um"]])
    ti, pi = match_points(t_xy, p_xy, MATCH_UM)
    tp = len(ti)
    precision = tp / max(len(p_xy), 1)
    recall = tp / max(len(t_xy), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    t_class = np.asarray(truth["cell_class"], dtype=object)[ti]
    p_class = np.asarray([str(c) for c in pred["cell_class"]], dtype=object)[pi]
    t_comp = np.asarray(truth["completeness"])[ti]
    p_comp = np.asarray(pred["completeness"])[pi]
    true_score = true_json["score"]
    return {
        "slide": truth_parquet.name.replace(".truth.parquet", ""),
        "pattern": true_json["pattern"],
        "true_cells": len(t_xy), "found_cells": len(p_xy), "matched": tp,
        "precision": precision, "recall": recall, "f1": f1,
        "completeness_mae": float(np.mean(np.abs(t_comp - p_comp))) if tp else float("nan"),
        "class_accuracy": float(np.mean(t_class == p_class)) if tp else float("nan"),
        "confusion": _confusion(t_class, p_class),
        "true_score": true_score, "score": report["score"], "score_correct": report["score"] == true_score,
        "seconds": report["timings"]["total"], "cells_seconds": report["timings"].get("cells", 0.0),
    }


def _confusion(truth: np.ndarray, pred: np.ndarray) -> list[list[int]]:
    index = {c: k for k, c in enumerate(CELL_CLASSES)}
    matrix = np.zeros((4, 4), int)
    np.add.at(matrix, ([index[c] for c in truth], [index[c] for c in pred]), 1)
    return matrix.tolist()


def summarise(rows: list[dict]) -> dict:
    matched = sum(r["matched"] for r in rows)
    tp = matched
    fp = sum(r["found_cells"] - r["matched"] for r in rows)
    fn = sum(r["true_cells"] - r["matched"] for r in rows)
    confusion = np.sum([r["confusion"] for r in rows], axis=0)
    weights = np.array([r["matched"] for r in rows], float)
    return {
        "slides": len(rows),
        "cell_f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "completeness_mae": float(np.average([r["completeness_mae"] for r in rows], weights=weights)),
        "class_accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "slide_score_exact": float(np.mean([r["score_correct"] for r in rows])),
        "confusion_true_rows_pred_cols": confusion.tolist(),
        "cells_per_second_measurement": float(sum(r["found_cells"] for r in rows) / max(sum(r["cells_seconds"] for r in rows), 1e-9)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--segmenter", choices=("cnn", "classical"))
    parser.add_argument("--model", type=Path)
    parser.add_argument("--family", help="generate the suite in this style family (default: the 40-slide suite's look)")
    args = parser.parse_args(argv)

    truths = sorted(args.suite_dir.glob("*.truth.parquet"))
    if len(truths) < args.n:
        from her2slide.synth.slides import make_suite

        make_suite(args.suite_dir, n=args.n, family=args.family)
        truths = sorted(args.suite_dir.glob("*.truth.parquet"))
    settings = load_settings(args.config, criteria="breast", segmenter=args.segmenter)
    if args.model:
        settings = settings.with_model(weights=str(args.model))
    segmenter = make_segmenter(settings)
    rows = []
    start = time.perf_counter()
    for truth in truths[: args.n]:
        name = truth.name.replace(".truth.parquet", "")
        outcome = score_slide_file(args.suite_dir / f"{name}.svs", args.out, settings, segmenter=segmenter)
        row = evaluate_slide(truth, args.suite_dir / f"{name}.truth.json", outcome.out_dir)
        rows.append(row)
        print(f"{name:10s} {row['pattern'] or '':12s} true {row['true_score']:3s} got {row['score'] or '-':3s} "
              f"{'ok ' if row['score_correct'] else 'XX '} F1 {row['f1']:.3f} compl-MAE {row['completeness_mae']:.3f} "
              f"class-acc {row['class_accuracy']:.3f} ({row['true_cells']} true / {row['found_cells']} found)",
              flush=True)
    summary = summarise(rows)
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    summary["segmenter"] = settings.segmenter
    print(json.dumps({k: v for k, v in summary.items() if k != "confusion_true_rows_pred_cols"}, indent=2))
    print("class confusion (rows: true 0,1+,2+,3+; columns: measured):")
    for label, row in zip(CELL_CLASSES, summary["confusion_true_rows_pred_cols"]):
        print(f"  {label:3s} {row}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "slides": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
