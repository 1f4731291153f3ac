#!/usr/bin/env python3
"""Pixel accuracy of the CNN and the classical segmenter on held-out synthetic tiles.

    python3 scripts/evaluate_segmenters.py [--tiles runs/tiles/val-s1-320] [--n 120] \
        [--model models/her2slide-membrane-v1.pt] [--json docs/eval_segmenters.json]

Membrane, nucleus and tumour F1 with a 1-pixel tolerance (tumour: none) at 0.5 µm/px, micro-
averaged over tiles. "membrane" is every tumour-cell membrane, stained or not (what the CNN
learns: where a membrane is); "stained membrane" is the subset carrying DAB, the only part
the classical segmenter can see, so the baseline is also judged on its own terms. The
validation tiles (seed 1) are never used in training (seed 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from her2slide.cells import classical_maps
from her2slide.config import Settings
from her2slide.model.checkpoint import load_weights
from her2slide.model.training.metrics import evaluate_maps, network_predictor, pixel_f1, summarise
from her2slide.model.weights_path import DEFAULT_WEIGHTS
from her2slide.stain import StainModel


def classical_predictor(settings: Settings):
    stain = StainModel.default()

    def predict(image: np.ndarray) -> dict[str, np.ndarray]:
        maps = classical_maps(image, stain, settings.cells, settings.tiling.work_mpp)
        return {"membrane": maps.membrane >= 0.5, "nucleus": maps.nucleus >= 0.5, "tumour": maps.tumour >= 0.5}

    return predict


def stained_membrane_f1(predict, tiles: list[Path]) -> dict[str, float]:
    counts = []
    for path in tiles:
        with np.load(path) as data:
            image, truth = data["image"], data["membrane"]
        counts.append(pixel_f1(predict(image)["membrane"], truth, 1))
    return summarise(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=Path, default=Path("runs/tiles/val-s1-320"))
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--model", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tiles = sorted(args.tiles.glob("tile_*.npz"))[: args.n]
    if not tiles:
        print(f"{args.tiles}: no validation tiles (scripts/train.py makes them)", file=sys.stderr)
        return 1
    import torch

    predictors = {"cnn": network_predictor(load_weights(args.model), torch.device("cpu")),
                  "classical": classical_predictor(Settings())}
    results = {}
    for name, predict in predictors.items():
        results[name] = {**evaluate_maps(predict, tiles), "stained membrane": stained_membrane_f1(predict, tiles)}
        print(name, json.dumps(results[name]), flush=True)
    print(f"\n{len(tiles)} held-out tiles; F1 (precision / recall), 1-px tolerance")
    print(f"{'map':18s}" + "".join(f"{n:>26s}" for n in results))
    for channel in ("membrane", "stained membrane", "nucleus", "tumour"):
        cells = [f"{r[channel]['f1']:.3f} ({r[channel]['precision']:.2f} / {r[channel]['recall']:.2f})" for r in results.values()]
        print(f"{channel:18s}" + "".join(f"{c:>26s}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps({"tiles": len(tiles), "model": str(args.model), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
