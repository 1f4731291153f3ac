"""Training samples for the membrane network: synthetic tiles, a lab's tiles, QuPath cells.

Every source becomes the same sample: an RGB tile at the model's mpp, a (3, H, W) float
target for (membrane, nucleus, tumour) and a per-channel validity flag, so a lab that has
drawn only nuclei or only tumour regions still trains the channels it has. ``membrane``
is the boundary of every tumour cell, stained or not: the network finds where a membrane
is, and the DAB measured there (from the image, never from the network) says how much
stain it carries.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.draw import polygon as fill_polygon
from skimage.segmentation import find_boundaries

from her2slide.errors import InputError
from her2slide.model.checkpoint import OUTPUTS
from her2slide.stain import StainModel, od_to_rgb, rgb_to_od
from her2slide.synth.scanner import jpeg_roundtrip


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (H, W, 3) uint8
    target: np.ndarray  # (3, H, W) float32 in [0, 1], channels OUTPUTS
    valid: np.ndarray  # (3,) bool: which channels are annotated
    nuclei: np.ndarray | None = None  # (H, W) int32 nucleus instances (0 = none), where annotated


def load_npz_sample(path: Path) -> Sample:
    """A synthetic training tile (her2slide.synth.tiles) or a lab tile saved the same way."""
    with np.load(path) as data:
        image = data["image"]
        names = {"membrane": "membrane_all", "nucleus": "nucleus", "tumour": "tumour"}
        present = [names[c] in data or c in data for c in OUTPUTS]
        target = np.zeros((3, *image.shape[:2]), np.float32)
        for i, channel in enumerate(OUTPUTS):
            key = names[channel] if names[channel] in data else channel
            if present[i]:
                target[i] = data[key]
        nuclei = data["nuclei"].astype(np.int32) if "nuclei" in data else None
    return Sample(image, target, np.array(present), nuclei)


def load_png_sample(image_path: Path) -> Sample:
    """``NAME.png`` with optional masks ``NAME_membrane.png``, ``NAME_nucleus.png``, ``NAME_tumour.png``
    (non-zero = foreground). A missing mask marks its channel unannotated."""
    image = np.asarray(Image.open(image_path).convert("RGB"))
    target = np.zeros((3, *image.shape[:2]), np.float32)
    valid = np.zeros(3, bool)
    for i, channel in enumerate(OUTPUTS):
        mask_path = image_path.with_name(f"{image_path.stem}_{channel}.png")
        if mask_path.exists():
            mask = np.asarray(Image.open(mask_path).convert("L")) > 0
            if mask.shape != image.shape[:2]:
                raise InputError(mask_path, f"mask is {mask.shape}, image is {image.shape[:2]}")
            target[i], valid[i] = mask, True
    if not valid.any():
        raise InputError(image_path, "no masks beside the image (expected NAME_membrane.png, _nucleus.png or _tumour.png)")
    return Sample(image, target, valid)


def lab_samples(folder: Path) -> list[Sample]:
    """All tiles of a lab's folder: ``*.npz`` as written by the synthetic generator, and
    ``*.png`` images with their masks (mask files themselves are skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "training tile folder not found")
    samples = [load_npz_sample(p) for p in sorted(folder.glob("*.npz"))]
    masks = tuple(f"_{c}" for c in OUTPUTS)
    samples += [load_png_sample(p) for p in sorted(folder.glob("*.png")) if not p.stem.endswith(masks)]
    if not samples:
        raise InputError(folder, "no training tiles (*.npz, or *.png with masks)")
    return samples


