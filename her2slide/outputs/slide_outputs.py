"""The pictures a pathologist reviews: maps.zarr, overlay.png and review.html of one slide."""

from __future__ import annotations

from pathlib import Path

from her2slide.config import Settings
from her2slide.maps.region_maps import HeterogeneityResult, RegionMaps
from her2slide.outputs.cell_gallery import gallery_html
from her2slide.outputs.overlay import write_overlay_png
from her2slide.outputs.review import write_review_html
from her2slide.outputs.zarr_maps import write_maps_zarr
from her2slide.slide import SlideReader

#: Longest side of the review thumbnail, px. The 8 µm/px tissue-mask thumbnail is only
#: ~125 px across a 1 mm core: too small to see where the score changes.
VIEW_PX = 2000
#: Finest review resolution, µm/px: 1 000 px across a 1 mm core is enough to see the 100 µm
#: regions; finer would re-read the slide at working resolution just for a picture (the whole
#: read floor again on a small slide) — cells are reviewed in the gallery's few crops, in
#: `her2slide view`, or in QuPath from cells.geojson.gz.
VIEW_MIN_MPP = 1.0


def write_review_outputs(staging: Path, reader: SlideReader, report: dict, maps: RegionMaps,
                         heterogeneity: HeterogeneityResult, settings: Settings) -> None:
    """Write the map and review files into the slide's staging folder (cells.parquet is there)."""
    write_maps_zarr(staging / "maps.zarr", maps, heterogeneity, report["provenance"],
                    ngff_version=settings.maps.ngff_version, levels=settings.maps.levels)
    view, view_mpp = reader.thumbnail(max(VIEW_MIN_MPP, reader.mpp, max(reader.dimensions) * reader.mpp / VIEW_PX))
    write_overlay_png(staging / "overlay.png", view, view_mpp, maps, report)
    gallery = gallery_html(reader, staging / "cells.parquet", settings.scoring, report.get("score"))
    write_review_html(staging / "review.html", report, maps, heterogeneity, view, view_mpp, staging / "cells.parquet",
                      gallery)
