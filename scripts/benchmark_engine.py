#!/usr/bin/env python3
"""Throughput of the segmentation engine: megapixels per second at working resolution.

    python3 scripts/benchmark_engine.py [--slide SLIDE.svs] [--device auto|cpu|cuda] [--segmenter cnn|classical] \
        [--json runs/bench_engine.json]

Streams the slide's whole tile plan through the segmenter (read + decode in DataLoader
workers, the network, the DAB map) without measuring cells, and separately times the network
alone on a resident batch. Pixels counted are the read boxes at 0.5 µm/px (margins included:
that is what the model really processes). Without --slide: the 2 x 2 mm synthetic slide of
scripts/benchmark.py (cached under runs/bench_slides). The plan is the pipeline's (scripts/benchmark.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmark import SLIDE_CACHE, bench_settings, read_box_megapixels, synthetic_slide, tile_plan
from her2slide.run.engine import make_segmenter
from her2slide.slide import open_slide
from her2slide.stain import StainModel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slide", type=Path)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--segmenter", choices=("cnn", "classical"), default="cnn")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = bench_settings(args.segmenter, args.device, args.workers)
    slide = args.slide or synthetic_slide(SLIDE_CACHE, 2000.0)
    reader = open_slide(slide)
    _, plan = tile_plan(reader, settings)
    segmenter = make_segmenter(settings)
    megapixels = read_box_megapixels(plan)
    start = time.perf_counter()
    for _ in segmenter.tiles(reader, plan, StainModel.default()):
        pass
    stream_s = time.perf_counter() - start
    result = {"slide": str(slide), "segmenter": args.segmenter, "tiles": len(plan), "megapixels": round(megapixels, 2),
              "stream_seconds": round(stream_s, 2), "stream_mp_per_s": round(megapixels / stream_s, 3)}
    if args.segmenter == "cnn":
        result.update(_network_only(segmenter))
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _network_only(segmenter) -> dict:
    """The network alone on a resident batch: the ceiling the stream can reach on this device."""
    import torch

    side = 1152
    batch = torch.full((segmenter.batch_size(side), 3, side, side), 200, dtype=torch.uint8, device=segmenter.device)
    segmenter._forward(batch)  # warm-up (cuDNN autotune, allocator)
    if segmenter.cuda:
        torch.cuda.synchronize()
    start, runs = time.perf_counter(), 3
    for _ in range(runs):
        segmenter._forward(batch)
    if segmenter.cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / runs
    return {"device": str(segmenter.device), "batch": int(batch.shape[0]),
            "network_mp_per_s": round(batch.shape[0] * side * side / 1e6 / seconds, 2)}


if __name__ == "__main__":
    sys.exit(main())
