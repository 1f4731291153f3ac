"""Real annotated nuclei as a training source for the v2 network.

Rendering one H&E image as an IHC field takes ~0.5–1.5 s (the H&E fit and the membrane
drawing), as long as a training step, so each training image is rendered ``variants`` times
once, into a cache beside the synthetic tiles, and training draws from those renders; the
augmentation (scale, rotation, stain jitter, blur, noise, JPEG, extra DAB) varies them further.
The fixed validation images (her2slide.datasets.nuclei.VALIDATION) are never rendered here.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from her2slide.datasets.nuclei import NucleiImage, ihc_like_sample, nuclei_index, split
from her2slide.errors import InputError
from her2slide.model.training.data import Sample
from her2slide.model.training.sources import Source

#: Renders per training image in the cache (seeded by image and variant).
VARIANTS = 12


def render_cache(entries: list[NucleiImage], work_mpp: float, cache: Path, variants: int = VARIANTS,
                 seed: int = 0) -> list[Path]:
    """``variants`` IHC-like renders of every entry as .npz (``image``, ``nuclei``), each seeded by
    its image's name and variant number (not by list position); renders already in the cache are
    kept, so an interrupted run resumes."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for entry in entries:
        for variant in range(variants):
            path = cache / f"{entry.folder}__{entry.name}__{variant:02d}.npz"
            paths.append(path)
            if path.exists():
                continue
            image, nuclei = ihc_like_sample(entry, np.random.default_rng([seed, zlib.crc32(f"{entry.folder}/{entry.name}".encode()), variant]), work_mpp)
            tmp = path.with_name(path.stem + ".partial.npz")
            np.savez_compressed(tmp, image=image, nuclei=nuclei.astype(np.int32))
            os.replace(tmp, path)
    return paths


def load_render(path: Path) -> Sample:
    """A cached render as a sample: nuclei annotated, membrane and tumour not (the real sets
    outline nuclei only)."""
    with np.load(path) as data:
        image, nuclei = data["image"], data["nuclei"]
    target = np.zeros((3, *image.shape[:2]), np.float32)
    target[1] = nuclei > 0
    return Sample(image, target, np.array([False, True, False]), nuclei)


def real_nuclei_source(folder: Path, work_mpp: float, weight: float, cache: Path) -> Source:
    """The training images of the real nucleus sets under ``folder`` (its validation images
    excluded), rendered IHC-like into ``cache``."""
    if not Path(folder).is_dir():
        raise InputError(folder, "real nucleus sets not found (expected ../shared/data/nuclei)")
    train, _ = split(nuclei_index(Path(folder)))
    paths = render_cache(train, work_mpp, Path(cache) / f"real-nuclei-{work_mpp:g}")
    return Source("real-nuclei", weight, lambda rng: load_render(paths[int(rng.integers(len(paths)))]))
