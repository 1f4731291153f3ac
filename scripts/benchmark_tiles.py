#!/usr/bin/env python3
"""Cost of a synthetic training tile, per style family: CPU and wall seconds per tile.

    python3 scripts/benchmark_tiles.py [--n 12] [--tile-px 320] [--mpp 0.5] [--families v1,cohesive,...] [--json FILE]

Each family first makes one tile outside the timing (imports, caches), then ``--n`` tiles into a
temporary folder. CPU time is the process's (one core), so it is comparable on a shared machine;
wall time is printed beside it with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def time_family(family: str | None, n: int, tile_px: int, mpp: float) -> dict:
    from her2slide.synth.tiles import make_training_tiles

    kw = {} if family is None else {"family": family}  # v1 needs no argument (runs on older trees too)
    with tempfile.TemporaryDirectory() as tmp:
        make_training_tiles(1, tmp, tile_px=tile_px, mpp=mpp, first=10_000, **kw)
        wall, cpu = time.perf_counter(), time.process_time()
        make_training_tiles(n, tmp, tile_px=tile_px, mpp=mpp, **kw)
        return {"family": family or "v1", "tiles": n, "cpu_s_per_tile": round((time.process_time() - cpu) / n, 3),
                "wall_s_per_tile": round((time.perf_counter() - wall) / n, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--tile-px", type=int, default=320)
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--families", default=None, help="comma-separated; 'v1' = default tiles (default: v1 + all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.families is None:
        from her2slide.synth.families import FAMILIES

        names = ["v1", *FAMILIES]
    else:
        names = [n.strip() for n in args.families.split(",")]
    rows = []
    for name in names:
        row = time_family(None if name == "v1" else name, args.n, args.tile_px, args.mpp)
        row["load_average"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        print(f"{row['family']:12s} {row['cpu_s_per_tile']:.3f} CPU s/tile, {row['wall_s_per_tile']:.3f} wall s/tile "
              f"(load {row['load_average']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"tile_px": args.tile_px, "mpp": args.mpp, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
