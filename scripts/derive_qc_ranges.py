"""Where the QC thresholds come from: what real slides of other labs and scanners, and synthetic
slides, show for each slide-level statistic QC judges (docs/roi_and_qc.md, "Where the thresholds
come from").

Derived from (never from the four real cores, which are only checked against the result):

* the real H&E nucleus sets in ../shared/data/nuclei (MoNuSeg: TCGA, 7 organs, many labs and
  scanners; CPM-15: TCGA glioma), with the eosin removed (her2slide.synth.from_he): unstained
  HER2 0 tissue as each scanner saw it. What QC reads as background DAB on them is what DAB-free
  tissue reads, whatever the scanner; their haematoxylin is how dark a counterstain gets. Each is
  also read through a warm and a cool white balance, which must not change what QC reads.
  (The DSB-2018 tissue images state no pixel size and are listed apart.)
* glass texture on thumbnails: the glass around whole slides (an H&E slide, CMU-1) and the pale
  tissue of no-glass fields (the nucleus sets), against the glass threshold of the tissue mask;
* the synthetic slides the default DAB thresholds were set on (her2slide.synth): their
  counterstain is the reference, and a 50% washout of each must fall below the washed_out limit.

The four real cores (../shared/data/her2-ihc-oesophagus-tma) are then read for comparison only.

    python3 scripts/derive_qc_ranges.py --out docs/qc_ranges.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from her2slide.config import Settings
from her2slide.slide import open_slide
from her2slide.slide.tissue import GLASS_MAX_TEXTURE_OD, absorbing, background_textures
from her2slide.synth.from_he import haematoxylin_only
from her2slide.synth.render import render_region
from her2slide.synth.scanner import BY_NAME
from her2slide.synth.slides import build_scene
from her2slide.synth.spec import SlideSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qc_survey import survey  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
Image.MAX_IMAGE_PIXELS = None
TONES = ("warm", "cool")
#: Background regions smaller than this (thumbnail px, 8 µm) are specks, not evidence of glass or tissue.
MIN_REGION_PX = 20


def _survey_rgb(rgb: np.ndarray, mpp: float, settings: Settings, folder: Path) -> dict:
    """QC's reading of an image (scripts/qc_survey.py), with the textures of its thumbnail's background regions."""
    path = folder / "image.png"
    Image.fromarray(rgb).save(path)
    thumb, _ = open_slide(path, mpp=mpp).thumbnail(settings.tiling.tissue_mpp)
    return {**survey(path, mpp, settings), "background_textures": [t for _, t in region_textures(thumb)]}


def nucleus_sets(data: Path, settings: Settings, folder: Path) -> list[dict]:
    """QC's reading of every nucleus-set image with its eosin removed, as scanned and under each tone."""
    rows = []
    with open(data / "nuclei" / "index.csv") as handle:
        for row in csv.DictReader(handle):
            rgb = haematoxylin_only(np.asarray(Image.open(data / "nuclei" / row["folder"] / f"{row['name']}.png")
                                               .convert("RGB")))
            mpp = float(row["mpp"]) if row["mpp"] else 0.25
            result = {"set": row["folder"], "name": row["name"], "mpp_stated": bool(row["mpp"]),
                      **_survey_rgb(rgb, mpp, settings, folder)}
            for tone in TONES:
                toned = _survey_rgb(BY_NAME[tone].apply(rgb), mpp, settings, folder)
                result[tone] = {key: toned[key] for key in ("counterstain_od", "background_dab_od")}
            rows.append(result)
            print(f"{row['folder']:15s} {row['name'][:24]:24s} counterstain {result['counterstain_od']} "
                  f"background DAB {result['background_dab_od']} white {result['stain']['white_point']}", flush=True)
    return rows


def region_textures(rgb: np.ndarray) -> list[tuple[int, float]]:
    """(size in thumbnail px, median texture) of each background region of an 8 µm/px thumbnail."""
    labels, texture = background_textures(~absorbing(rgb), rgb)
    sizes = np.bincount(labels.ravel())
    return [(int(sizes[k]), float(texture[k])) for k in range(1, len(texture)) if sizes[k] >= MIN_REGION_PX]


