#!/usr/bin/env python3
"""Peak memory of a Dask batch worker for slides of 1x, 4x and 16x tissue area.

    python3 scripts/batch_memory.py [--sides-mm 0.5 1 2] [--config my.yaml] [--out runs/batch_memory] [--json FILE]

Generates one synthetic slide per side length (homogeneous 2+, kept in --out and reused on a
rerun), then scores each through ``run_batch`` on a fresh one-worker cluster started as
``her2slide batch --workers 1`` starts it, so each slide's figure is that worker process's own
high-water mark (``getrusage`` ``ru_maxrss``, Linux: KiB) and not left over from a larger
slide. The worker's resident memory once the pipeline and its segmenter are loaded is the
fixed cost; the peak minus that is what the slide itself needed. The CNN engine's DataLoader
decode processes are forked children of the worker: the largest one's peak is reported apart,
and it counts the pages it shares with the worker (copy-on-write), so it is not extra memory.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from her2slide.cli.batch import dask_client
from her2slide.config import Settings, load_settings
from her2slide.run.batch import run_batch, segmenter_for
from her2slide.run.batch_jobs import SlideJob
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec


def worker_memory() -> dict[str, float]:
    """Runs on the worker: its resident memory now, its peak so far, and the peak of its largest
    finished child (the CNN engine's DataLoader decode processes), in MiB."""
    import resource

    import psutil

    return {"rss_mib": psutil.Process().memory_info().rss / 2**20,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "child_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def slide_for(side_mm: float, folder: Path, seed: int) -> Path:
    spec = SlideSpec(name=f"memory-{side_mm:g}mm", pattern="homogeneous", score="2+",
                     size_um=(side_mm * 1000, side_mm * 1000), seed=seed)
    existing = folder / f"{spec.name}.svs"
    return existing if existing.exists() else make_synthetic_slide(spec, folder).svs


def measure(slide: Path, out: Path, settings: Settings) -> dict[str, object]:
    with dask_client(workers=1, gpus=None, scheduler=None) as client:
        client.run(importlib.import_module, "her2slide.run.pipeline")
        client.run(segmenter_for, settings)  # the fixed cost: torch and the weights for the CNN
        (baseline,) = client.run(worker_memory).values()
        start = time.perf_counter()
        batch = run_batch([SlideJob(slide)], out, settings, overwrite=True, client=client, progress=False)
        wall = time.perf_counter() - start
        (after,) = client.run(worker_memory).values()
    (result,) = batch.results
    if result is None or result.outcome != "scored":
        raise SystemExit(f"{slide}: not scored ({result})")
    report = json.loads((out / slide.stem / "report.json").read_text())
    return {
        "slide": slide.name, "slide_mb": round(slide.stat().st_size / 1e6, 2),
        "tissue_mm2": report["tissue"]["area_mm2"], "tiles": report["tissue"]["tiles"],
        "cells": report["cells"]["total"], "score": report["score"],
        "seconds_per_slide": round(wall, 2), "pipeline_seconds": report["timings"]["total"],
        "worker_rss_after_import_mib": round(baseline["rss_mib"], 1),  # pipeline and segmenter loaded
        "worker_peak_rss_mib": round(after["peak_rss_mib"], 1),
        "slide_working_set_mib": round(after["peak_rss_mib"] - baseline["rss_mib"], 1),
        "worker_rss_after_mib": round(after["rss_mib"], 1),
        "largest_child_peak_rss_mib": round(after["child_peak_rss_mib"], 1),
        "segmenter": report["provenance"]["model"]["id"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides-mm", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--out", type=Path, default=Path("runs/batch_memory"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--config", type=Path, help="settings YAML (default: built-in defaults)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = load_settings(args.config)
    rows = []
    for side in args.sides_mm:
        start = time.perf_counter()
        slide = slide_for(side, args.out / "slides", args.seed)
        print(f"{slide.name}: ready in {time.perf_counter() - start:.1f} s; scoring on a fresh worker", file=sys.stderr)
        rows.append({"side_mm": side, "area_x": round((side / args.sides_mm[0]) ** 2, 2),
                     **measure(slide, args.out / "results", settings)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    result = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
              "command": "python3 " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "slides": rows}
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
