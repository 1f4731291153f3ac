"""A tiny stand-in for the shared nuclei sets: H&E-like images of round nuclei with their labels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import disk

from her2slide.stain import StainModel, compose_rgb
from her2slide.synth.restain import EOSIN_RGB_OD


def disc_labels(radius_px: float, shape: tuple[int, int] = (200, 200), step: int = 40) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate((y, x) for y in range(20, shape[0], step) for x in range(20, shape[1], step)):
        labels[disk((y, x), radius_px, shape=shape)] = k + 1
    return labels


def fake_he(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Haematoxylin nuclei where ``labels`` > 0, eosin between them, a little noise."""
    he = StainModel(StainModel.default().haematoxylin, EOSIN_RGB_OD / np.linalg.norm(EOSIN_RGB_OD), np.full(3, 255.0))
    rng = np.random.default_rng(seed)
    haem = np.where(labels > 0, 0.6, 0.05) + rng.normal(0, 0.02, labels.shape)
    eosin = np.where(labels > 0, 0.1, 0.3) + rng.normal(0, 0.02, labels.shape)
    return compose_rgb(np.clip(haem, 0, None), np.clip(eosin, 0, None), he)


def write_nuclei_image(root: Path, folder: str, name: str, labels: np.ndarray) -> None:
    """``root/folder/name.png`` (fake H&E) and ``name_labels.png``, as the shared sets store them."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(fake_he(labels)).save(root / folder / f"{name}.png")
    Image.fromarray(labels.astype(np.uint16)).save(root / folder / f"{name}_labels.png")


def write_fake_nuclei_set(root: Path) -> None:
    """A tiny nuclei folder: one MoNuSeg-like image with a stated pixel size, one DSB-like without."""
    rows = [("monuseg-train", "TCGA-A7-A13F-01Z-00-DX1", "0.25", 8.0), ("dsb2018-tissue", "abc", "", 16.0)]
    for folder, name, _, radius in rows:
        write_nuclei_image(root, folder, name, disc_labels(radius))
    with open(root / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["folder", "name", "source", "mpp", "nuclei", "split"])
        for folder, name, mpp, _ in rows:
            writer.writerow([folder, name, "test, with a comma", mpp, 25, "train"])
