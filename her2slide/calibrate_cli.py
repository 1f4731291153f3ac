"""The ``her2slide calibrate`` subcommand: fit DAB thresholds from labelled controls."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SCORES = ("0", "1+", "2+", "3+")


def _control(text: str) -> tuple[Path, str]:
    path, sep, score = text.rpartition("=")
    if not sep or score not in SCORES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PATH=SCORE with SCORE one of {', '.join(SCORES)}")
    return Path(path), score


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("calibrate", help="fit DAB thresholds from control slides of known score",
                              description="Measure labelled controls and write a config whose faint / moderate / "
                                          "intense DAB thresholds reproduce their known scores.")
    p.add_argument("controls", nargs="+", type=_control, metavar="PATH=SCORE", help="e.g. control_3plus.svs=3+")
    p.add_argument("--out", type=Path, required=True, help="config YAML to write (use with score --config)")
    p.add_argument("--mpp", type=float, help="microns per pixel for controls without it")
    p.add_argument("--criteria", choices=("breast", "gastric-resection", "gastric-biopsy"))
    p.add_argument("--config", type=Path, help="starting settings (default: built-in defaults)")
    p.add_argument("--json", action="store_true", help="print the calibration report as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from her2slide.calibrate import Control, calibrate
    from her2slide.config import dump_yaml, load_settings
    from her2slide.errors import InputError

    try:
        settings = load_settings(args.config, criteria=args.criteria)
        controls = [Control(path, score, args.mpp) for path, score in args.controls]
        fitted, result = calibrate(controls, settings)
    except InputError as exc:
        print(f"her2slide: {exc}", file=sys.stderr)
        return 1
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(dump_yaml(fitted))
    tmp.replace(args.out)
    report = {"correct": result.correct, "controls": result.total,
              "thresholds": {k: getattr(result.rules, k) for k in ("faint_od", "moderate_od", "intense_od")},
              "feasible_range": result.feasible_range, "per_control": result.per_control, "config": str(args.out),
              "reference_counterstain_od": fitted.qc.reference_counterstain_od}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{result.correct} of {result.total} controls reproduced; config written to {args.out}")
        for name, value in report["thresholds"].items():
            lo, hi = result.feasible_range[name]
            print(f"  {name:12s} {value:.3f}   (thresholds from {lo:.3f} to {hi:.3f} do as well)")
        print(f"  reference counterstain {fitted.qc.reference_counterstain_od:.3f} "
              "(the controls'; QC compares every slide with it)")
        for row in result.per_control:
            print(f"  {row['path']}: label {row['label']}, predicted {row['predicted']}, {row['cells']} cells, "
                  f"% by class {row['percent']}")
    return 0 if result.correct == result.total else 3
