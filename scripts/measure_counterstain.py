#!/usr/bin/env python3
"""Nuclear haematoxylin of the real IHC cores and of the H&E nuclei sets: what the IHC-like
rendering's counterstain scale (her2slide.synth.restain.he_to_ihc) rests on.

    python3 scripts/measure_counterstain.py [--data ../shared/data] [--json OUT]

At the pipeline's working resolution (0.5 µm/px), the median haematoxylin amount (OD along the
unit haematoxylin vector) over nucleus pixels:

- IHC cores (--mpp 0.25): the slide's stain model as the pipeline estimates it; nuclei where the
  classical segmenter finds them (no annotations exist);
- H&E images: haematoxylin from the per-image H&E separation (restain.he_stain_model); nuclei from
  the annotations;
- both, like for like: nuclei where the haematoxylin exceeds its Otsu threshold over the tissue
  (smoothed stain OD above ``cells.tissue_od``, as the classical segmenter defines tissue).

Also the glass white point of each core as the pipeline estimates it, and why the H&E separation
is fitted per image: for the MoNuSeg and CPM-15 images at native resolution, the OD of the
annotated nuclei left outside the H–E plane (the residual) and the haematoxylin of the tissue
between nuclei (> 1.5 µm from any) relative to the nuclei's, with scikit-image's fixed H&E vectors
and with the per-image fit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb_from_hed
from skimage.filters import gaussian, threshold_otsu

from her2slide.cells import classical_maps
from her2slide.config import Settings
from her2slide.datasets.nuclei import nuclei_index, resample
from her2slide.datasets.shared_data import shared_data_dir
from her2slide.run.stain_sample import sample_patches, slide_stain_model
from her2slide.slide import detect_tissue, open_slide
from her2slide.stain import HAEMATOXYLIN_RGB_OD, StainModel, stain_amounts
from her2slide.synth.restain import he_stain_model, nuclear_haematoxylin

WORK_MPP = 0.5


def core_levels(path: Path, settings: Settings) -> dict:
    """Nuclear haematoxylin of one IHC core, as the pipeline sees it."""
    reader = open_slide(path, mpp=0.25)
    thumb, thumb_mpp = reader.thumbnail(settings.tiling.tissue_mpp)
    mask = detect_tissue(thumb, thumb_mpp, level0_mpp=reader.mpp)
    stain = slide_stain_model(sample_patches(reader, mask, settings), settings)
    rgb = reader.read_at_mpp(0, 0, *reader.dimensions, WORK_MPP)
    maps = classical_maps(rgb, stain, settings.cells, WORK_MPP)
    haem, otsu = _otsu_nuclei(rgb, stain, settings)
    return {"image": path.name[:10], "nuclear_h": round(nuclear_haematoxylin(haem, maps.nucleus > 0.5), 4),
            "otsu_nuclear_h": round(nuclear_haematoxylin(haem, otsu), 4),
            "white": [round(float(v), 1) for v in stain.white]}


def he_levels(entry, settings: Settings) -> dict:
    """Nuclear haematoxylin of one H&E image: under its annotations and under the Otsu threshold."""
    rgb, labels = resample(*entry.load(), entry.mpp, WORK_MPP)
    haem, otsu = _otsu_nuclei(rgb, he_stain_model(rgb), settings)
    return {"set": entry.folder, "image": entry.name, "nuclear_h": round(nuclear_haematoxylin(haem, labels), 4),
            "otsu_nuclear_h": round(nuclear_haematoxylin(haem, otsu), 4)}


def separation(entry) -> dict:
    """Residual OD of the nuclei and between-nuclei / nuclear haematoxylin, fixed vs fitted vectors."""
    rgb, labels = entry.load()
    nuclei = labels > 0
    between = ~ndi.binary_dilation(nuclei, iterations=max(1, round(1.5 / entry.mpp))) & (rgb.sum(axis=-1) < 600)
    fixed = StainModel(HAEMATOXYLIN_RGB_OD / np.linalg.norm(HAEMATOXYLIN_RGB_OD),
                       rgb_from_hed[1] / np.linalg.norm(rgb_from_hed[1]), np.full(3, 255.0))
    row = {}
    for name, model in (("fixed", fixed), ("fitted", he_stain_model(rgb))):
        amounts = stain_amounts(rgb, model)
        row[f"{name}_residual_od"] = float(np.median(np.abs(amounts[..., 2][nuclei])))
        row[f"{name}_between_over_nuclear_h"] = float(np.median(amounts[..., 0][between])
                                                      / np.median(amounts[..., 0][nuclei]))
    return row


def _otsu_nuclei(rgb: np.ndarray, stain: StainModel, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin amount and the pixels above its Otsu threshold over the tissue."""
    amounts = stain_amounts(rgb, stain)
    haem = amounts[..., 0]
    tissue = gaussian(haem + amounts[..., 1], sigma=1.0 / WORK_MPP, preserve_range=True) > settings.cells.tissue_od
    return haem, tissue & (haem > threshold_otsu(haem[tissue]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    data = args.data or shared_data_dir()
    if not (data / "her2-ihc-oesophagus-tma").is_dir() or not (data / "nuclei").is_dir():
        print(f"her2slide: {data}: the shared real data (her2-ihc-oesophagus-tma, nuclei) are not there", file=sys.stderr)
        return 1
    settings = Settings()
    cores = [core_levels(p, settings) for p in sorted((data / "her2-ihc-oesophagus-tma").glob("*.jpg"))]
    for row in cores:
        print(json.dumps(row), flush=True)
    images = [he_levels(e, settings) for e in nuclei_index(data / "nuclei")]
    summary = {}
    for folder in sorted({r["set"] for r in images}):
        rows = [r for r in images if r["set"] == folder]
        for key in ("nuclear_h", "otsu_nuclear_h"):
            values = np.array([r[key] for r in rows])
            summary[f"{folder}.{key}"] = {"median": round(float(np.median(values)), 3),
                                          "min": round(float(values.min()), 3), "max": round(float(values.max()), 3)}
    quality = [separation(e) for e in nuclei_index(data / "nuclei") if e.folder != "dsb2018-tissue"]
    for key in quality[0]:
        values = np.array([q[key] for q in quality])
        summary[f"separation.{key}"] = {"median": round(float(np.median(values)), 3),
                                        "min": round(float(values.min()), 3), "max": round(float(values.max()), 3)}
    ihc = np.array([r["otsu_nuclear_h"] for r in cores])
    he = np.array([r["otsu_nuclear_h"] for r in images])
    summary["he_over_ihc_otsu"] = {"median": round(float(np.median(he) / np.median(ihc)), 2),
                                   "min": round(float(he.min() / ihc.max()), 2),
                                   "max": round(float(he.max() / ihc.min()), 2)}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "images": images, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
