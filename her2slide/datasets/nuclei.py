"""The real annotated nuclei of the shared data (../shared/data/nuclei), as IHC-like samples.

56 H&E images with every nucleus outlined (MoNuSeg 2018 training set, CPM-15, the stained-tissue
images of the Data Science Bowl 2018; licences in the shared data's README). Here they are
indexed with their pixel size, resampled to a working resolution, split into training and a
FIXED validation set of whole images, and rendered as HER2 IHC fields (:func:`ihc_like_sample`):
eosin dropped, haematoxylin at an IHC counterstain level, synthetic membrane DAB or none
(her2slide.synth.restain), with the real nuclei as targets.

The DSB images state no pixel size: each one's is estimated from its median nucleus area
against the median nucleus area of the MoNuSeg images in µm² (:func:`estimate_mpp`). That
assumes their nuclei are as large as MoNuSeg's, so those images are used for training only.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from her2slide.datasets.shared_data import shared_data_dir
from her2slide.errors import InputError
from her2slide.stain import DAB_RGB_OD, HAEMATOXYLIN_RGB_OD
from her2slide.synth.restain import MembraneStyle, ihc_like
from her2slide.synth.scanner import jpeg_roundtrip

#: Images never trained on: nucleus detection is validated on them (issue 14). Whole images,
#: chosen once across organs and scanners; DSB has none (its pixel size is only estimated).
VALIDATION = {
    "monuseg-train": ("TCGA-A7-A13F-01Z-00-DX1", "TCGA-AY-A8YK-01A-01-TS1", "TCGA-B0-5711-01Z-00-DX1",
                      "TCGA-G9-6362-01Z-00-DX1", "TCGA-DK-A2I6-01A-01-TS1", "TCGA-38-6178-01Z-00-DX1",
                      "TCGA-RD-A8N9-01A-01-TS1", "TCGA-HE-7130-01Z-00-DX1"),
    "cpm15": ("image03", "image07", "image10", "image14"),
    "dsb2018-tissue": (),
}
#: The set whose stated pixel size calibrates the estimate for images that state none.
_REFERENCE_FOLDER = "monuseg-train"


@dataclass(frozen=True)
class NucleiImage:
    """One annotated image of the index: where it is, its set, its pixel size and where that came from."""

    folder: str
    name: str
    source: str
    mpp: float
    mpp_source: str  # "stated" (index.csv) or "estimated" (from nucleus sizes)
    root: Path

    @property
    def image_path(self) -> Path:
        return self.root / self.folder / f"{self.name}.png"

    @property
    def labels_path(self) -> Path:
        return self.root / self.folder / f"{self.name}_labels.png"

    @property
    def validation(self) -> bool:
        return self.name in VALIDATION.get(self.folder, ())

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8, nucleus instance labels int32) at the image's own pixel size."""
        rgb = np.asarray(Image.open(self.image_path).convert("RGB"))
        labels = np.asarray(Image.open(self.labels_path)).astype(np.int32)
        if labels.shape != rgb.shape[:2]:
            raise InputError(self.labels_path, f"labels are {labels.shape}, the image is {rgb.shape[:2]}")
        return rgb, labels


def nuclei_index(root: Path | None = None) -> list[NucleiImage]:
    """Every image of ``root`` (default ``shared_data_dir() / "nuclei"``) in index.csv order,
    with a pixel size for each: stated, or estimated (:func:`estimate_mpp`)."""
    root = Path(root) if root is not None else shared_data_dir() / "nuclei"
    index = root / "index.csv"
    if not index.is_file():
        raise InputError(index, "nuclei index not found (the real nuclei live in ../shared/data/nuclei)")
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f))
    reference = reference_nucleus_area_um2(root)
    entries = []
    for row in rows:
        stated = row["mpp"].strip()
        entry = NucleiImage(row["folder"], row["name"], row["source"], float(stated) if stated else 0.0,
                            "stated" if stated else "estimated", root)
        if not stated:
            entry = NucleiImage(entry.folder, entry.name, entry.source,
                                estimate_mpp(entry.load()[1], reference), "estimated", root)
        entries.append(entry)
    return entries


def split(entries: list[NucleiImage]) -> tuple[list[NucleiImage], list[NucleiImage]]:
    """(training, validation) by :data:`VALIDATION`."""
    return [e for e in entries if not e.validation], [e for e in entries if e.validation]


def nucleus_areas_px(labels: np.ndarray) -> np.ndarray:
    """Pixel count of every nucleus present in ``labels``."""
    counts = np.bincount(labels.ravel())[1:]
    return counts[counts > 0]


