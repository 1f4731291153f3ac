#!/usr/bin/env python3
"""Contact sheet of the synthetic style families: one training tile per family (and v1), the
image above and its truth below (tumour cells outlined, nucleus instances coloured by kind).

    python3 scripts/synth_families_sheet.py --out docs/images/synth_families.jpg [--index 0] [--seed 0] [--tile-px 256]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

from her2slide.synth.families import FAMILIES, HELD_OUT
from her2slide.synth.tiles import NUCLEUS_KINDS, make_training_tiles

#: nucleus kind -> overlay colour (tumour, stroma, lymphocyte)
COLOURS = {NUCLEUS_KINDS["tumour"]: (40, 170, 60), NUCLEUS_KINDS["stroma"]: (230, 170, 0),
           NUCLEUS_KINDS["lymphocyte"]: (0, 150, 230)}


def truth_overlay(tile: dict[str, np.ndarray]) -> np.ndarray:
    """The tile, faded, with nucleus instances filled by kind and tumour-cell outlines in black."""
    out = (0.45 * tile["image"] + 0.55 * 255).astype(np.uint8)
    kind = tile["nucleus_kind"][tile["nuclei"]]
    for code, colour in COLOURS.items():
        out[kind == code] = colour
    out[find_boundaries(tile["nuclei"], mode="inner")] = (255, 255, 255)
    out[find_boundaries(tile["cells"], mode="inner") & (tile["cells"] > 0)] = (0, 0, 0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--index", type=int, default=0, help="tile index drawn for every family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile-px", type=int, default=256)
    args = parser.parse_args(argv)
    columns = [None, *FAMILIES]
    images, overlays = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for family in columns:
            (path,) = make_training_tiles(1, tmp, tile_px=args.tile_px, seed=args.seed, first=args.index,
                                          family=family)
            with np.load(path) as d:
                tile = {k: d[k] for k in d.files}
            images.append(tile["image"])
            overlays.append(truth_overlay(tile))
    gap = np.full((args.tile_px, 4, 3), 255, np.uint8)
    rows = [np.concatenate(sum(([im, gap] for im in row), [])[:-1], 1) for row in (images, overlays)]
    head = 22
    sheet = Image.new("RGB", (rows[0].shape[1], head + 2 * args.tile_px + 4), "white")
    sheet.paste(Image.fromarray(rows[0]), (0, head))
    sheet.paste(Image.fromarray(rows[1]), (0, head + args.tile_px + 4))
    draw = ImageDraw.Draw(sheet)
    for i, family in enumerate(columns):
        label = "v1 (default)" if family is None else f"{family} (HELD OUT)" if family == HELD_OUT else family
        draw.text((i * (args.tile_px + 4) + 6, 5), label, fill=(0, 0, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=80)
    print(f"{args.out}: {sheet.size[0]}x{sheet.size[1]} px, {args.out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
