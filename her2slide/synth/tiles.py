"""Training tiles for the membrane network: synthetic images with exact masks at the model's mpp.

Each tile is a small full-field synthetic scene (tumour-rich, no glass) with randomised stain,
optics and class mixture, rendered at level-0 resolution (0.25 µm/px) and resampled to ``mpp``:
the image by area averaging, masks by area fraction, instance labels by nearest sampling at
the same pixel centres (nucleus instances by majority), so image and masks stay aligned.

Without a family, tiles are v1's (the look the shipped v1 network was trained on, unchanged);
with one (:mod:`her2slide.synth.families`), the tile takes that family's tissue and scanner look
and passes through the scanner's JPEG at level 0, as a slide would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from .families import FAMILIES, family_named, tilted
from .layout import KINDS, LayoutParams
from .render import Region, render_region
from .scene import Look
from .slides import build_scene
from .spec import MIXTURES, SlideSpec

__all__ = ["make_training_tiles", "random_tile_spec", "tile_name", "NUCLEUS_KINDS"]

LEVEL0_MPP = 0.25
#: ``nucleus_kind`` codes per nucleus label (index 0: background).
NUCLEUS_KINDS: dict[str, int] = {"tumour": 1, "stroma": 2, "lymphocyte": 3}


def _random_classes(rng: np.random.Generator) -> dict:
    """A random class map: a homogeneous score, or a mosaic of positives on a 0/1+ background."""
    score = str(rng.choice(list(MIXTURES)))
    pattern = str(rng.choice(["homogeneous", "homogeneous", "mosaic"]))
    kw = dict(score=score) if pattern == "homogeneous" else dict(score=str(rng.choice(["0", "1+"])),
                                                                   fraction=float(rng.uniform(0.1, 0.6)))
    return dict(pattern=pattern, **kw)


def random_tile_spec(rng: np.random.Generator, size_um: float, seed: int, family: str | None = None) -> SlideSpec:
    """A tumour-rich field with a random class mixture; its tissue and look are v1's (random
    architecture, a plausible scanner/stain spread around the calibrated defaults) or, given a
    ``family`` name, that style family's."""
    classes = _random_classes(rng)
    if family is not None:
        layout, look = family_named(family).draw(rng)
        return SlideSpec(size_um=(size_um, size_um), seed=seed, full_field=True, layout=layout, look=look,
                         family=family, **classes)
    from ..stain import StainModel

    d = StainModel.default()
    white = np.clip(np.array(Look().white) + rng.normal(0, 5, 3), 200, 255)
    look = Look(white=tuple(float(x) for x in white), haematoxylin=tilted(d.haematoxylin, rng, (0, 5)),
                dab=tilted(d.dab, rng, (0, 5)), blur_um=float(rng.uniform(0.3, 0.65)),
                noise_sd=tuple(float(x) for x in rng.uniform(0.8, 1.5, 3) * np.array([1.0, 1.0, 1.8])),
                membrane_width_um=float(rng.uniform(1.0, 1.7)),
                cytoplasm_dab_fraction=float(rng.uniform(0.03, 0.25)),
                chromatin=float(rng.uniform(0.12, 0.3)), ring_variation=float(rng.uniform(0.05, 0.2)))
    arch = rng.dirichlet([2, 2, 2])
    layout = LayoutParams(architecture=dict(zip(KINDS[:3], arch.tolist())), tumour_fraction=float(rng.uniform(0.4, 0.7)),
                          nest_radius_um=(20.0, 55.0), sheet_radius_um=(55.0, 100.0), gland_radius_um=(30.0, 65.0))
    return SlideSpec(size_um=(size_um, size_um), seed=seed, full_field=True, layout=layout, look=look, **classes)


