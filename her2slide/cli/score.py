"""``her2slide score``: score slides one after another into an output folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from her2slide.cli.options import (add_out, add_scoring_options, fail, report_unexpected, result_words,
                                   settings_from_args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score", help="score slides; writes DIR/<slide stem>/report.json, cells.parquet",
        description="Score slides one after another. Exit status 0: every slide scored; 1: a slide could not be "
                    "scored (its line on stderr says why; the others are still scored); 4: every slide was read, "
                    "but at least one failed QC and is 'not scored'; 130: interrupted.")
    parser.add_argument("slides", nargs="+", type=Path, metavar="SLIDE",
                        help="slide files: anything OpenSlide opens, or a JPEG/PNG/TIFF field such as a TMA core")
    add_out(parser)
    parser.add_argument("--roi", type=Path, metavar="FILE",
                        help="regions of interest for a single slide: QuPath GeoJSON export or polygon list, "
                             "level-0 pixels (see docs/roi_and_qc.md)")
    add_scoring_options(parser)
    parser.set_defaults(func=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from her2slide.errors import ExitStatus, InputError
    from her2slide.run.lazy_segmenter import SegmenterOnFirstUse
    from her2slide.outputs.result_folder import check_out_root
    from her2slide.run.pipeline import score_slide_file
    from her2slide.run.progress import tile_progress

    if args.roi is not None and len(args.slides) > 1:
        return fail(InputError(args.roi, "--roi outlines one slide; score one slide with it "
                                          "(a batch manifest names an ROI per slide)"))
    try:
        settings = settings_from_args(args)
        check_out_root(args.out)
    except InputError as exc:
        return fail(exc)
    segmenter = SegmenterOnFirstUse(settings)  # loaded once the first slide has passed its checks
    failed = not_scored = 0
    for slide in args.slides:
        try:
            outcome = score_slide_file(slide, args.out, settings, mpp=args.mpp, segmenter=segmenter, roi=args.roi,
                                       progress=tile_progress(str(slide)))
        except InputError as exc:
            failed += 1
            fail(exc)
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
