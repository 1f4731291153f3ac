#!/usr/bin/env python3
"""End-to-end benchmark: per-stage throughput, peak memory and the OpenSlide read floor.

    python3 scripts/benchmark.py [--base-um 500] [--scales 1 4 16] [--segmenter cnn|classical] [--model WEIGHTS]
        [--device auto|cpu|cuda] [--workers N] [--json runs/benchmark.json]
    python3 scripts/benchmark.py --small --json runs/benchmark_small.json   # seconds (the test suite)

Synthetic SVS slides (whole field tissue) of tissue area 1x, 4x, 16x the base square (sides
base, 2 x base, 4 x base), cached under runs/bench_slides. Each slide is scored by
``score_slide_file`` twice in a fresh subprocess (cold: with the model load and first-use
imports, as a lone slide; warm: as every later slide of a batch), so its peak resident memory
is its own, and in the same process the *read floor* is measured: the time to merely read the
same tile plan's read boxes through OpenSlide, resampled to the working resolution
(``read_at_mpp``, what the pipeline reads) and raw (``read_region`` at the level read_at_mpp
picks, no resample).
Megapixels are counted at the working resolution (0.5 µm/px): tissue MP = tissue area / 0.25
µm², read-box MP = the read boxes incl. their margins (what the model really processes).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLIDE_CACHE = REPO / "runs" / "bench_slides"
SMALL_UM = 300.0
FLOOR_PASSES = 3
#: report.json timing keys, in pipeline order (``total`` is end to end inside score_slide_file).
#: ``read_and_segment``, ``qc`` and ``cells`` overlap inside ``tile_stream`` (its wall time): the
#: first is the main thread's, the other two are summed over the measurement threads.
STAGES = ("tissue_and_plan", "stain_estimate", "tile_stream", "read_and_segment", "qc", "cells", "write_cells",
          "scoring", "heterogeneity", "sampling_risk", "report", "maps_and_review")


def bench_settings(segmenter: str = "cnn", device: str = "auto", workers: int | None = None,
                   weights: Path | None = None):
    """Default settings with the segmenter, device, DataLoader workers and (optionally) the
    CNN weights overridden."""
    from her2slide.config import Settings

    model = {"weights": str(weights)} if weights is not None else {}
    return Settings(segmenter=segmenter).with_model(device=device, workers=workers, **model)


def synthetic_slide(folder: Path, side_um: float, seed: int = 3) -> Path:
    """A square homogeneous 2+ synthetic slide, generated once per side and cached in ``folder``."""
    from her2slide.synth.slides import make_synthetic_slide
    from her2slide.synth.spec import SlideSpec

    name = f"bench-{side_um:g}um-s{seed}"
    svs = folder / f"{name}.svs"
    if not svs.exists():
        spec = SlideSpec(name=name, pattern="homogeneous", score="2+", size_um=(side_um, side_um), seed=seed)
        make_synthetic_slide(spec, folder)
    return svs


def tile_plan(reader, settings):
    """The pipeline's tissue mask and tile plan for ``reader`` (same arguments as score_slide_file)."""
    from her2slide.slide import detect_tissue, plan_tiles

    thumb, thumb_mpp = reader.thumbnail(settings.tiling.tissue_mpp)
    mask = detect_tissue(thumb, thumb_mpp, level0_mpp=reader.mpp)
    tiling = settings.tiling
    plan = plan_tiles(reader, mask, work_mpp=tiling.work_mpp, tile_px=tiling.tile_px, margin_um=tiling.margin_um,
                      min_tissue_fraction=tiling.min_tissue_fraction)
    return mask, plan


def read_box_megapixels(plan) -> float:
    """Megapixels of the plan's read boxes (margins included) at its working resolution."""
    return sum((t.read[2] - t.read[0]) * (t.read[3] - t.read[1]) for t in plan.tiles) / plan.downsample**2 / 1e6


