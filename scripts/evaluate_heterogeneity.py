#!/usr/bin/env python3
"""How often the pipeline's homogeneous / focal / mosaic call matches the synthetic truth.

Builds a fixed set of small synthetic slides with a known pattern (homogeneous at every score;
focal and mosaic at positive fractions 10-40% — inside CAP 2009's heterogeneity band, so the
truth is defined — with 0 or 1+ backgrounds, 2+ or 3+ positive cells, 1-3 foci and three slide
sizes), scores each with ``score_slide_file`` (default settings; ``--segmenter``, default the CNN) and
compares ``report["heterogeneity"]["pattern"]`` with the pattern the slide was drawn with.

    python3 scripts/evaluate_heterogeneity.py --dir runs/heterogeneity --workers 2 [--segmenter classical]

Slides are cached in DIR/slides (generated once); results go to DIR/results and DIR/eval.json
(per-slide rows, confusion matrix, accuracy). ``--reuse-cells`` recomputes only the call from
each slide's cached cells.parquet, through the same RegionGrid path as the pipeline: quick for
looking at a threshold, but the published numbers come from a full run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

PATTERNS = ("homogeneous", "focal", "mosaic")
FRACTIONS = (0.1, 0.2, 0.3, 0.4)
MIXES = (("0", "3+"), ("0", "2+"), ("1+", "3+"), ("1+", "2+"))  # (background score, positive class)
SIDES_UM = (600.0, 800.0, 1000.0)


def eval_specs() -> list:
    """44 specs: 12 homogeneous (each score 3x), 16 focal and 16 mosaic (every fraction x mix)."""
    from her2slide.synth.spec import SlideSpec

    specs = []
    for score in ["0", "1+", "2+", "3+"] * 3:
        specs.append(dict(pattern="homogeneous", score=score))
    for pattern in ("focal", "mosaic"):
        for j, (fraction, (background, positive)) in enumerate((f, m) for f in FRACTIONS for m in MIXES):
            specs.append(dict(pattern=pattern, score=background, positive=positive, fraction=fraction,
                              clusters=1 + j % 3 if pattern == "focal" else 1))
    out = []
    for i, kw in enumerate(specs):
        side = SIDES_UM[i % len(SIDES_UM)]
        tag = f"{kw['pattern'][:3]}-{kw['score']}"
        if kw["pattern"] != "homogeneous":
            tag += f"-{kw['positive']}x{kw['fraction']:g}" + (f"-k{kw['clusters']}" if kw["pattern"] == "focal" else "")
        out.append(SlideSpec(name=f"het{i:02d}-{tag.replace('+', 'p')}", size_um=(side, side), seed=5000 + i, **kw))
    return out


def _generate(args: tuple) -> str:
    from her2slide.synth.slides import make_synthetic_slide

    spec, folder = args
    if not (Path(folder) / f"{spec.name}.truth.json").exists():
        make_synthetic_slide(spec, folder)
    return spec.name


def _call_from_cells(result_dir: Path, truth: dict) -> dict:
    """The heterogeneity call recomputed from a cached cells.parquet (as the pipeline's grid sees it)."""
    import pyarrow.parquet as pq

    from her2slide.config import Settings
    from her2slide.maps.heterogeneity import RegionGrid, call_heterogeneity
    from her2slide.scoring import CELL_CLASSES

    table = pq.read_table(result_dir / "cells.parquet").to_pydict()
    cells = {k: np.asarray(v) for k, v in table.items()}
    cells["cell_class"] = np.array([CELL_CLASSES.index(c) for c in table["cell_class"]], dtype=np.int8)
    settings = Settings()
    grid = RegionGrid(truth["width_px"] * truth["mpp"], truth["height_px"] * truth["mpp"], truth["mpp"], settings)
    grid.add(cells)
    return call_heterogeneity(grid.finish(), settings).to_dict()


def _score(args: tuple) -> dict:
    from her2slide.run.pipeline import score_slide_file
    from her2slide.config import Settings

    name, slides, results, reuse, segmenter, pooled = args
    truth = json.loads((slides / f"{name}.truth.json").read_text())
    t0 = time.perf_counter()
    if reuse and (results / name / "cells.parquet").exists():
        het = _call_from_cells(results / name, truth)
    else:
        # A pool's processes are daemonic and may not start the CNN engine's DataLoader workers.
        settings = Settings(segmenter=segmenter).with_model(workers=0) if pooled else Settings(segmenter=segmenter)
        het = score_slide_file(slides / f"{name}.svs", results, settings).report["heterogeneity"]
    spec = truth["spec"]
    return {
        "slide": name, "truth": truth["pattern"], "called": het["pattern"], "correct": het["pattern"] == truth["pattern"],
        "size_um": spec["size_um"][0], "background": spec["score"], "positive": spec["positive"],
        "fraction": spec["fraction"] if truth["pattern"] != "homogeneous" else None, "clusters": spec["clusters"],
        "true_positive_percent": round(100 * truth["positive_fraction"], 2) if truth["pattern"] != "homogeneous"
        else round(truth["percent"]["2+"] + truth["percent"]["3+"], 2),
        "positive_percent": het["positive_percent"], "segregation": het["segregation"],
        "morans_i": (het["morans_i"] or {}).get("value"), "cluster_count": het["cluster_count"],
        "mixed_region_share": het["mixed_region_share"], "reason": het["reason"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _pool_map(fn, jobs: list, workers: int):
    if workers <= 1:
        yield from map(fn, jobs)
        return
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(fn, jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("runs/heterogeneity"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--segmenter", choices=("cnn", "classical"), default="cnn")
    parser.add_argument("--reuse-cells", action="store_true", help="recompute the call from cached cells.parquet")
    args = parser.parse_args(argv)

    slides, results = args.dir / "slides", args.dir / "results"
    slides.mkdir(parents=True, exist_ok=True)
    specs = eval_specs()
    start = time.perf_counter()
    for done, name in enumerate(_pool_map(_generate, [(s, str(slides)) for s in specs], args.workers), 1):
        print(f"\rgenerated {done}/{len(specs)} {name:40s}", end="", flush=True)
    print(f"\n{len(specs)} slides ready in {time.perf_counter() - start:.0f} s", flush=True)

    rows = []
    jobs = [(s.name, slides, results, args.reuse_cells, args.segmenter, args.workers > 1) for s in specs]
    for row in _pool_map(_score, jobs, args.workers):
        rows.append(row)
        print(f"{row['slide']:34s} truth {row['truth']:11s} called {row['called']:11s} {'ok' if row['correct'] else 'XX'} "
              f"pos {row['positive_percent']:5.1f}% seg {row['segregation']:.2f} clusters {row['cluster_count']}", flush=True)

    confusion = np.zeros((3, 3), int)
    for r in rows:
        confusion[PATTERNS.index(r["truth"]), PATTERNS.index(r["called"])] += 1
    accuracy = float(np.trace(confusion) / confusion.sum())
    summary = {"slides": len(rows), "correct": int(np.trace(confusion)), "accuracy": accuracy,
               "confusion_rows_truth_cols_called": {"labels": list(PATTERNS), "matrix": confusion.tolist()},
               "per_pattern_accuracy": {p: float(confusion[k, k] / max(confusion[k].sum(), 1)) for k, p in enumerate(PATTERNS)},
               "wall_seconds": round(time.perf_counter() - start, 1), "reuse_cells": args.reuse_cells}
    (args.dir / "eval.json").write_text(json.dumps({"summary": summary, "slides": rows}, indent=2))
    print("confusion (rows truth, columns called):", "  ".join(PATTERNS))
    for p, line in zip(PATTERNS, confusion):
        print(f"  {p:11s} {line.tolist()}")
    print(f"accuracy {accuracy:.3f} ({summary['correct']} of {len(rows)}) -> {args.dir / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