@cache
def reference_nucleus_area_um2(root: Path) -> float:
    """Median nucleus area (µm²) over all nuclei of the MoNuSeg images, at their stated pixel size."""
    areas = []
    with open(root / "index.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["folder"] == _REFERENCE_FOLDER and row["mpp"].strip():
                labels = np.asarray(Image.open(root / row["folder"] / f"{row['name']}_labels.png"))
                areas.append(nucleus_areas_px(labels) * float(row["mpp"]) ** 2)
    if not areas:
        raise InputError(root / "index.csv", f"no {_REFERENCE_FOLDER} images with a pixel size to calibrate on")
    return float(np.median(np.concatenate(areas)))


def estimate_mpp(labels: np.ndarray, reference_area_um2: float) -> float:
    """Pixel size that gives this image's median nucleus the reference median area."""
    return float(np.sqrt(reference_area_um2 / np.median(nucleus_areas_px(labels))))


def resample(rgb: np.ndarray, labels: np.ndarray, mpp: float, work_mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """Image and labels at ``work_mpp``: the image area-averaged (bilinear when enlarging, as the
    slide reader does), the labels by nearest sampling at the same output pixel centres."""
    h, w = labels.shape
    out_w, out_h = max(1, round(w * mpp / work_mpp)), max(1, round(h * mpp / work_mpp))
    if (out_h, out_w) == (h, w):
        return rgb, labels
    method = Image.Resampling.BOX if out_w <= w else Image.Resampling.BILINEAR
    image = np.asarray(Image.fromarray(rgb).resize((out_w, out_h), method))
    rows = np.minimum(((np.arange(out_h) + 0.5) * h / out_h).astype(int), h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * w / out_w).astype(int), w - 1)
    return image, labels[np.ix_(rows, cols)]


@dataclass(frozen=True)
class IhcLikeRanges:
    """What :func:`ihc_like_sample` randomises, per image.

    ``counterstain_od``: nuclear haematoxylin, drawn log-uniformly (the real cores measure
    0.12–0.14; labs vary several-fold, so half to twice that). ``membrane_probability``: the
    chance of any synthetic membrane DAB; its class mix is drawn from a Dirichlet(0.5) over
    (none, faint, moderate, strong), so most images are dominated by one class, as real cases are.
    ``white_rgb``: glass per channel, around the real cores' (234, 233, 242). ``vector_jitter_deg``:
    haematoxylin and DAB directions tilted by up to this. ``noise_sd``: sensor noise, 8-bit levels.
    ``jpeg_probability`` and ``jpeg_quality``: compression as a scanner or export leaves it.
    """

    counterstain_od: tuple[float, float] = (0.06, 0.28)
    membrane_probability: float = 0.75
    white_rgb: tuple[tuple[float, float], ...] = ((222.0, 252.0), (221.0, 251.0), (230.0, 255.0))
    vector_jitter_deg: float = 4.0
    noise_sd: tuple[float, float] = (0.0, 3.0)
    jpeg_probability: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 96)


def ihc_like_sample(entry: NucleiImage, rng: np.random.Generator, work_mpp: float = 0.5,
                    ranges: IhcLikeRanges = IhcLikeRanges()) -> tuple[np.ndarray, np.ndarray]:
    """One training input from a real annotated image: (RGB uint8 IHC-like at ``work_mpp``,
    nucleus instance labels int32 at ``work_mpp``).

    Rendered at the image's own resolution (restain.ihc_like: counterstain level, white point,
    stain directions and membrane DAB drawn from ``ranges``), then resampled like a slide read
    (:func:`resample`), then sensor noise and JPEG. The targets are the real nuclei, whatever
    the DAB, so a network trained on these cannot learn that nuclei are where brown is.
    """

    rgb, labels = entry.load()
    low, high = np.log(ranges.counterstain_od)
    membranes = None
    if rng.random() < ranges.membrane_probability:
        membranes = MembraneStyle(class_weights=tuple(rng.dirichlet(np.full(4, 0.5))))
    white = [rng.uniform(*bounds) for bounds in ranges.white_rgb]
    image = ihc_like(rgb, labels, entry.mpp, rng, counterstain_od=float(np.exp(rng.uniform(low, high))),
                     membranes=membranes, white=white,
                     haematoxylin_vector=tilted(HAEMATOXYLIN_RGB_OD, ranges.vector_jitter_deg, rng),
                     dab_vector=tilted(DAB_RGB_OD, ranges.vector_jitter_deg, rng))
    image, labels = resample(image, labels, entry.mpp, work_mpp)
    noisy = image + rng.normal(0.0, rng.uniform(*ranges.noise_sd), image.shape)
    image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if rng.random() < ranges.jpeg_probability:
        image = jpeg_roundtrip(image, int(rng.integers(*ranges.jpeg_quality)))
    return image, labels


def tilted(vector: np.ndarray, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at most ``max_deg`` from ``vector``, in a random direction."""
    v = np.asarray(vector, dtype=np.float64) / np.linalg.norm(vector)
    away = rng.normal(size=3)
    away -= (away @ v) * v
    angle = np.radians(rng.uniform(0.0, max_deg))
    return np.cos(angle) * v + np.sin(angle) * away / np.linalg.norm(away)
