"""The ``her2slide`` command.

Subcommands register themselves through ``add_parser(subparsers)`` and import their
heavy dependencies only when they run, so ``her2slide --help`` stays instant. Input
problems end as one line ``her2slide: <file>: <reason>`` on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from her2slide import __version__

if TYPE_CHECKING:
    from her2slide.config import Settings

CRITERIA = ("breast", "gastric-resection", "gastric-biopsy")


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mpp", type=float, help="microns per level-0 pixel, for images without it (e.g. 0.25 for 40x)")
    parser.add_argument("--criteria", choices=CRITERIA, help="scoring criteria (default from the config: breast)")
    parser.add_argument("--config", type=Path, help="settings YAML (see configs/default.yaml)")
    parser.add_argument("--segmenter", choices=("cnn", "classical"), help="membrane CNN, or the classical baseline")
    parser.add_argument("--model", type=Path, help="CNN weights (default: the shipped models/her2slide-membrane-v1.pt)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the CNN runs (default auto: CUDA if present)")


def settings_from_args(args: argparse.Namespace) -> "Settings":
    """Settings from --config, with the command line's choices on top."""
    from her2slide.config import load_settings

    settings = load_settings(args.config, criteria=args.criteria, segmenter=args.segmenter)
    model = {k: v for k, v in (("weights", args.model and str(args.model)), ("device", args.device)) if v}
    return settings.with_model(**model) if model else settings


def _add_score(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("score", help="score slides; writes DIR/<slide stem>/report.json, cells.parquet")
    parser.add_argument("slides", nargs="+", type=Path, metavar="SLIDE")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--roi", type=Path, metavar="FILE",
                        help="regions of interest for a single slide: QuPath GeoJSON export or polygon list, "
                             "level-0 pixels (see docs/roi_and_qc.md)")
    _add_scoring_options(parser)
    parser.set_defaults(func=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from her2slide.engine import make_segmenter
    from her2slide.errors import InputError
    from her2slide.pipeline import score_slide_file

    if args.roi is not None and len(args.slides) > 1:
        return _fail(InputError(args.roi, "--roi outlines one slide; score one slide with it "
                                          "(a batch manifest names an ROI per slide)"))
    try:
        settings = settings_from_args(args)
        segmenter = make_segmenter(settings)
    except InputError as exc:
        return _fail(exc)
    failures = 0
    for slide in args.slides:
        try:
            outcome = score_slide_file(slide, args.out, settings, mpp=args.mpp, segmenter=segmenter, roi=args.roi)
        except InputError as exc:
            failures += 1
            _fail(exc)
            continue
        print(_summary_line(slide, outcome.report, outcome.out_dir))
    return 1 if failures else 0


def _summary_line(slide: Path, report: dict, out_dir: Path) -> str:
    if report["score"] is None:
        qc = report.get("qc") or {}
        why = "; ".join(qc.get("reasons") or qc.get("flags") or ["see report.json"])
        return (f"{slide}: not scored (QC failed: {why}), {report['cells']['total']} tumour cells, "
                f"{report['criteria']} criteria -> {out_dir}")
    flags = (report.get("qc") or {}).get("flags") or []
    checks = f" [QC flags: {', '.join(flags)}: see report.json qc.warnings]" if flags else ""
    return (f"{slide}: HER2 {report['score']} ({report['status']}, {report['category']}), "
            f"{report['cells']['total']} tumour cells, {report['criteria']} criteria{checks} -> {out_dir}")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="make a small synthetic slide with focal heterogeneity and score it")
    parser.add_argument("--out", type=Path, default=Path("her2slide-demo"), metavar="DIR")
    parser.add_argument("--seed", type=int, default=7)
    parser.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from her2slide.demo import run_demo

    return run_demo(args.out, seed=args.seed)


def _fail(exc: Exception) -> int:
    print(f"her2slide: {exc}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    from her2slide.batch_cli import add_parser as add_batch
    from her2slide.calibrate_cli import add_parser as add_calibrate
    from her2slide.context.cli import add_parser as add_context
    from her2slide.model.cli import add_parser as add_train
    from her2slide.scoring.cli import add_parser as add_ish
    from her2slide.synth.cli import add_parser as add_synth

    parser = argparse.ArgumentParser(prog="her2slide", description="Whole-slide HER2 IHC scoring (ASCO/CAP).")
    parser.add_argument("--version", action="version", version=f"her2slide {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_score(sub)
    add_batch(sub)
    _add_demo(sub)
    add_synth(sub)
    add_ish(sub)
    add_calibrate(sub)
    add_train(sub)
    add_context(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
