"""Typed settings for a scoring run, loaded from YAML and stored with every result.

The defaults below are the single source of truth; ``configs/default.yaml`` is their
exact dump (a test keeps the two identical), so a lab edits a copy of that file and
passes it with ``--config``. Unknown keys are errors: a typo in a threshold must not
silently fall back to the default; so are infinite and NaN numbers (``.inf`` is valid
YAML), refused when the file is read rather than when a slide reaches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from her2slide.errors import InputError
from her2slide.scoring import Criteria, ScoringRules


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TilingSettings(_Strict):
    """Where and at what resolution pixels are read."""

    work_mpp: float = Field(0.5, gt=0.05, le=2.0, description="working resolution, µm per pixel")
    tile_px: int = Field(1024, ge=128, description="owned tile edge, working pixels")
    margin_um: float = Field(32.0, ge=30.0, description="read margin around each tile; > largest cell")
    tissue_mpp: float = Field(8.0, gt=1.0, description="resolution of the tissue mask, µm per pixel")
    min_tissue_fraction: float = Field(0.01, ge=0.0, le=1.0, description="tiles with less tissue are skipped")
    measure_threads: int | None = Field(None, ge=1, description="threads measuring cells while the next tiles are read and segmented; null = the CPUs this process may use")


class CellSettings(_Strict):
    """Classical nucleus and cell segmentation, and membrane sampling."""

    nucleus_od_min: float = Field(0.07, gt=0, description="lowest per-tile haematoxylin threshold for nuclei (Otsu is clipped to this band)")
    nucleus_od_max: float = Field(0.25, gt=0, description="highest per-tile haematoxylin threshold for nuclei")
    tissue_od: float = Field(0.02, gt=0, description="smoothed H+DAB OD below which a pixel is glass, never part of a cell")
    min_nucleus_um2: float = Field(12.0, gt=0, description="smaller objects are debris or lymphocyte fragments")
    max_nucleus_um2: float = Field(160.0, gt=0, description="larger objects are clumps, not one nucleus")
    max_nucleus_elongation: float = Field(2.4, ge=1.0, description="major/minor axis; spindle stroma nuclei exceed it")
    tumour_min_area_um2: float = Field(24.0, gt=0, description="tumour nuclei are larger than lymphocytes")
    tumour_neighbour_radius_um: float = Field(25.0, gt=0, description="radius for counting epithelial neighbours")
    tumour_min_neighbours: int = Field(3, ge=0, description="cohesive epithelium: at least this many neighbours")
    max_cell_radius_um: float = Field(11.0, gt=0, description="cells do not extend further from their nucleus")
    ring_width_um: float = Field(1.0, gt=0, description="width of the membrane band sampled inside each cell")
    sectors: int = Field(32, ge=8, description="angular sectors for completeness")
    membrane_weight: float = Field(2.0, ge=0, description="weight of DAB ridges against distance in the watershed")
    attribution_margin: float = Field(0.2, ge=0, le=1, description="a stained sector goes to the neighbour across it when the neighbour is this much more complete")
    own_stain_ratio: float = Field(0.7, ge=0, le=1, description="... and the neighbour's own stain is at least this fraction of the sector's")
    lateral_min_fraction: float = Field(0.5, gt=0, le=1, description="incomplete staining of at least this share in ≤2 arcs is basolateral/lateral")


class StainSettings(_Strict):
    """Per-slide white point and stain-vector estimation (her2slide.stain.white_point, her2slide.run.stain_sample)."""

    white_point: tuple[Annotated[float, Field(gt=0, le=255)], Annotated[float, Field(gt=0, le=255)],
                       Annotated[float, Field(gt=0, le=255)]] | None = Field(
        None, description="RGB of blank glass on this lab's scanner (e.g. the median of a glass region); "
                          "null = read from each slide: its glass, or its palest tissue where it has none")
    estimate_per_slide: bool = True
    max_angle_deg: float = Field(12.0, gt=0, description="estimates further from the reference vectors are rejected")
    sample_patches: int = Field(16, ge=1, description="patches spread over the tissue for the estimate (and the QC fold reference)")
    patch_um: float = Field(128.0, ge=32.0, description="edge of each sample patch; 128 µm holds four QC blocks")


class QcSettings(_Strict):
    """Tile-level quality control and the slide-level verdict (measured basis: docs/roi_and_qc.md)."""

    min_tumour_cells: int = Field(20, ge=1, description="fewer scored tumour cells fail the slide (few_tumour_cells): too few for a percentage (ISH's minimum of 20 nuclei; one cell is then 5%)")
    min_tumour_cells_gastric_biopsy: int = Field(5, ge=1, description="... for gastric biopsies, which are scored on a cohesive cluster of 5 cells")
    flag_tumour_cells: int = Field(200, ge=1, description="fewer scored tumour cells are scored with a few_tumour_cells flag and the count")
    max_excluded_fraction: float = Field(0.5, ge=0, le=1, description="more of the tissue excluded by QC fails the slide (too_much_excluded)")
    reference_counterstain_od: float = Field(0.18, gt=0, description="nuclear counterstain (median of blocks' 95th-percentile haematoxylin) of the slides the DAB thresholds were set on (the synthetic slides: 0.171-0.178); her2slide calibrate sets it from the lab's controls")
    min_counterstain_ratio: float = Field(0.5, gt=0, le=1, description="a counterstain below this share of the reference fails the slide as washed out, over-exposed or uncalibrated (washed_out: every OD at most half of what the thresholds expect), unless it scores 3+ (a paler scan can only have lowered it: flagged)")
    max_counterstain_od: float = Field(0.5, gt=0, description="a counterstain above this flags the slide (dark_counterstain): from 0.55 the darkest nuclei of real H&E fields are taken for blue ink")
    max_background_dab_od: float = Field(0.05, gt=0, description="tissue background DAB (median of blocks' 20th percentile) above this flags the slide (background_dab): DAB-free tissue of 44 fields from other labs reads at most 0.031; at scoring.faint_od it fails")
    tile_checks: bool = Field(True, description="False: no block is excluded (the slide-level verdict still applies)")
    block_um: float = Field(64.0, ge=8, description="edge of a QC block: the unit that is excluded")
    saturated_dark_level: int = Field(5, ge=0, le=254, description="a pixel with every channel at or below this is clipped black")
    saturated_max_fraction: float = Field(0.25, ge=0, le=1, description="more clipped pixels (black, or pure-white fill on non-white glass) exclude a block (saturated)")
    ink_residual_share: float = Field(0.3, gt=0, le=1, description="ink pixel: |residual OD| / |OD| above this (colour outside the haematoxylin-DAB plane) ...")
    ink_min_od: float = Field(0.2, gt=0, description="... at an optical density above this")
    ink_haematoxylin_od: float = Field(0.9, gt=0, description="ink pixel: haematoxylin amount above this (blue ink; nuclei stay below 0.5)")
    ink_dark_od: float = Field(0.6, gt=0, description="ink pixel: every RGB channel's OD above this (black ink; stains leave one channel pale)")
    ink_max_fraction: float = Field(0.02, ge=0, le=1, description="more ink pixels exclude a block (ink)")
    fold_min_haematoxylin_od: float = Field(0.06, gt=0, description="fold: the block's 20th-percentile haematoxylin above this ...")
    fold_ratio: float = Field(1.8, ge=1, description="... and above this multiple of the slide's typical value (folds double it)")
    blur_max_edge_um: float = Field(2.8, gt=0, description="blur: haematoxylin edge width (contrast / steepest gradient) above this, µm")
    blur_min_contrast_od: float = Field(0.03, gt=0, description="blocks with less haematoxylin contrast are not judged for focus")
    cytoplasmic_min_cells: int = Field(3, ge=1, description="a block needs this many stained tumour cells to be judged cytoplasmic")
    cytoplasmic_min_share: float = Field(0.5, gt=0, le=1, description="share of its stained cells whose stained cytoplasm lifts their membrane reading by a class that excludes a block (cytoplasmic)")
    cytoplasmic_flag_share: float = Field(0.1, gt=0, le=1, description="share of the scored stained cells lifted a class by their stained cytoplasm that flags the slide (cytoplasmic_staining): 10%, what moves a score")
    edge_um: float = Field(40.0, ge=0, description="blocks whose centre is within this distance of glass (where tissue meets it; never the image border) are excluded (edge); 0 = off")


class RegionSettings(_Strict):
    """The coarse grid cells accumulate into for maps and heterogeneity (heterogeneity issue)."""

    region_um: float = Field(100.0, gt=10.0, description="edge of one square map region, µm")
    min_cells: int = Field(10, ge=1, description="regions with fewer tumour cells get no local score")


class HeterogeneitySettings(_Strict):
    """Thresholds of the homogeneous / focal / mosaic call (see docs/heterogeneity.md)."""

    positive_class: Literal["1+", "2+", "3+"] = Field("2+", description="cells of this class or stronger are the positive subpopulation")
    min_positive_percent: float = Field(5.0, ge=0, le=100, description="heterogeneous needs more than this % positive cells (CAP 2009: > 5%)")
    max_positive_percent: float = Field(50.0, ge=0, le=100, description="... and less than this % (CAP 2009: < 50%)")
    focal_min_segregation: float = Field(0.35, ge=0, le=1, description="bias-corrected Cramér's V of regions x positive at or above which positive cells are focal, below mosaic")
    region_positive_share: float = Field(0.5, gt=0, le=1, description="a scored region is positive when this share of its cells are positive")
    mixed_min_share: float = Field(0.1, gt=0, le=0.5, description="a scored region is mixed when positive and negative cells each make at least this share")
    max_listed_clusters: int = Field(50, ge=0, description="report.json lists the largest clusters only; the label map holds all")


class MapsSettings(_Strict):
    """OME-Zarr maps and review outputs."""

    ngff_version: Literal["0.4", "0.5"] = "0.4"
    levels: int = Field(3, ge=1, le=8, description="resolution levels of the zarr images (factor 2 each)")


class RoiSettings(_Strict):
    """Regions of interest drawn by a pathologist (docs/roi_and_qc.md)."""

    exclude_classes: tuple[str, ...] = Field(
        ("Exclude", "Ignore", "In situ", "Insitu", "CIS", "DCIS", "LCIS", "Intraductal", "Intraepithelial",
         "Dysplasia", "Normal", "Stroma", "Immune cells", "Necrosis", "Artefact", "Artifact"),
        description="a region whose class name contains one of these (as whole words, case-insensitive; QuPath's "
                    "trailing '*' ignored) is left out; it wins over include_classes, so 'Carcinoma in situ' and "
                    "'Tumor: DCIS' are left out")
    include_classes: tuple[str, ...] = Field(
        ("Tumor", "Tumour", "Invasive", "Carcinoma", "Include", "Region", "ROI"),
        description="a region whose class name contains one of these (as whole words) and none of exclude_classes "
                    "is scored; so is an unclassified region")
    unknown_classes: Literal["refuse", "include", "exclude"] = Field(
        "refuse", description="a region whose class is in neither list: refuse the ROI file and name the class "
                              "(default), or score it (include) or leave it out (exclude); report.json lists them")
    outside_tolerance_um: float = Field(50.0, ge=0, description="ROI polygons may overhang the slide by this much; "
                                        "further out means they belong to another image or are not level-0 pixels")


class BatchSettings(_Strict):
    """How ``her2slide batch`` runs; not part of a result, so not part of its fingerprint."""

    slide_time_limit_min: float | None = Field(
        240.0, gt=0, description="a slide still running after this many minutes fails with that reason and the "
                                 "batch goes on (checked between tiles); null = no limit")


class ModelSettings(_Strict):
    """The membrane CNN and the engine that runs it (CNN issue)."""

    weights: str | None = Field(None, description="weights file; None = the shipped model in models/")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int | None = Field(None, ge=1, description="tiles per batch; None = from free device memory")
    workers: int | None = Field(None, ge=0, description="DataLoader worker processes; None = from CPU count")


class ContextSettings(_Strict):
    """Diagnostic context beside the score: simulated biopsies and bulk-NGS dilution (docs/diagnostic_context.md)."""

    needle_gauge: Literal[14, 16, 18] = Field(14, description="core needle; core width = its nominal inner diameter (1.60 / 1.19 / 0.84 mm)")
    core_width_um: float | None = Field(None, gt=0, description="core width override, µm; None = from the gauge")
    core_length_um: float = Field(15000.0, gt=0, description="core length before it is clipped to the tumour, µm")
    max_cores: int = Field(6, ge=1, le=20, description="report biopsies of k = 1 .. max_cores cores")
    simulations: int = Field(2000, ge=10, description="simulated biopsies; Monte Carlo standard error <= 0.5/sqrt(n)")
    min_core_cells: int = Field(50, ge=1, description="a biopsy (or core) with fewer tumour cells is non-diagnostic")
    gastric_cores_as_biopsies: bool = Field(True, description="score cores of a gastric resection with the biopsy (cluster) rule")
    grid_um: float = Field(10.0, gt=0, description="lattice step on which cores are placed; grows on large sections")
    angles: int = Field(36, ge=1, description="core orientations, evenly spaced over 180 degrees")
    seed: int = Field(0, description="random seed of the simulation")
    ngs_threshold_cn: float = Field(6.0, gt=2.0, description="bulk copy number at or above which NGS calls amplification (lab-specific)")
    ngs_unamplified_cn: float = Field(2.0, ge=0, description="HER2 copy number of the tumour's unamplified cells")


class Settings(_Strict):
    """Everything that decides a result; stored in report.json provenance."""

    criteria: Criteria = Criteria.BREAST
    #: classical by default: on the real-data comparison of issue 14 (docs/evaluation.md, "Which
    #: detector is the default") no CNN beats it on all of stain invariance, real nuclei and the
    #: real cores' scores; ``cnn`` runs models/her2slide-cells-v2.pt, the DAB-blind detector.
    segmenter: Literal["cnn", "classical"] = "classical"
    tiling: TilingSettings = TilingSettings()
    cells: CellSettings = CellSettings()
    stain: StainSettings = StainSettings()
    scoring: ScoringRules = ScoringRules()
    qc: QcSettings = QcSettings()
    regions: RegionSettings = RegionSettings()
    heterogeneity: HeterogeneitySettings = HeterogeneitySettings()
    maps: MapsSettings = MapsSettings()
    roi: RoiSettings = RoiSettings()
    model: ModelSettings = ModelSettings()
    context: ContextSettings = ContextSettings()
    batch: BatchSettings = BatchSettings()

    def dump(self) -> dict:
        return self.model_dump(mode="json")

    def with_model(self, **changes: object) -> "Settings":
        """A copy with some ``model`` settings changed (weights, device, ...) from the command line."""
        return self.model_copy(update={"model": self.model.model_copy(update=changes)})


def load_settings(path: str | Path | None = None, **overrides: object) -> Settings:
    """Settings from a YAML file (or the defaults), with top-level overrides such as criteria."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise InputError(path, "config file not found") from None
        except IsADirectoryError:
            raise InputError(path, "config is a folder; expected a YAML file") from None
        except OSError as exc:
            raise InputError(path, f"config cannot be read ({exc.strerror or exc.__class__.__name__})") from None
        except (UnicodeDecodeError, ValueError):
            raise InputError(path, "config is not a text file; expected YAML") from None
        except yaml.YAMLError as exc:
            raise InputError(path, f"config is not valid YAML ({exc.__class__.__name__})") from None
        except RecursionError:
            raise InputError(path, "config is nested too deeply to be a settings file") from None
        if not isinstance(data, dict):
            raise InputError(path, "config must be a mapping of settings")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(path or "settings", f"invalid setting {where}: {first['msg']}") from None


def dump_yaml(settings: Settings) -> str:
    return yaml.safe_dump(settings.dump(), sort_keys=False)
