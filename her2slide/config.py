"""Typed settings for a scoring run, loaded from YAML and stored with every result.

The defaults below are the single source of truth; ``configs/default.yaml`` is their
exact dump (a test keeps the two identical), so a lab edits a copy of that file and
passes it with ``--config``. Unknown keys are errors: a typo in a threshold must not
silently fall back to the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from her2slide.errors import InputError
from her2slide.scoring import Criteria, ScoringRules


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TilingSettings(_Strict):
    """Where and at what resolution pixels are read."""

    work_mpp: float = Field(0.5, gt=0.05, le=2.0, description="working resolution, µm per pixel")
    tile_px: int = Field(1024, ge=128, description="owned tile edge, working pixels")
    margin_um: float = Field(32.0, ge=30.0, description="read margin around each tile; > largest cell")
    tissue_mpp: float = Field(8.0, gt=1.0, description="resolution of the tissue mask, µm per pixel")
    min_tissue_fraction: float = Field(0.01, ge=0.0, le=1.0, description="tiles with less tissue are skipped")


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
    """Per-slide stain-vector estimation."""

    estimate_per_slide: bool = True
    max_angle_deg: float = Field(12.0, gt=0, description="estimates further from the reference vectors are rejected")
    sample_tiles: int = Field(8, ge=1, description="tiles sampled for the estimate")


class QcSettings(_Strict):
    """Slide-level quality thresholds."""

    min_tumour_cells: int = Field(200, ge=1, description="fewer measured tumour cells raise the few_tumour_cells flag")


class RegionSettings(_Strict):
    """The coarse grid cells accumulate into for maps and heterogeneity (heterogeneity issue)."""

    region_um: float = Field(100.0, gt=10.0, description="edge of one square map region, µm")
    min_cells: int = Field(10, ge=1, description="regions with fewer tumour cells get no local score")


class HeterogeneitySettings(_Strict):
    """Thresholds of the homogeneous / focal / mosaic call (see README, heterogeneity)."""


class MapsSettings(_Strict):
    """OME-Zarr maps and review outputs."""

    ngff_version: Literal["0.4", "0.5"] = "0.4"
    levels: int = Field(3, ge=1, le=8, description="resolution levels of the zarr images (factor 2 each)")


class RoiSettings(_Strict):
    """Regions of interest drawn by a pathologist (ROI/QC issue)."""


class ModelSettings(_Strict):
    """The membrane CNN and the engine that runs it (CNN issue)."""

    weights: str | None = Field(None, description="weights file; None = the shipped model in models/")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int | None = Field(None, ge=1, description="tiles per batch; None = from free device memory")
    workers: int | None = Field(None, ge=0, description="DataLoader worker processes; None = from CPU count")


class Settings(_Strict):
    """Everything that decides a result; stored in report.json provenance."""

    criteria: Criteria = Criteria.BREAST
    segmenter: Literal["classical"] = "classical"
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

    def dump(self) -> dict:
        return self.model_dump(mode="json")


def load_settings(path: str | Path | None = None, **overrides: object) -> Settings:
    """Settings from a YAML file (or the defaults), with top-level overrides such as criteria."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise InputError(path, "config file not found") from None
        except yaml.YAMLError as exc:
            raise InputError(path, f"config is not valid YAML ({exc.__class__.__name__})") from None
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
