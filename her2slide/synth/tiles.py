"""Training tiles for the membrane network: synthetic images with exact masks at the model's mpp.

Each tile is a small full-field synthetic scene (tumour-rich, no glass) with randomised stain,
optics and class mixture, rendered at level-0 resolution (0.25 µm/px) and resampled to ``mpp``:
the image by area averaging, masks by area fraction, instance labels by nearest sampling at
the same pixel centres, so image and masks stay aligned.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .layout import KINDS, LayoutParams
from .render import Look, render_region
from .slides import MIXTURES, SlideSpec, build_scene

__all__ = ["make_training_tiles", "random_tile_spec"]

LEVEL0_MPP = 0.25


def _rotate(v: np.ndarray, rng: np.random.Generator, max_deg: float) -> tuple[float, float, float]:
    """Unit vector ``v`` tilted by up to ``max_deg`` in a random direction (stain-vector variation)."""
    axis = rng.normal(size=3)
    axis -= axis @ v * v
    axis /= np.linalg.norm(axis)
    a = np.radians(rng.uniform(0, max_deg))
    out = np.cos(a) * v + np.sin(a) * axis
    out = np.abs(out) / np.linalg.norm(out)
    return tuple(float(x) for x in out)


def random_tile_spec(rng: np.random.Generator, size_um: float, seed: int) -> SlideSpec:
    """A tumour-rich field with random architecture, class mixture and look (within plausible
    scanner/stain ranges around the calibrated defaults)."""
    from ..stain import StainModel

    d = StainModel.default()
    score = str(rng.choice(list(MIXTURES)))
    pattern = str(rng.choice(["homogeneous", "homogeneous", "mosaic"]))
    kw = dict(score=score) if pattern == "homogeneous" else dict(score=str(rng.choice(["0", "1+"])),
                                                                   fraction=float(rng.uniform(0.1, 0.6)))
    white = np.clip(np.array(Look().white) + rng.normal(0, 5, 3), 200, 255)
    look = Look(white=tuple(float(x) for x in white), haematoxylin=_rotate(d.haematoxylin, rng, 5),
                dab=_rotate(d.dab, rng, 5), blur_um=float(rng.uniform(0.3, 0.65)),
                noise_sd=tuple(float(x) for x in rng.uniform(0.8, 1.5, 3) * np.array([1.0, 1.0, 1.8])),
                membrane_width_um=float(rng.uniform(1.0, 1.7)),
                cytoplasm_dab_fraction=float(rng.uniform(0.03, 0.25)),
                chromatin=float(rng.uniform(0.12, 0.3)), ring_variation=float(rng.uniform(0.05, 0.2)))
    arch = rng.dirichlet([2, 2, 2])
    layout = LayoutParams(architecture=dict(zip(KINDS, arch.tolist())), tumour_fraction=float(rng.uniform(0.4, 0.7)),
                          nest_radius_um=(20.0, 55.0), sheet_radius_um=(55.0, 100.0), gland_radius_um=(30.0, 65.0))
    return SlideSpec(pattern=pattern, size_um=(size_um, size_um), seed=seed, full_field=True, layout=layout,
                     look=look, **kw)


def _pool_mean(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f, a.shape[1] // f
    return a[: h * f, : w * f].reshape(h, f, w, f, *a.shape[2:]).mean(axis=(1, 3), dtype=np.float32)


def _resample(region, tile_px: int, factor: float) -> dict[str, np.ndarray]:
    """Level-0 region -> tile at the target mpp (integer factors exactly; others via skimage)."""
    f = int(round(factor))
    if abs(factor - f) < 1e-9:
        image = np.rint(_pool_mean(region.rgb.astype(np.float32), f)).astype(np.uint8)
        frac = {k: _pool_mean(getattr(region, k).astype(np.float32), f) for k in ("nucleus", "boundary")}
        stained = _pool_mean((region.boundary & (region.membrane > 0)).astype(np.float32), f)
        od = _pool_mean(region.membrane, f)
        cells = region.cells[f // 2::f, f // 2::f][:tile_px, :tile_px]
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
    return {
        "image": image,
        "membrane": stained >= 0.25,          # thin structure: kept where a quarter of the pixel is stained
        "membrane_all": frac["boundary"] >= 0.25,
        "membrane_od": od.astype(np.float32),
        "nucleus": frac["nucleus"] >= 0.5,
        "cells": cells.astype(np.int32),
        "tumour": cells > 0,
    }


def make_training_tiles(n: int, out_dir: str | os.PathLike, tile_px: int = 256, mpp: float = 0.5,
                        seed: int = 0, first: int = 0) -> list[Path]:
    """Write ``n`` tiles ``tile_#####.npz`` with ``image`` (uint8 RGB at ``mpp``), ``membrane``
    (stained membrane, bool), ``membrane_all`` (every tumour-cell membrane, stained or not),
    ``membrane_od`` (designed DAB OD, float32), ``nucleus`` (bool), ``cells`` (int32 tumour-cell
    instance labels, 0 = none), ``tumour`` (bool), ``cell_class`` (int8 breast class per label,
    -1 for label 0 and absent cells) and ``mpp``. Tile ``i`` is deterministic for ``(seed, i)``, so
    tiles ``first .. first + n - 1`` can be made in parallel chunks, and files already there are kept
    (a cache that an interrupted run resumes)."""
    from ..scoring import ScoringRules, classify_cells

    if mpp < LEVEL0_MPP:
        raise ValueError(f"tile mpp {mpp} is finer than the generator's level 0 ({LEVEL0_MPP} µm/px)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    factor = mpp / LEVEL0_MPP
    size0 = int(round(tile_px * factor))
    paths = []
    for i in range(first, first + n):
        path = out / f"tile_{i:05d}.npz"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng([seed, i])
        spec = random_tile_spec(rng, size0 * LEVEL0_MPP, seed * 100003 + i)
        scene, cells = build_scene(spec, block=1024)
        region = render_region(scene, 0, 0, size0, size0)
        arrays = _resample(region, tile_px, factor)
        codes = classify_cells(cells["membrane_dab_od"], cells["completeness"], cells["lateral"], ScoringRules(),
                               "breast")
        cls = np.full(len(codes) + 1, -1, np.int8)
        cls[1:] = codes
        tmp = path.with_name(path.stem + ".partial.npz")
        np.savez_compressed(tmp, **arrays, cell_class=cls, mpp=np.float32(mpp))
        os.replace(tmp, path)
    return paths