def qupath_samples(slide_path: Path, geojson_path: Path, work_mpp: float, tile_px: int = 256) -> list[Sample]:
    """Tiles cut from a slide where cells were exported from QuPath as GeoJSON.

    Cells (objectType "cell": geometry = cell outline, nucleusGeometry = nucleus) must be
    annotated exhaustively inside the area they cover, because every unannotated pixel there
    is taught as "no membrane". Cell outlines become the membrane and tumour targets;
    ``nucleusGeometry`` the nucleus target (unannotated if no cell has one). Annotations
    classified "Tumor"/"Tumour" add tumour area.
    """
    from her2slide.slide import open_slide

    features = _read_features(geojson_path)
    cells = [f for f in features if _object_type(f) in ("cell", "detection")]
    tumour_regions = [f for f in features if _object_type(f) == "annotation" and _class_name(f) in ("tumor", "tumour")]
    if not cells:
        raise InputError(geojson_path, "no cell objects to train from (export cells from QuPath as GeoJSON)")
    reader = open_slide(slide_path)
    ds = work_mpp / reader.mpp
    outlines = [_rings(f["geometry"]) for f in cells]
    nuclei = [_rings(f["nucleusGeometry"]) if f.get("nucleusGeometry") else [] for f in cells]
    all_xy = np.concatenate([ring for rings in outlines for ring in rings])
    x0, y0 = all_xy.min(axis=0)
    x1, y1 = all_xy.max(axis=0)
    step = tile_px * ds
    samples = []
    for ty in np.arange(y0, y1, step):
        for tx in np.arange(x0, x1, step):
            image = reader.read_at_mpp(int(tx), int(ty), int(step), int(step), work_mpp)[:tile_px, :tile_px]
            origin = np.array([int(tx), int(ty)], float)
            # Rasterised with a one-pixel halo, so an outline on the tile's edge (always the case
            # for the first row and column of tiles, which start at the cells' bounding box) is
            # still a membrane, while a cell cut by the edge has none there.
            halo = (image.shape[0] + 2, image.shape[1] + 2)
            labels = _rasterise(outlines, origin - ds, ds, halo)
            membrane = (find_boundaries(labels, mode="inner") & (labels > 0))[1:-1, 1:-1]
            labels = labels[1:-1, 1:-1]
            nucleus = _rasterise(nuclei, origin, ds, image.shape[:2]) > 0
            tumour = (labels > 0) | (_rasterise([_rings(f["geometry"]) for f in tumour_regions], origin, ds,
                                                image.shape[:2]) > 0)
            target = np.stack([membrane, nucleus, tumour]).astype(np.float32)
            samples.append(Sample(image, target, np.array([True, any(nuclei), True])))
    reader.close()
    return samples


def _read_features(path: Path) -> list[dict]:
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not readable GeoJSON ({exc.__class__.__name__})") from None
    if isinstance(data, dict):
        data = data.get("features", [data])
    return [f for f in data if isinstance(f, dict) and f.get("geometry")]


def _object_type(feature: dict) -> str:
    return str(feature.get("properties", {}).get("objectType", "annotation")).lower()


def _class_name(feature: dict) -> str:
    classification = feature.get("properties", {}).get("classification") or {}
    return str(classification.get("name", "")).lower()


def _rings(geometry: dict) -> list[np.ndarray]:
    """Exterior rings of a Polygon or MultiPolygon, as (n, 2) level-0 (x, y) arrays."""
    if geometry["type"] == "Polygon":
        return [np.asarray(geometry["coordinates"][0], float)]
    if geometry["type"] == "MultiPolygon":
        return [np.asarray(poly[0], float) for poly in geometry["coordinates"]]
    return []


def _rasterise(objects: list[list[np.ndarray]], origin: np.ndarray, ds: float, shape: tuple[int, int]) -> np.ndarray:
    """Label image (object k -> k + 1) of polygons in level-0 px, drawn at working resolution."""
    labels = np.zeros(shape, np.int32)
    for k, rings in enumerate(objects):
        for ring in rings:
            xy = (ring - origin) / ds - 0.5
            rr, cc = fill_polygon(xy[:, 1], xy[:, 0], shape)
            labels[rr, cc] = k + 1
    return labels


