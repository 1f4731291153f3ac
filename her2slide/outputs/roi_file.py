"""``roi.geojson``: the regions of interest a slide was scored with, kept beside its result.

report.json names the ROI file and its checksum; this copy of the merged include and
exclude regions (level-0 pixels, the coordinates cells.parquet uses) keeps the result
self-contained, so the viewer can draw what was scored even when the original file moved.
"""

from __future__ import annotations

from pathlib import Path

from shapely.geometry import mapping

from her2slide.outputs.atomic import write_json_atomic
from her2slide.qc.roi import Roi


def write_roi_geojson(path: Path, roi: Roi) -> None:
    """One feature per role ("include", "exclude") that the ROI has, written atomically."""
    features = [{"type": "Feature", "geometry": mapping(geometry),
                 "properties": {"role": role}}
                for role, geometry in (("include", roi.include), ("exclude", roi.exclude)) if geometry is not None]
    write_json_atomic(Path(path), {"type": "FeatureCollection", "features": features})
