"""The ``her2slide synth`` subcommand: one synthetic slide, an evaluation suite, or training tiles.

Registering the parser imports nothing heavy, so ``her2slide --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synth`` on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "synth",
        help="synthetic HER2 IHC slides (Aperio SVS) with exact per-cell truth, suites, training tiles",
        description="Write a synthetic 40x HER2 IHC slide (<name>.svs, <name>.truth.parquet, <name>.truth.json), "
                    "an evaluation suite (--suite N) or membrane training tiles (--tiles N).",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--pattern", choices=("homogeneous", "focal", "mosaic"), default="homogeneous",
                   help="one score everywhere, positive clusters in a negative tumour, or positive cells intermixed")
    p.add_argument("--score", choices=("0", "1+", "2+", "3+"), default=None,
                   help="homogeneous: target breast score (default 2+); focal/mosaic: score of the negative "
                        "background, 0 or 1+ (default 0)")
    p.add_argument("--fraction", type=float, default=0.2,
                   help="focal: share of tumour cells in the positive clusters; mosaic: positive fraction")
    p.add_argument("--positive", choices=("2+", "3+"), default="3+", help="class of focal/mosaic positive cells")
    p.add_argument("--clusters", type=int, default=1, help="focal: number of positive clusters")
    p.add_argument("--size-um", type=float, nargs=2, default=(1000.0, 1000.0), metavar=("W", "H"),
                   help="slide size in micrometres (default 1000 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same slide)")
    p.add_argument("--name", default=None, help="file stem (default from the pattern, score and seed)")
    p.add_argument("--suite", type=int, default=None, metavar="N", help="write an N-slide evaluation suite instead")
    p.add_argument("--workers", type=int, default=None, help="suite: processes (default 2 or fewer)")
    p.add_argument("--tiles", type=int, default=None, metavar="N", help="write N training tiles (.npz) instead")
    p.add_argument("--tile-px", type=int, default=256, help="tiles: size in pixels (default 256)")
    p.add_argument("--tile-mpp", type=float, default=0.5, help="tiles: µm per pixel (default 0.5)")
    p.add_argument("--family", default=None, metavar="NAME[,NAME...]",
                   help="style family: --suite writes that family's suite (e.g. the held-out 'trabecular'); --tiles "
                        "uses the families in turn ('training' = every family but the held-out one); default: "
                        "the calibrated look and v1 tiles")
    p.set_defaults(func=run)
    return p


def _tile_families(text: str | None) -> list[str] | None:
    """``--family`` for tiles: comma-separated names, 'training' for every training family."""
    if text is None:
        return None
    from her2slide.synth.families import TRAINING_FAMILIES

    return [n for part in text.split(",") for n in (TRAINING_FAMILIES if part.strip() == "training" else [part.strip()])]


def run(args: argparse.Namespace) -> int:
    """Generate what the arguments ask for; print the written paths and the true score."""
    from pydantic import ValidationError

    try:
        if args.suite is not None and args.tiles is not None:
            raise ValueError("--suite and --tiles are alternatives; give one")
        if args.suite is not None:
            from her2slide.synth.slides import make_suite

            slides = make_suite(args.out, n=args.suite, seed=args.seed, family=args.family, workers=args.workers)
            print(f"{len(slides)} slides, truth index: {Path(args.out) / 'index.json'}")
            return 0
        if args.tiles is not None:
            from her2slide.synth.tiles import make_training_tiles

            paths = make_training_tiles(args.tiles, args.out, tile_px=args.tile_px, mpp=args.tile_mpp, seed=args.seed,
                                        family=_tile_families(args.family))
            print(f"{len(paths)} training tiles ({args.tile_px} px at {args.tile_mpp} µm/px) in {args.out}")
            return 0
        if args.family is not None:
            raise ValueError("--family applies to --suite and --tiles")
        from her2slide.synth.slides import make_synthetic_slide
        from her2slide.synth.spec import SlideSpec

        score = args.score or ("2+" if args.pattern == "homogeneous" else "0")
        spec = SlideSpec(name=args.name, pattern=args.pattern, score=score, fraction=args.fraction,
                         positive=args.positive, clusters=args.clusters, size_um=tuple(args.size_um), seed=args.seed)
        slide = make_synthetic_slide(spec, args.out, progress=sys.stderr.isatty())
    except (ValueError, ValidationError, OSError) as exc:
        msg = str(exc).splitlines()[0] if not isinstance(exc, ValidationError) else \
            "; ".join(e["msg"] for e in exc.errors())
        print(f"her2slide synth: {msg}", file=sys.stderr)
        return 1
    from her2slide.cli.options import result_words

    print(slide.svs)
    print(slide.truth_parquet)
    print(slide.truth_json)
    print(f"true HER2 score {slide.score} ({result_words(slide.status, slide.category)}), "
          f"{slide.n_cells} tumour cells, {slide.seconds:.1f} s")
    return 0
