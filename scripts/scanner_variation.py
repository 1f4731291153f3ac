"""The four real cores as other scanners would image them: every perturbation of
her2slide.synth.scanner applied to each whole core (and to a no-glass crop from its middle), scored
with the default settings and segmenter, against what each perturbation must keep
(docs/roi_and_qc.md, "Scanner variation"). Also reported, not required: a warm scanner that also
re-encodes with JPEG quality 70.

    python3 scripts/scanner_variation.py --out docs/scanner_variation.json   # ~25 s per image on 2 CPU cores
    python3 scripts/scanner_variation.py --table docs/scanner_variation.json # the docs' table from a run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from her2slide.config import Settings
from her2slide.run.engine import make_segmenter
from her2slide.run.pipeline import score_slide_file
from her2slide.synth.scanner import BY_NAME, PERTURBATIONS, Perturbation, keeps_its_result

REPO = Path(__file__).resolve().parents[1]
MPP = 0.25
CROP_PX = 2560  # 640 µm from the middle of a core: inside every core's tissue
Image.MAX_IMAGE_PIXELS = None


def _middle(rgb: np.ndarray) -> np.ndarray:
    y, x = (rgb.shape[0] - CROP_PX) // 2, (rgb.shape[1] - CROP_PX) // 2
    return rgb[y:y + CROP_PX, x:x + CROP_PX]


EXTRA = (
    Perturbation("crop without glass", "same", f"the middle {CROP_PX * MPP:.0f} µm square of the core", _middle),
    Perturbation("warm + jpeg 70", "reported", "warm white balance, then JPEG quality 70",
                 lambda rgb: BY_NAME["jpeg 70"].apply(BY_NAME["warm"].apply(rgb))),
)


def _summary(report: dict) -> dict:
    qc = report["qc"]
    return {"score": report["score"], "verdict": qc["verdict"], "flags": qc["flags"], "failed": qc["failed"],
            "cells": report["cells"]["total"],
            "percent": {k: round(v, 1) for k, v in report["cells"]["percent"].items()},
            "counterstain_od": qc["stain"]["counterstain_od"], "white_point": qc["stain"]["white_point"],
            "edge_excluded_mm2": qc["excluded"]["edge"]}


def markdown_table(result: dict) -> str:
    """One row per perturbation, one column per core: score (or "not scored" with the failing
    flags) and whether it kept what the perturbation must keep."""
    rows = result["results"]
    cores = sorted({r["core"] for r in rows})
    lines = ["| perturbation | must keep | " + " | ".join(cores) + " |", "|---|---|" + "---|" * len(cores)]
    for name in ["none", *result["perturbations"]]:
        cells = []
        for core in cores:
            r = next(r for r in rows if r["core"] == core and r["perturbation"] == name)
            verdict = r["score"] if r["verdict"] == "pass" else f"not scored ({', '.join(r['failed'])})"
            mark = {True: " ✓", False: " ✗", None: ""}[r.get("kept")]
            cells.append(f"{verdict}{mark}")
        expect = result["perturbations"].get(name, {}).get("expect", "")
        what = result["perturbations"].get(name, {}).get("what", "as scanned")
        lines.append(f"| {name}: {what} | {expect} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "her2-ihc-oesophagus-tma")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "scanner_variation.json")
    parser.add_argument("--table", type=Path, help="print the markdown table of an earlier run's JSON and stop")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    settings = Settings(criteria="gastric-resection")
    segmenter = make_segmenter(settings)
    rows = []
    with tempfile.TemporaryDirectory(prefix="her2slide-scanners-") as tmp:
        def score(rgb: np.ndarray, name: str) -> dict:
            path = Path(tmp) / f"{name}.png"
            Image.fromarray(rgb).save(path)
            return score_slide_file(path, Path(tmp) / "out", settings, mpp=MPP, segmenter=segmenter).report

        for core in sorted(args.data.glob("*.jpg")):
            stem = core.stem[:10]
            rgb = np.asarray(Image.open(core).convert("RGB"))
            original = score(rgb, stem)
            rows.append({"core": stem, "perturbation": "none", **_summary(original)})
            print(stem, "original", rows[-1], flush=True)
            for perturbation in (*PERTURBATIONS, *EXTRA):
                start = time.perf_counter()
                report = score(perturbation.apply(rgb), stem)
                kept = None if perturbation.expect == "reported" else \
                    keeps_its_result(original, report, perturbation, settings)
                rows.append({"core": stem, "perturbation": perturbation.name, "expect": perturbation.expect,
                             "kept": kept, **_summary(report), "seconds": round(time.perf_counter() - start, 1)})
                print(stem, perturbation.name, rows[-1], flush=True)
    result = {"perturbations": {p.name: {"expect": p.expect, "what": p.describe} for p in (*PERTURBATIONS, *EXTRA)},
              "results": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(result))
    failures = [r for r in rows if r.get("kept") is False]
    print(f"{len(rows) - 4 - len(failures)} of {len(rows) - 4} perturbed images kept what they must; "
          f"failures: {[(r['core'], r['perturbation']) for r in failures]}")


if __name__ == "__main__":
    main()