@dataclass(frozen=True)
class Augment:
    """Random changes a lab's scanner and stain make, applied to one sample.

    Scale 0.4–0.6 µm/px around the 0.5 the model works at, flips and right-angle
    rotations, stain jitter in optical-density space (each stain's amount scaled and
    shifted, as Tellez et al. 2018 do in HED space), defocus blur, sensor noise and JPEG.
    """

    out_px: int = 256
    mpp_range: tuple[float, float] = (0.4, 0.6)
    model_mpp: float = 0.5
    stain_scale: float = 0.3
    stain_shift: float = 0.03
    blur_probability: float = 0.3
    jpeg_probability: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        image, target, nuclei = self._scale_and_crop(sample, rng)
        k = int(rng.integers(4))
        image, target = np.rot90(image, k, axes=(0, 1)), np.rot90(target, k, axes=(1, 2))
        nuclei = None if nuclei is None else np.rot90(nuclei, k)
        if rng.random() < 0.5:
            image, target = image[:, ::-1], target[:, :, ::-1]
            nuclei = None if nuclei is None else nuclei[:, ::-1]
        image = self._stain_jitter(image, rng)
        if rng.random() < self.blur_probability:
            image = ndi.gaussian_filter(image, sigma=(rng.uniform(0.5, 1.5),) * 2 + (0,))
        image = image + rng.normal(0, rng.uniform(0, 4), image.shape)
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        if rng.random() < self.jpeg_probability:
            image = jpeg_roundtrip(image, int(rng.integers(50, 96)))
        nuclei = None if nuclei is None else np.ascontiguousarray(nuclei)
        return Sample(np.ascontiguousarray(image), np.ascontiguousarray(target, dtype=np.float32), sample.valid, nuclei)

    def _scale_and_crop(self, sample: Sample,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Crop a window that, resized to ``out_px``, shows the tissue at a random mpp (nucleus
        instances resampled by nearest neighbour, so they stay instances)."""
        h, w = sample.image.shape[:2]
        zoom = self.model_mpp / rng.uniform(*self.mpp_range)  # >1 magnifies
        size = min(int(round(self.out_px / zoom)), h, w)
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        image = sample.image[y:y + size, x:x + size].astype(np.float32)
        target = sample.target[:, y:y + size, x:x + size]
        nuclei = None if sample.nuclei is None else sample.nuclei[y:y + size, x:x + size]
        if size == self.out_px:
            return image, target, nuclei
        image = np.stack([_resize(image[..., c], self.out_px, Image.BILINEAR) for c in range(3)], axis=-1)
        target = np.stack([_resize(t, self.out_px, Image.BILINEAR) for t in target])
        if nuclei is not None:
            nuclei = _resize(nuclei, self.out_px, Image.NEAREST)
        return image, np.clip(target, 0, 1), nuclei

    def _stain_jitter(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        unmix = StainModel.default().unmixing
        scale = np.diag(np.r_[rng.uniform(1 - self.stain_scale, 1 + self.stain_scale, 2), 1.0])
        shift = np.r_[rng.uniform(-self.stain_shift, self.stain_shift, 2), 0.0]
        amounts = rgb_to_od(np.clip(image, 0, 255).astype(np.uint8)) @ unmix
        od = (amounts @ scale + shift) @ np.linalg.inv(unmix)
        return od_to_rgb(np.maximum(od, 0)).astype(np.float32) * rng.uniform(0.95, 1.03, 3)


def _resize(plane: np.ndarray, size: int, resample: int) -> np.ndarray:
    """A square plane resized to ``size`` by Pillow (float32 or int32 kept; ~20x faster than
    scipy's zoom, which made the augmentation the bottleneck of training)."""
    mode = "I" if plane.dtype.kind in "iu" else "F"
    dtype = np.int32 if mode == "I" else np.float32
    resized = Image.fromarray(plane.astype(dtype), mode=mode).resize((size, size), resample)
    return np.asarray(resized, dtype=dtype)