def glass_textures(data: Path, nuclei: list[dict], settings: Settings) -> dict:
    """Texture of glass (the largest background region of a slide with glass around its tissue)
    and of the background regions of no-glass fields (pale tissue of the nucleus sets)."""
    reader = open_slide(data / "slides" / "CMU-1-Small-Region.svs")
    thumb, _ = reader.thumbnail(settings.tiling.tissue_mpp)
    tissue = [t for row in nuclei if row["mpp_stated"] for t in row["background_textures"]]
    return {"glass": {"CMU-1-Small-Region.svs (H&E)": round(max(region_textures(thumb))[1], 4)},
            "pale_tissue_regions": len(tissue),
            "pale_tissue_min": round(min(tissue), 4) if tissue else None,
            "pale_tissue_p05": round(float(np.percentile(tissue, 5)), 4) if tissue else None,
            "threshold": GLASS_MAX_TEXTURE_OD}


def synthetic(settings: Settings, folder: Path) -> list[dict]:
    """Counterstain of the synthetic slides the DAB thresholds were set on, and of their 50% washouts."""
    rows = []
    for score in ("0", "1+", "2+", "3+"):
        spec = SlideSpec(pattern="homogeneous", score=score, size_um=(700.0, 700.0), mpp=0.25, seed=3)
        scene, _ = build_scene(spec)
        rgb = render_region(scene, 0, 0, *scene.shape).rgb
        plain = _survey_rgb(rgb, 0.25, settings, folder)
        washed = _survey_rgb(BY_NAME["washout 50%"].apply(rgb), 0.25, settings, folder)
        rows.append({"score": score, "counterstain_od": plain["counterstain_od"],
                     "background_dab_od": plain["background_dab_od"], "washout_counterstain_od": washed["counterstain_od"]})
        print(f"synthetic {score}: counterstain {plain['counterstain_od']}, washed {washed['counterstain_od']}", flush=True)
    return rows


def cores(data: Path, settings: Settings) -> list[dict]:
    """The four real cores, read for comparison (not used to set anything)."""
    rows = []
    for path in sorted((data / "her2-ihc-oesophagus-tma").glob("*.jpg")):
        result = survey(path, 0.25, settings)
        reader = open_slide(path, mpp=0.25)
        thumb, _ = reader.thumbnail(settings.tiling.tissue_mpp)
        rows.append({"core": path.stem[:10], **result, "glass_texture": max(region_textures(thumb))[1]})
        print(f"core {path.stem[:10]}: counterstain {result['counterstain_od']} background DAB "
              f"{result['background_dab_od']} white {result['stain']['white_point']}", flush=True)
    return rows


def summarise(nuclei: list[dict], synth: list[dict], settings: Settings) -> dict:
    named = [r for r in nuclei if r["mpp_stated"] and r["background_dab_od"] is not None]
    background = np.array([r["background_dab_od"] for r in named])
    counterstain = np.array([r["counterstain_od"] for r in named])
    tone_shift = max(abs(r[tone][key] - r[key]) for r in named for tone in TONES
                     for key in ("counterstain_od", "background_dab_od") if r[tone][key] is not None)
    reference = float(np.median([r["counterstain_od"] for r in synth]))
    qc = settings.qc
    return {
        "images": len(named),
        "background_dab_max": round(float(background.max()), 4),
        "background_dab_p95": round(float(np.percentile(background, 95)), 4),
        "counterstain_range": [round(float(counterstain.min()), 4), round(float(counterstain.max()), 4)],
        "largest_change_by_a_tone": round(float(tone_shift), 4),
        "synthetic_counterstain_median": round(reference, 4),
        "synthetic_washout_ratio_max": round(max(r["washout_counterstain_od"] / r["counterstain_od"] for r in synth), 3),
        "settings": {"max_background_dab_od": qc.max_background_dab_od, "max_counterstain_od": qc.max_counterstain_od,
                     "reference_counterstain_od": qc.reference_counterstain_od,
                     "min_counterstain_ratio": qc.min_counterstain_ratio},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "qc_ranges.json")
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="her2slide-qc-ranges-") as tmp:
        folder = Path(tmp)
        nuclei = nucleus_sets(args.data, settings, folder)
        synth = synthetic(settings, folder)
    result = {"summary": summarise(nuclei, synth, settings), "glass_texture": glass_textures(args.data, nuclei, settings),
              "synthetic": synth, "nuclei": nuclei, "cores_for_comparison": cores(args.data, settings)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(json.dumps(result["glass_texture"], indent=1))


if __name__ == "__main__":
    main()