def _pool_mean(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f, a.shape[1] // f
    return a[: h * f, : w * f].reshape(h, f, w, f, *a.shape[2:]).mean(axis=(1, 3), dtype=np.float32)


def _majority_labels(labels: np.ndarray, f: int) -> np.ndarray:
    """Downsample instance labels by ``f``: each output pixel takes the label covering most of its
    f × f block, where labels cover at least half of it (0 elsewhere), like the area-fraction masks."""
    h, w = labels.shape[0] // f, labels.shape[1] // f
    block = labels[: h * f, : w * f].reshape(h, f, w, f).transpose(0, 2, 1, 3).reshape(h, w, f * f)
    votes = (block[..., :, None] == block[..., None, :]).sum(-1) * (block > 0)
    best = votes.argmax(-1)[..., None]
    winner = np.take_along_axis(block, best, -1)[..., 0]
    return np.where(2 * np.take_along_axis(votes, best, -1)[..., 0] >= f * f, winner, 0).astype(np.int32)


def _resample(region: Region, tile_px: int, factor: float) -> dict[str, np.ndarray]:
    """Level-0 region -> tile at the target mpp (integer factors exactly; others via skimage)."""
    f = int(round(factor))
    if abs(factor - f) < 1e-9:
        image = np.rint(_pool_mean(region.rgb.astype(np.float32), f)).astype(np.uint8)
        frac = {k: _pool_mean(getattr(region, k).astype(np.float32), f) for k in ("nucleus", "boundary")}
        stained = _pool_mean((region.boundary & (region.membrane > 0)).astype(np.float32), f)
        od = _pool_mean(region.membrane, f)
        cells = region.cells[f // 2::f, f // 2::f][:tile_px, :tile_px]
        nuclei = _majority_labels(region.nuclei, f)[:tile_px, :tile_px]
    else:
        from skimage.transform import resize

        shape = (tile_px, tile_px)
        image = np.clip(np.rint(resize(region.rgb.astype(np.float32), (*shape, 3), order=1, anti_aliasing=True,
                                       preserve_range=True)), 0, 255).astype(np.uint8)
        frac = {k: resize(getattr(region, k).astype(np.float32), shape, order=1, anti_aliasing=True)
                for k in ("nucleus", "boundary")}
        stained = resize((region.boundary & (region.membrane > 0)).astype(np.float32), shape, order=1,
                         anti_aliasing=True)
        od = resize(region.membrane, shape, order=1, anti_aliasing=True).astype(np.float32)
        cells = resize(region.cells, shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.int32)
        nearest = resize(region.nuclei, shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.int32)
        nuclei = np.where(frac["nucleus"] >= 0.5, nearest, 0)
    return {
        "image": image,
        "membrane": stained >= 0.25,          # thin structure: kept where a quarter of the pixel is stained
        "membrane_all": frac["boundary"] >= 0.25,
        "membrane_od": od.astype(np.float32),
        "nucleus": frac["nucleus"] >= 0.5,
        "cells": cells.astype(np.int32),
        "tumour": cells > 0,
        "nuclei": nuclei.astype(np.int32),
    }


def _nucleus_kinds(layout) -> np.ndarray:
    """``nucleus_kind`` per nucleus label (see :data:`NUCLEUS_KINDS`; label = index, 0 first)."""
    from .layout import LYMPHOCYTE

    other = np.where(layout.nuclei.kind == LYMPHOCYTE, NUCLEUS_KINDS["lymphocyte"], NUCLEUS_KINDS["stroma"])
    return np.concatenate([[0], np.full(len(layout.cells), NUCLEUS_KINDS["tumour"]), other]).astype(np.int8)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``rgb`` through the scanner's JPEG (YCbCr, 2×2 chroma subsampling, as in the SVS files)."""
    import imagecodecs

    data = imagecodecs.jpeg8_encode(rgb, level=quality, colorspace="RGB", outcolorspace="YCBCR", subsampling="420")
    return imagecodecs.jpeg8_decode(data)


def _families(family: str | Sequence[str] | None) -> list[str | None]:
    names = [None] if family is None else [family] if isinstance(family, str) else list(family)
    if not names:
        raise ValueError("give at least one style family")
    for name in names:
        if name is not None:
            family_named(name)
    return names


def tile_name(i: int, family: str | None = None) -> str:
    """File name of tile ``i``: v1 tiles keep their old names; family tiles carry the family."""
    return f"tile_{i:05d}.npz" if family is None else f"tile_{family}_{i:05d}.npz"


def make_training_tiles(n: int, out_dir: str | os.PathLike, tile_px: int = 256, mpp: float = 0.5,
                        seed: int = 0, first: int = 0, family: str | Sequence[str] | None = None) -> list[Path]:
    """Write ``n`` tiles (:func:`tile_name`) with ``image`` (uint8 RGB at ``mpp``), ``membrane``
    (stained membrane, bool), ``membrane_all`` (every tumour-cell membrane, stained or not),
    ``membrane_od`` (designed DAB OD, float32), ``nucleus`` (bool), ``cells`` (int32 tumour-cell
    instance labels, 0 = none), ``tumour`` (bool), ``cell_class`` (int8 breast class per label,
    -1 for label 0 and absent cells), ``mpp``, ``nuclei`` (int32 instance labels of every nucleus:
    a tumour cell's nucleus has its cell's label, other nuclei labels above every cell label),
    ``nucleus_kind`` (int8 per nucleus label, :data:`NUCLEUS_KINDS`) and ``family`` (the style
    family's name, "v1" without one).

    ``family``: None (v1 tiles), a family name, or several names used in turn (tile ``i`` takes
    ``family[i % len(family)]``). Tile ``i`` is deterministic for ``(seed, i, family)`` and the
    same whichever mix it is made in, so tiles ``first .. first + n - 1`` can be made in parallel
    chunks, and files already there are kept (a cache that an interrupted run resumes)."""
    from ..scoring import ScoringRules, classify_cells

    if mpp < LEVEL0_MPP:
        raise ValueError(f"tile mpp {mpp} is finer than the generator's level 0 ({LEVEL0_MPP} µm/px)")
    names = _families(family)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    factor = mpp / LEVEL0_MPP
    size0 = int(round(tile_px * factor))
    paths = []
    for i in range(first, first + n):
        name = names[i % len(names)]
        path = out / tile_name(i, name)
        paths.append(path)
        if path.exists():
            continue
        if name is None:
            rng, spec_seed = np.random.default_rng([seed, i]), seed * 100003 + i
        else:
            code = FAMILIES[name].code
            rng, spec_seed = np.random.default_rng([seed, i, code]), code * 10**9 + seed * 100003 + i
        spec = random_tile_spec(rng, size0 * LEVEL0_MPP, spec_seed, family=name)
        scene, cells = build_scene(spec, block=1024)
        region = render_region(scene, 0, 0, size0, size0, nuclei=True)
        if name is not None:
            region = replace(region, rgb=_jpeg(region.rgb, spec.look.jpeg_quality))
        arrays = _resample(region, tile_px, factor)
        codes = classify_cells(cells["membrane_dab_od"], cells["completeness"], cells["lateral"], ScoringRules(),
                               "breast")
        cls = np.full(len(codes) + 1, -1, np.int8)
        cls[1:] = codes
        tmp = path.with_name(path.stem + ".partial.npz")
        np.savez_compressed(tmp, **arrays, cell_class=cls, mpp=np.float32(mpp),
                            nucleus_kind=_nucleus_kinds(scene.layout), family=np.str_(name or "v1"))
        os.replace(tmp, path)
    return paths