def read_floor(reader, plan) -> dict[str, float]:
    """Seconds to read the plan's read boxes, resampled (``read_at_mpp``) and raw (``read_region``).

    The fastest of ``FLOOR_PASSES`` passes each, in the order the pipeline reads, after one
    untimed pass that warms the OS page cache the same way for both (the pipeline's sha256 of
    the file warms it too). The fastest pass is the floor the machine can reach; single passes
    on this shared VM varied by up to 60 % between runs."""
    level = reader.level_for_mpp(plan.work_mpp)
    ds = reader.level_downsamples[level]
    boxes = [t.read for t in plan.tiles]

    def raw() -> None:
        for x0, y0, x1, y1 in boxes:
            reader.read_region(x0, y0, level, math.ceil((x1 - x0) / ds), math.ceil((y1 - y0) / ds))

    def resampled() -> None:
        for x0, y0, x1, y1 in boxes:
            reader.read_at_mpp(x0, y0, x1 - x0, y1 - y0, plan.work_mpp)

    raw()
    seconds = {}
    for name, fn in (("read_at_mpp_s", resampled), ("read_region_s", raw)):
        passes = []
        for _ in range(FLOOR_PASSES):
            start = time.perf_counter()
            fn()
            passes.append(time.perf_counter() - start)
        seconds[name] = round(min(passes), 3)
    return seconds


