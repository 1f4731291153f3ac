#!/usr/bin/env python3
"""Cells per second for the cell measurement on this machine, stage by stage.

    python3 scripts/benchmark_cells.py [--size-um 800] [--repeat 3] [--json runs/bench_cells.json]

Generates one synthetic slide (homogeneous 2+, the busiest membranes), reads every tile of its
plan once, then times, per tile and summed: colour deconvolution + classical maps, cell
instances (watershed), and ring measurement, and reports cells/s and megapixels/s at the
working resolution. Reading is timed separately so the measurement is not flattered or hidden
by decode time.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from her2slide.cells import classical_maps, find_cells, measure_cells
from her2slide.config import Settings
from her2slide.run.stain_sample import sample_patches, slide_stain_model
from her2slide.slide import detect_tissue, open_slide, plan_tiles
from her2slide.slide.tiles import read_tile
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-um", type=float, default=800.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = Settings()
    mpp = settings.tiling.work_mpp
    with tempfile.TemporaryDirectory() as tmp:
        slide = make_synthetic_slide(SlideSpec(name="bench", pattern="homogeneous", score="2+",
                                               size_um=(args.size_um, args.size_um), seed=3), tmp)
        reader = open_slide(slide.svs)
        thumb, thumb_mpp = reader.thumbnail(settings.tiling.tissue_mpp)
        tissue = detect_tissue(thumb, thumb_mpp, level0_mpp=reader.mpp)
        plan = plan_tiles(reader, tissue, work_mpp=mpp, tile_px=settings.tiling.tile_px,
                          margin_um=settings.tiling.margin_um)
        start = time.perf_counter()
        tiles = [read_tile(reader, tile, mpp) for tile in plan]
        read_s = time.perf_counter() - start
        stain = slide_stain_model(sample_patches(reader, tissue, settings), settings)
    best: dict[str, float] = {}
    cells = 0
    for _ in range(args.repeat):
        spent = {"maps": 0.0, "instances": 0.0, "measure": 0.0}
        cells = 0
        for rgb in tiles:
            t0 = time.perf_counter()
            maps = classical_maps(rgb, stain, settings.cells, mpp)
            t1 = time.perf_counter()
            labels = find_cells(maps, settings.cells, mpp)
            t2 = time.perf_counter()
            measure_cells(labels, maps.dab, settings.cells, mpp, settings.scoring.faint_od)
            t3 = time.perf_counter()
            spent["maps"] += t1 - t0
            spent["instances"] += t2 - t1
            spent["measure"] += t3 - t2
            cells += int(labels.max())
        best = spent if not best or sum(spent.values()) < sum(best.values()) else best
    megapixels = sum(t.shape[0] * t.shape[1] for t in tiles) / 1e6
    total = sum(best.values())
    result = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "tiles": len(tiles), "megapixels_at_work_mpp": round(megapixels, 2), "cells_incl_margins": cells,
        "seconds": {k: round(v, 3) for k, v in best.items()}, "read_seconds": round(read_s, 3),
        "cells_per_second": round(cells / total, 1),
        "cells_per_second_ring_measurement_only": round(cells / best["measure"], 1),
        "megapixels_per_second": round(megapixels / total, 3),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
