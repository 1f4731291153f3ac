#!/usr/bin/env python3
"""How fast `her2slide view` shows a large slide: time to the first tile, and time to draw the
cell layer of a viewport holding about 5 000 cells, on a slide with 500 000 cells.

    python3 scripts/benchmark_viewer.py [--work runs/benchmark_viewer] [--side-mm 10] [--cells 500000]
                                        [--json docs/benchmark_viewer.json]

What is synthetic, and why: scoring a 10 x 10 mm slide takes over an hour on this CPU, and
the viewer never looks at how the cells were found. So the slide is a real pyramidal Aperio
SVS (JPEG tiles, 0.25 µm/px, 40 000 x 40 000 px) whose pixels repeat one rendered synthetic
field, and the result folder beside it is written by the pipeline's own writers
(cells.parquet with CellTableWriter, maps.zarr from the region grid, report.json) from a
cells table drawn directly: cells on a jittered hexagonal lattice at tumour density (about
5 000 per mm²), 16-ray outlines of 5-7 µm radius, classes at random. Both are cached in
--work and reused.

Measured with the real server (uvicorn, in this process) and a real headless Chromium:

- ``first_tile_server_s``: one full-resolution tile requested over HTTP right after the server
  starts (slide open, nothing cached), request to last byte;
- ``first_tile_page_s``: page load to OpenSeadragon's first ``tile-loaded`` event;
- ``cell_layer_s``: for each of several viewports holding ~5 000 cells, from the cell request
  leaving the page to the layer drawn on the canvas (fetch, parse, draw), as the page itself
  times it (``her2view.stats.lastCellLayerMs``);
- ``cells_request_server_s``: the server alone, /api/cells for a square box of ~5 000 cells
  (index query and the binary answer), request to last byte;
- ``index_build_s``: reading cells.parquet and binning the cells when the server starts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from her2slide.config import Settings
from her2slide.maps.heterogeneity import RegionGrid, call_heterogeneity
from her2slide.outputs.atomic import write_json_atomic
from her2slide.outputs.cells_table import CellTableWriter, outline_points
from her2slide.outputs.zarr_maps import write_maps_zarr
from her2slide.provenance import code_version, file_sha256
from her2slide.scoring import CELL_CLASSES
from her2slide.slide import open_slide
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec
from her2slide.synth.svs import write_svs
from her2slide.viewer import headless
from her2slide.viewer.cell_index import CellIndex
from her2slide.viewer.server import ViewerServer

MPP = 0.25
#: Cells per chunk written to cells.parquet (about one tile of dense tumour).
CHUNK = 20_000


def make_slide(work: Path, side_px: int) -> Path:
    """A side_px x side_px SVS tiled with one rendered 512 µm field (cached)."""
    path = work / f"large-{side_px}.svs"
    if path.exists():
        return path
    with tempfile.TemporaryDirectory() as tmp:
        field = make_synthetic_slide(SlideSpec(name="field", pattern="homogeneous", score="2+", size_um=(512.0, 512.0),
                                               full_field=True, seed=4), tmp)
        reader = open_slide(field.svs)
        texture = reader.read_region(0, 0, 0, *reader.dimensions)
        reader.close()
    th, tw = texture.shape[:2]

    def source(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        return texture[np.arange(y0, y0 + h) % th][:, np.arange(x0, x0 + w) % tw]

    print(f"writing a {side_px} x {side_px} px SVS (a few minutes)", flush=True)
    return write_svs(path, source, (side_px, side_px), mpp=MPP)


def make_result(work: Path, slide: Path, side_px: int, n_cells: int, seed: int = 0) -> Path:
    """The result folder of ``slide`` with ``n_cells`` drawn cells, written by the pipeline's writers (cached)."""
    folder = work / f"results-{n_cells}"
    if (folder / "report.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    spacing = side_px / np.sqrt(n_cells * np.sqrt(3) / 2)  # hexagonal lattice holding n_cells
    rows = int(side_px / (spacing * np.sqrt(3) / 2))
    cols = int(np.ceil(n_cells / rows))
    r, c = np.divmod(np.arange(rows * cols)[:n_cells], cols)
    x = (c + 0.5 * (r % 2) + 0.25) * spacing + rng.normal(0, spacing * 0.08, n_cells)
    y = (r + 0.5) * spacing * np.sqrt(3) / 2 + rng.normal(0, spacing * 0.08, n_cells)
    settings = Settings()
    grid = RegionGrid(side_px * MPP, side_px * MPP, MPP, settings)
    codes = rng.choice(4, n_cells, p=[0.3, 0.4, 0.2, 0.1]).astype(np.int8)
    with CellTableWriter(folder / "cells.parquet") as writer:
        for start in range(0, n_cells, CHUNK):
            part = slice(start, min(start + CHUNK, n_cells))
            n = part.stop - part.start
            radii = rng.uniform(5.0, 7.0, (n, 16)) / MPP
            chunk = {"x": x[part], "y": y[part], "x_um": x[part] * MPP, "y_um": y[part] * MPP,
                     "area_um2": np.pi * (radii * MPP).mean(axis=1) ** 2,
                     "membrane_dab_od": rng.uniform(0, 1, n), "completeness": rng.uniform(0, 1, n),
                     "cell_class": codes[part], "membrane_dab_od_p90": rng.uniform(0, 1, n),
                     "stained_dab_od": rng.uniform(0, 1, n), "intensity": codes[part], "lateral": np.zeros(n, bool),
                     "tile": np.full(n, start // CHUNK, np.int32), "outline": outline_points(x[part], y[part], radii)}
            writer.append(chunk)
            grid.add(chunk)
    maps = grid.finish()
    heterogeneity = call_heterogeneity(maps, settings)
    percent = {name: float(100 * np.mean(codes == i)) for i, name in enumerate(CELL_CLASSES)}
    provenance = {"input": str(slide.resolve()), "input_sha256": file_sha256(slide),
                  "slide": {"dimensions": [side_px, side_px], "vendor": "aperio", "mpp": MPP, "mpp_source": "metadata"},
                  "code_version": code_version()}
    write_maps_zarr(folder / "maps.zarr", maps, heterogeneity, provenance)
    write_json_atomic(folder / "report.json", {
        "score": "2+", "status": "equivocal", "category": "equivocal", "criteria": "breast",
        "reasons": ["synthetic benchmark result: cells drawn, not measured"],
        "cells": {"total": n_cells, "percent": percent}, "qc": {"verdict": "pass", "flags": []},
        "heterogeneity": heterogeneity.to_dict(), "provenance": provenance})
    return folder


def first_tile_seconds(server: ViewerServer, level: int) -> float:
    start = time.perf_counter()
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request("GET", f"/slide_files/{level}/40_40.png")
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
    return time.perf_counter() - start


def cells_query_seconds(server: ViewerServer, centres: np.ndarray, half: float) -> list[float]:
    """Server alone: seconds from request to last byte of /api/cells for square boxes around ``centres``."""
    out = []
    for cx, cy in centres:
        start = time.perf_counter()
        connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
        connection.request("GET", f"/api/cells?x0={cx - half}&y0={cy - half}&x1={cx + half}&y1={cy + half}")
        connection.getresponse().read()
        out.append(time.perf_counter() - start)
    return out


def cell_layer_seconds(driver: object, boxes: list[list[float]]) -> list[tuple[float, int]]:
    """(seconds, cells in view) of the cell layer for each viewport box."""
    out = []
    for box in boxes:
        done = driver.execute_script("return her2view.stats.cellLayerDone")
        driver.execute_script("her2view.showBox(arguments[0])", box)
        headless.wait_for(driver, f"return her2view.stats.cellLayerDone > {done}")
        stats = driver.execute_script("return her2view.stats")
        out.append((stats["lastCellLayerMs"] / 1000, int(stats["cellsInView"])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/benchmark_viewer"))
    parser.add_argument("--side-mm", type=float, default=10.0)
    parser.add_argument("--cells", type=int, default=500_000)
    parser.add_argument("--view-cells", type=int, default=5_000, help="cells a measured viewport holds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if headless.missing():
        print(f"benchmark_viewer: {headless.missing()}", file=sys.stderr)
        return 1
    args.work.mkdir(parents=True, exist_ok=True)
    side_px = round(args.side_mm * 1000 / MPP)
    slide = make_slide(args.work, side_px)
    result = make_result(args.work, slide, side_px, args.cells)

    start = time.perf_counter()
    CellIndex.from_parquet(result / "cells.parquet")
    index_build_s = time.perf_counter() - start

    density = args.cells / side_px**2  # cells per level-0 px²
    rng = np.random.default_rng(1)
    centres = rng.uniform(0.2 * side_px, 0.8 * side_px, (6, 2))

    load_before = os.getloadavg()[0]
    with ViewerServer(result, port=0) as server:
        top_level = int(np.ceil(np.log2(side_px)))
        first_tile_server_s = first_tile_seconds(server, top_level)
        cells_server_s = cells_query_seconds(server, centres, np.sqrt(args.view_cells / density) / 2)
        with tempfile.TemporaryDirectory() as profile, headless.chromium(Path(profile)) as driver:
            stats = headless.open_viewer(driver, server.url)
            first_tile_page_s = stats["firstTileMs"] / 1000
            # viewports of the page's own shape holding about view_cells cells
            aspect = driver.execute_script("return her2view.viewer.container.clientWidth / "
                                           "her2view.viewer.container.clientHeight")
            half_h = np.sqrt(args.view_cells / density / aspect) / 2
            boxes = [[cx - half_h * aspect, cy - half_h, cx + half_h * aspect, cy + half_h] for cx, cy in centres]
            layers = cell_layer_seconds(driver, boxes)
    seconds = [s for s, _ in layers[1:]]  # the first viewport also warms up the page
    record = {
        "slide_px": [side_px, side_px], "mpp": MPP, "cells": args.cells,
        "cells_per_mm2": round(args.cells / args.side_mm**2),
        "index_build_s": round(index_build_s, 3), "first_tile_server_s": round(first_tile_server_s, 4),
        "first_tile_page_s": round(first_tile_page_s, 3),
        "cell_layer_s": {"median": round(statistics.median(seconds), 3), "max": round(max(seconds), 3),
                         "each": [round(s, 3) for s in seconds]},
        "cells_in_view": [n for _, n in layers[1:]],
        "cells_request_server_s": {"median": round(statistics.median(cells_server_s), 4),
                                   "max": round(max(cells_server_s), 4)},
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)]},
    }
    print(json.dumps(record, indent=2))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
