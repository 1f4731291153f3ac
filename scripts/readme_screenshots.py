#!/usr/bin/env python3
"""The README's pictures of review.html and the viewer, from the current code, on the demo slide.

    python3 scripts/readme_screenshots.py [--demo runs/demo] [--out docs/images]

Runs ``her2slide demo`` into --demo (unless its result is already there), then takes the
screenshots with headless Chromium: review.html whole page at 1400 px wide, and the viewer
zoomed on the focal 3+ cluster with one cell selected.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from her2slide.cli.demo import run_demo
from her2slide.viewer import headless
from her2slide.viewer.server import ViewerServer


def review_screenshot(result: Path, out: Path, profile: Path) -> None:
    with headless.chromium(profile, window=(1400, 900)) as driver:
        driver.get((result / "review.html").resolve().as_uri())
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, height + 140)  # the window's frame: leave the page its own height
        driver.save_screenshot(str(out))


def viewer_screenshot(result: Path, out: Path, profile: Path) -> None:
    report = json.loads((result / "report.json").read_text())
    cluster = report["heterogeneity"]["clusters"][0]
    x0, y0, x1, y1 = cluster["bbox_px"]
    cells = pq.read_table(result / "cells.parquet", columns=["x", "y", "cell_class"]).to_pydict()
    x, y = np.asarray(cells["x"]), np.asarray(cells["y"])
    near = np.argmin(np.hypot(x - (x0 + x1) / 2, y - (y0 + y1) / 2))
    with ViewerServer(result, port=0) as server, headless.chromium(profile, window=(1500, 950)) as driver:
        headless.open_viewer(driver, server.url)
        done = driver.execute_script("return her2view.stats.cellLayerDone")
        pad = 0.35 * (x1 - x0)
        driver.execute_script("her2view.showBox(arguments[0])", [x0 - pad, y0 - pad, x1 + pad, y1 + pad])
        headless.wait_for(driver, f"return her2view.stats.cellLayerDone > {done}")
        driver.execute_script("return her2view.selectAt(arguments[0], arguments[1])", float(x[near]), float(y[near]))
        headless.wait_for(driver, "return document.getElementById('cell-info').dataset.row")
        headless.wait_for(driver, "return her2view.viewer.world.getItemAt(0).getFullyLoaded()")
        driver.save_screenshot(str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    if headless.missing():
        print(f"readme_screenshots: {headless.missing()}", file=sys.stderr)
        return 1
    result = args.demo / "results" / "demo-focal"
    if not (result / "report.json").exists():
        run_demo(args.demo)
    with tempfile.TemporaryDirectory() as tmp:
        review_screenshot(result, args.out / "review_screenshot.png", Path(tmp) / "a")
        viewer_screenshot(result, args.out / "viewer_screenshot.png", Path(tmp) / "b")
    for name in ("review_screenshot.png", "viewer_screenshot.png"):
        image = Image.open(args.out / name)
        # 256 colours keep the pictures legible at a quarter of the size
        image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(args.out / name, optimize=True)
        print(args.out / name, image.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
