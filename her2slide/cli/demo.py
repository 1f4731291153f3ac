"""``her2slide demo``: generate a small synthetic slide with a focal 3+ cluster and score it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from her2slide.cli.options import result_words


def run_demo(out: Path, seed: int = 7) -> int:
    """End to end on a slide whose truth is known, so the user sees the pipeline is honest."""
    from her2slide.config import load_settings
    from her2slide.run.pipeline import score_slide_file
    from her2slide.run.progress import tile_progress
    from her2slide.synth.slides import make_synthetic_slide
    from her2slide.synth.spec import SlideSpec

    spec = SlideSpec(name="demo-focal", pattern="focal", score="1+", fraction=0.25, positive="3+",
                     size_um=(900.0, 900.0), seed=seed)
    print(f"generating a synthetic 40x slide (0.9 x 0.9 mm, a focal 3+ cluster in a 1+ tumour) in {out / 'slides'}",
          flush=True)
    slide = make_synthetic_slide(spec, out / "slides", progress=sys.stderr.isatty())
    print(f"scoring {slide.svs}", flush=True)
    outcome = score_slide_file(slide.svs, out / "results", load_settings(), progress=tile_progress(slide.svs.name))
    report = outcome.report
    percent = ", ".join(f"{k}: {v:.1f}%" for k, v in report["cells"]["percent"].items())
    print(f"\nHER2 IHC score {report['score']} ({result_words(report['status'], report['category'])}) "
          f"from {report['cells']['total']} tumour cells [{percent}]")
    print(f"truth from the generator: {slide.score} ({slide.n_cells} tumour cells drawn)")
    for reason in report["reasons"]:
        print(f"  {reason}")
    files = sorted(p.name for p in outcome.out_dir.iterdir() if not p.name.startswith("."))
    print(f"\noutputs in {outcome.out_dir}: " + ", ".join(files))
    print(f"open {outcome.out_dir / 'review.html'} in a browser to review the maps")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="make a small synthetic slide with focal heterogeneity and score it")
    parser.add_argument("--out", type=Path, default=Path("her2slide-demo"), metavar="DIR",
                        help="folder for the synthetic slide (DIR/slides) and its results (DIR/results)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the synthetic slide")
    parser.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    return run_demo(args.out, seed=args.seed)
