"""The ``her2slide`` command.

Subcommands register themselves through ``add_parser(subparsers)`` and import their
heavy dependencies only when they run, so ``her2slide --help`` stays instant. Input
problems end as one line ``her2slide: <file>: <reason>`` on stderr and a non-zero exit
(``ExitStatus`` in her2slide.errors). :func:`main` is the last net under every command:
Ctrl-C and SIGTERM end as one line ("interrupted", "terminated") after the partial outputs
are removed, a closed stdout (``| head``) ends quietly, and an unexpected error is one line
too (``HER2SLIDE_DEBUG=1`` adds its traceback). Each command first catches what it can
name itself, per file, so its other files still run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from her2slide import __version__

if TYPE_CHECKING:
    from her2slide.config import Settings

CRITERIA = ("breast", "gastric-resection", "gastric-biopsy")


def _add_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (created if needed); each slide gets DIR/<slide stem>/")


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mpp", type=float, help="microns per level-0 pixel, for images without it (e.g. 0.25 for 40x)")
    parser.add_argument("--criteria", choices=CRITERIA,
                        help="scoring criteria (default from the config: breast); gastric/GEJ: gastric-resection for "
                             "resections and TMA cores, gastric-biopsy for endoscopic biopsies (README, 'Which --criteria')")
    parser.add_argument("--config", type=Path, help="settings YAML (see configs/default.yaml)")
    parser.add_argument("--segmenter", choices=("cnn", "classical"), help="classical colour deconvolution (the default), or cnn: the network detector (docs/evaluation.md)")
    parser.add_argument("--model", type=Path, help="CNN weights (default: the shipped models/her2slide-cells-v2.pt)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the CNN runs (default auto: CUDA if present)")


def settings_from_args(args: argparse.Namespace) -> "Settings":
    """Settings from --config, with the command line's choices on top."""
    from her2slide.config import load_settings

    settings = load_settings(args.config, criteria=args.criteria, segmenter=args.segmenter)
    model = {k: v for k, v in (("weights", args.model and str(args.model)), ("device", args.device)) if v}
    return settings.with_model(**model) if model else settings


def _add_score(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score", help="score slides; writes DIR/<slide stem>/report.json, cells.parquet",
        description="Score slides one after another. Exit status 0: every slide scored; 1: a slide could not be "
                    "scored (its line on stderr says why; the others are still scored); 4: every slide was read, "
                    "but at least one failed QC and is 'not scored'; 130: interrupted.")
    parser.add_argument("slides", nargs="+", type=Path, metavar="SLIDE",
                        help="slide files: anything OpenSlide opens, or a JPEG/PNG/TIFF field such as a TMA core")
    _add_out(parser)
    parser.add_argument("--roi", type=Path, metavar="FILE",
                        help="regions of interest for a single slide: QuPath GeoJSON export or polygon list, "
                             "level-0 pixels (see docs/roi_and_qc.md)")
    _add_scoring_options(parser)
    parser.set_defaults(func=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from her2slide.errors import ExitStatus, InputError
    from her2slide.lazy_segmenter import SegmenterOnFirstUse
    from her2slide.outputs.result_folder import check_out_root
    from her2slide.pipeline import score_slide_file
    from her2slide.progress import tile_progress

    if args.roi is not None and len(args.slides) > 1:
        return _fail(InputError(args.roi, "--roi outlines one slide; score one slide with it "
                                          "(a batch manifest names an ROI per slide)"))
    try:
        settings = settings_from_args(args)
        check_out_root(args.out)
    except InputError as exc:
        return _fail(exc)
    segmenter = SegmenterOnFirstUse(settings)  # loaded once the first slide has passed its checks
    failed = not_scored = 0
    for slide in args.slides:
        try:
            outcome = score_slide_file(slide, args.out, settings, mpp=args.mpp, segmenter=segmenter, roi=args.roi,
                                       progress=tile_progress(str(slide)))
        except InputError as exc:
            failed += 1
            _fail(exc)
            if segmenter.failed is not None:
                break  # the model cannot be loaded: no slide can be scored
            continue
        except Exception as exc:  # noqa: BLE001 -- the last net for one slide: the others still run
            failed += 1
            report_unexpected(str(slide), exc)
            continue
        not_scored += outcome.report["score"] is None
        print(summary_line(slide, outcome.report, outcome.out_dir), flush=True)
    return ExitStatus.FAILED if failed else ExitStatus.NOT_SCORED if not_scored else ExitStatus.OK


def summary_line(slide: Path, report: dict, out_dir: Path) -> str:
    """The line ``score`` prints for a slide: its score, or "not scored" with QC's reasons."""
    if report["score"] is None:
        qc = report.get("qc") or {}
        why = "; ".join(qc.get("reasons") or qc.get("flags") or ["see report.json"])
        return (f"{slide}: not scored (QC failed: {why}), {report['cells']['total']} tumour cells, "
                f"{report['criteria']} criteria -> {out_dir}")
    flags = (report.get("qc") or {}).get("flags") or []
    checks = f" [QC flags: {', '.join(flags)}: see report.json qc.warnings]" if flags else ""
    return (f"{slide}: HER2 {report['score']} ({result_words(report['status'], report.get('category'))}), "
            f"{report['cells']['total']} tumour cells, {report['criteria']} criteria{checks} -> {out_dir}")


def result_words(status: str, category: str | None) -> str:
    """Status and category, the category only where it adds something ("equivocal", not
    "equivocal, equivocal")."""
    return status if not category or category == status else f"{status}, {category}"


def _add_demo(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="make a small synthetic slide with focal heterogeneity and score it")
    parser.add_argument("--out", type=Path, default=Path("her2slide-demo"), metavar="DIR",
                        help="folder for the synthetic slide (DIR/slides) and its results (DIR/results)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the synthetic slide")
    parser.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from her2slide.demo import run_demo

    return run_demo(args.out, seed=args.seed)


def _fail(exc: Exception) -> int:
    print(f"her2slide: {exc}", file=sys.stderr)
    return 1


def report_unexpected(where: str, exc: BaseException) -> None:
    """One line for an error that is not the input's (a bug): where, its type and message."""
    from her2slide.slide.reader import short_cause

    print(f"her2slide: {where}: unexpected error ({type(exc).__name__}: {short_cause(exc, limit=200)}); "
          "please report it (HER2SLIDE_DEBUG=1 shows the traceback)", file=sys.stderr)
    if os.environ.get("HER2SLIDE_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so partial outputs are removed as after Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _quiet_stdout() -> None:
    """The reader of stdout has gone (``| head``): send what is left to /dev/null, so that
    Python's flush at exit does not complain about the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def build_parser() -> argparse.ArgumentParser:
    from her2slide.batch_cli import add_parser as add_batch
    from her2slide.calibrate_cli import add_parser as add_calibrate
    from her2slide.context.cli import add_parser as add_context
    from her2slide.model.cli import add_parser as add_train
    from her2slide.scoring.cli import add_parser as add_ish
    from her2slide.synth.cli import add_parser as add_synth
    from her2slide.viewer.cli import add_parser as add_view

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
    add_view(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from her2slide.errors import ExitStatus, InputError

    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return status
    except Terminated:
        print("her2slide: terminated", file=sys.stderr)
        return ExitStatus.TERMINATED
    except KeyboardInterrupt:
        print("her2slide: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return ExitStatus.BROKEN_PIPE
    except InputError as exc:
        return _fail(exc)
    except Exception as exc:  # noqa: BLE001 -- the last net: one line, never a traceback
        report_unexpected(args.command, exc)
        return ExitStatus.FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