def _peak_rss_mb(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux: kilobytes


def _cpu_seconds(who: int) -> float:
    """User + system CPU seconds: on a shared machine, what the work cost whatever the others took."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure_one(slide: Path, segmenter: str, device: str, workers: int | None, weights: Path | None = None) -> dict:
    """In this (fresh) process: read floor, then load the model and score the slide twice; every
    number of one row.

    *Cold* (``end_to_end_s``) is model load + the first scoring, as a lone ``her2slide score``
    pays it (first-use imports of the map writers included). *Warm* (``warm_s``) is the second
    scoring by the same process, as every slide after the first in a batch. Stage timings are
    the warm run's.
    """
    from her2slide.run.engine import make_segmenter
    from her2slide.model.weights_path import weights_path
    from her2slide.run.pipeline import score_slide_file
    from her2slide.slide import open_slide

    settings = bench_settings(segmenter, device, workers, weights)
    reader = open_slide(slide)
    mask, plan = tile_plan(reader, settings)
    floor = read_floor(reader, plan)
    reader.close()
    with tempfile.TemporaryDirectory(prefix="her2slide-bench-") as out:
        start = time.perf_counter()
        model = make_segmenter(settings)  # timed apart: a batch loads the model once for all slides
        model_load = time.perf_counter() - start
        cold = score_slide_file(slide, Path(out) / "cold", settings, segmenter=model)
        end_to_end = time.perf_counter() - start
        start = time.perf_counter()
        outcome = score_slide_file(slide, Path(out) / "warm", settings, segmenter=model)
        warm = time.perf_counter() - start
    assert outcome.report["cells"] == cold.report["cells"], "the second run must measure the same cells"
    timings = outcome.report["timings"]
    tissue_mp = mask.area_um2 / settings.tiling.work_mpp**2 / 1e6
    return {
        "slide": str(slide), "segmenter": segmenter, "device": device,
        "model": None if segmenter == "classical" else Path(weights_path(settings)).stem,
        "tissue_mm2": round(mask.area_um2 / 1e6, 4), "tiles": len(plan),
        "tissue_mp": round(tissue_mp, 3), "read_box_mp": round(read_box_megapixels(plan), 3),
        "cells": outcome.report["cells"]["total"],
        "stage_s": {k: timings.get(k, 0.0) for k in STAGES},
        "stage_mp_per_s": {k: round(tissue_mp / timings[k], 2) if timings.get(k) else None for k in STAGES},
        "cold_stage_s": {k: cold.report["timings"].get(k, 0.0) for k in STAGES},
        "model_load_s": round(model_load, 3),
        "end_to_end_s": round(end_to_end, 3),
        "warm_s": round(warm, 3),
        "end_to_end_mp_per_s": round(tissue_mp / end_to_end, 3),
        "warm_mp_per_s": round(tissue_mp / warm, 3),
        "s_per_tissue_mp": round(end_to_end / tissue_mp, 3),
        "warm_s_per_tissue_mp": round(warm / tissue_mp, 3),
        **floor,
        "read_floor_mp_per_s": round(tissue_mp / floor["read_at_mpp_s"], 2),
        "ratio_to_read_floor": round(end_to_end / floor["read_at_mpp_s"], 2),
        "warm_ratio_to_read_floor": round(warm / floor["read_at_mpp_s"], 2),
        "ratio_to_raw_read": round(end_to_end / floor["read_region_s"], 2),
        "cpu_s": round(sum(_cpu_seconds(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)), 3),
        "peak_rss_mb": _peak_rss_mb(resource.RUSAGE_SELF),
        "worker_peak_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN),
    }


def run_child(slide: Path, args: argparse.Namespace) -> dict:
    """``measure_one`` in a fresh interpreter; adds its wall time incl. start-up and imports."""
    command = [sys.executable, __file__, "--child", str(slide), "--segmenter", args.segmenter, "--device", args.device]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    if args.model is not None:
        command += ["--model", str(args.model)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed on {slide}:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["process_s"] = round(time.perf_counter() - start, 3)
    return row


def table(rows: list[dict]) -> str:
    """Markdown tables: the per-slide summary, then seconds and MP/s per stage."""
    head = ("| tissue | tissue MP | read-box MP | cells | read floor s (read_at_mpp) | raw read_region s "
            "| warm s | warm MP/s | warm s per tissue MP | warm / floor | model load s | cold s | cold / floor "
            "| CPU s (both runs) | peak RSS MB (main / worker) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['tissue_mm2']:g} mm² | {r['tissue_mp']:g} | {r['read_box_mp']:g} | {r['cells']} "
                     f"| {r['read_at_mpp_s']:.2f} | {r['read_region_s']:.2f} "
                     f"| {r['warm_s']:.2f} | {r['warm_mp_per_s']:.2f} | {r['warm_s_per_tissue_mp']:.2f} "
                     f"| {r['warm_ratio_to_read_floor']:.1f} | {r['model_load_s']:.1f} | {r['end_to_end_s']:.1f} "
                     f"| {r['ratio_to_read_floor']:.1f} | {r['cpu_s']:.0f} "
                     f"| {r['peak_rss_mb']:.0f} / {r['worker_peak_rss_mb']:.0f} |")
    stage_head = "| stage (warm run) | " + " | ".join(f"{r['tissue_mm2']:g} mm²: s (MP/s)" for r in rows) + " |"
    lines += ["", stage_head, "|" + "---|" * (len(rows) + 1)]
    for k in STAGES:
        cells = [f"{r['stage_s'][k]:.2f} ({r['stage_mp_per_s'][k] if r['stage_mp_per_s'][k] is not None else '-'})"
                 for r in rows]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-um", type=float, default=500.0, help="side of the 1x slide, µm")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16], help="tissue-area multiples of the base")
    parser.add_argument("--small", action="store_true", help=f"one {SMALL_UM:g} µm slide (seconds; the test suite)")
    parser.add_argument("--segmenter", choices=("cnn", "classical"), default="cnn")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--model", type=Path, metavar="WEIGHTS", help="CNN weights (default: the shipped model)")
    parser.add_argument("--slides", type=Path, default=SLIDE_CACHE, help="cache folder of the synthetic slides")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_one(args.child, args.segmenter, args.device, args.workers, args.model)))
        return 0
    sides = [SMALL_UM] if args.small else [args.base_um * scale**0.5 for scale in args.scales]
    rows = []
    for side in sides:
        slide = synthetic_slide(args.slides, round(side, 1))
        rows.append(run_child(slide, args))
        print(f"{slide.name}: {rows[-1]['warm_s']:.1f} s warm, {rows[-1]['end_to_end_s']:.1f} s cold",
              file=sys.stderr, flush=True)
    result = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "base_um": SMALL_UM if args.small else args.base_um, "rows": rows}
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
