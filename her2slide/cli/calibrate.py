"""The ``her2slide calibrate`` subcommand: fit DAB thresholds from labelled controls (docs/calibrate.md)."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from her2slide.cli.options import CRITERIA, fail

if TYPE_CHECKING:
    from her2slide.run.calibrate import Control
    from her2slide.run.progress import Progress

SCORES = ("0", "1+", "2+", "3+")


def _control(text: str) -> tuple[Path, str]:
    path, sep, score = text.rpartition("=")
    if not sep or score not in SCORES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PATH=SCORE with SCORE one of {', '.join(SCORES)}")
    return Path(path), score


DESCRIPTION = ("Measure labelled controls and write a config whose faint / moderate / intense DAB thresholds "
               "reproduce their known scores. A threshold is fitted only with a control on each side of it "
               "(faint: 0 and 1+, moderate: 1+ and 2+, intense: 2+ and 3+); otherwise it keeps its starting "
               "value and a warning says so. Exit status 0: every control reproduced; 3: the config is written, "
               "but no thresholds reproduce every control (see the per-control lines); 1: a control could not "
               "be measured (its line says why; the config is fitted on the others), or none could. "
               "Details: docs/calibrate.md.")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("calibrate", help="fit DAB thresholds from control slides of known score",
                              description=DESCRIPTION)
    p.add_argument("controls", nargs="+", type=_control, metavar="PATH=SCORE",
                   help="a control slide and its known score, e.g. control_3plus.svs=3+ (one of each score is best)")
    p.add_argument("--out", type=Path, required=True, metavar="YAML", help="config YAML to write (use with score --config)")
    p.add_argument("--mpp", type=float, help="microns per pixel for controls without it")
    p.add_argument("--criteria", choices=CRITERIA,
                   help="scoring criteria the controls' scores were given with (default from the config: breast)")
    p.add_argument("--config", type=Path, help="starting settings (default: built-in defaults)")
    p.add_argument("--json", action="store_true", help="print the calibration report as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from her2slide.run.calibrate import Control, calibrate
    from her2slide.config import dump_yaml, load_settings
    from her2slide.errors import ExitStatus, InputError
    from her2slide.run.progress import tile_progress

    def progress(i: int, n: int, control: Control) -> Progress:
        return tile_progress(f"control {i}/{n} {control.path.name}")

    try:
        settings = load_settings(args.config, criteria=args.criteria)
        controls = [Control(path, score, args.mpp) for path, score in args.controls]
        fitted, result = calibrate(controls, settings, progress=progress)
        _write_config(args.out, dump_yaml(fitted))
    except InputError as exc:
        return fail(exc)
    for failure in result.failed:
        print(f"her2slide: {failure}", file=sys.stderr)
    for why in result.kept.values():
        print(f"her2slide: warning: {why}", file=sys.stderr)
    report = {"correct": result.correct, "controls": result.total,
              "thresholds": {k: getattr(result.rules, k) for k in ("faint_od", "moderate_od", "intense_od")},
              "feasible_range": result.feasible_range, "kept": result.kept, "per_control": result.per_control,
              "not_measured": [{"path": f.path, "reason": f.reason} for f in result.failed], "config": str(args.out),
              "reference_counterstain_od": fitted.qc.reference_counterstain_od}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{result.correct} of {result.total} controls reproduced; config written to {args.out}")
        for name, value in report["thresholds"].items():
            lo, hi = result.feasible_range[name]
            note = "kept: no control on one side" if name in result.kept else \
                f"thresholds from {lo:.3f} to {hi:.3f} do as well"
            print(f"  {name:12s} {value:.3f}   ({note})")
        print(f"  reference counterstain {fitted.qc.reference_counterstain_od:.3f} "
              "(the controls'; QC compares every slide with it)")
        for row in result.per_control:
            print(f"  {row['path']}: label {row['label']}, predicted {row['predicted']}, {row['cells']} cells, "
                  f"% by class {row['percent']}")
    if result.failed:
        return ExitStatus.FAILED
    return ExitStatus.OK if result.correct == result.total else ExitStatus.NOT_REPRODUCED


def _write_config(path: Path, text: str) -> None:
    from her2slide.errors import InputError

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise InputError(path, f"config cannot be written ({exc.strerror or type(exc).__name__})") from None
