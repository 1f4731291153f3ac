"""``her2slide train``: train or fine-tune the membrane network (torch imported only when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from her2slide.cli.options import fail


def _slide_and_geojson(text: str) -> tuple[Path, Path]:
    slide, sep, geojson = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected SLIDE=CELLS.geojson")
    return Path(slide), Path(geojson)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train or fine-tune the cell CNN (synthetic data, real nuclei, a lab's own)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder (resumes if it holds a checkpoint)")
    parser.add_argument("--architecture", choices=("v2", "v1"), default="v2",
                        help="v2: nuclei, tumour and nucleus centres from haematoxylin alone; v1: membrane, nuclei, tumour from RGB")
    parser.add_argument("--steps", type=int, default=800, help="optimiser steps (default 800)")
    parser.add_argument("--batch", type=int, default=8, help="tiles per step (default 8)")
    parser.add_argument("--lr", type=float, default=3e-3,
                        help="peak learning rate of the one-cycle schedule (AdamW; default 0.003)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (tiles, augmentation, initial weights)")
    parser.add_argument("--real-nuclei", type=Path, metavar="DIR",
                        help="v2: the real nucleus sets (../shared/data/nuclei), rendered IHC-like; "
                             "their validation images are never trained on")
    parser.add_argument("--real-weight", type=float, default=0.5, help="share of samples drawn from the real nuclei")
    parser.add_argument("--families", nargs="*", default=[], metavar="NAME",
                        help="synthetic style families to train on (default: the generator's calibrated look)")
    parser.add_argument("--synthetic-tiles", type=int, default=400, help="size of the synthetic tile pool (0: lab data only)")
    parser.add_argument("--validation-tiles", type=int, default=120, help="synthetic tiles held out for validation")
    parser.add_argument("--tile-cache", type=Path, default=Path("runs/tiles"), help="where synthetic tiles are cached")
    parser.add_argument("--lab-tiles", type=Path, action="append", default=[], metavar="DIR",
                        help="folder of *.npz tiles, or *.png with NAME_membrane/_nucleus/_tumour.png masks")
    parser.add_argument("--qupath", type=_slide_and_geojson, action="append", default=[], metavar="SLIDE=CELLS.geojson",
                        help="cells exported from QuPath (exhaustively annotated area) and their slide")
    parser.add_argument("--init", type=Path, help="fine-tune from these weights (e.g. models/her2slide-membrane-v1.pt)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to train (default auto: CUDA if present)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader processes preparing samples")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from her2slide.errors import InputError
    from her2slide.model.training.train import TrainConfig, train

    config = TrainConfig(out=args.out, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                         synthetic_tiles=args.synthetic_tiles, validation_tiles=args.validation_tiles,
                         tile_cache=args.tile_cache, lab_tiles=args.lab_tiles, qupath=args.qupath,
                         init=args.init, device=args.device, workers=args.workers, architecture=args.architecture,
                         real_nuclei=args.real_nuclei, real_weight=args.real_weight, families=tuple(args.families))
    try:
        train(config, log=lambda line: print(line, flush=True))
    except InputError as exc:
        return fail(exc)
    return 0
