"""``maps.zarr``: the region maps as OME-NGFF, for napari and other OME-Zarr viewers.

One multiscale float image ``maps`` (axes c, y, x; one channel per :data:`CHANNELS`,
plus ``excluded`` when known) and one multiscale label image per :data:`LABELS` under
``labels/``, all written with ome-zarr-py's reference writer, in micrometres and aligned
with the slide: NGFF puts a pixel's *centre* at its transformed coordinate, so the
translation of level ``k`` is ``origin + scale_k / 2`` (see docs/outputs.md).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from her2slide.maps.region_maps import CHANNELS, LABELS, SCORE_COLOURS, HeterogeneityResult, RegionMaps
from her2slide.outputs.atomic import staged_folder

#: NGFF versions this writer produces: 0.4 is Zarr v2, 0.5 is Zarr v3.
NGFF_VERSIONS = ("0.4", "0.5")

#: Display colour (hex RGB) and default window end of every float channel.
_CHANNEL_DISPLAY: dict[str, tuple[str, float]] = {
    **{f"fraction_{name}": ("".join(f"{c:02X}" for c in SCORE_COLOURS[value][:3]), 1.0)
       for value, name in ((1, "0"), (2, "1+"), (3, "2+"), (4, "3+"))},
    "mean_completeness": ("00C000", 1.0),
    "mean_membrane_dab_od": ("A0522D", 0.8),
    "cell_density": ("FFFFFF", 5000.0),
    "local_score": ("FF00FF", 3.0),
    "excluded": ("808080", 1.0),
}

_SCORE_NAMES = {1: "0", 2: "1+", 3: "2+", 4: "3+"}
_CHUNK = 256


def write_maps_zarr(path: Path, maps: RegionMaps, heterogeneity: HeterogeneityResult, provenance: dict,
                    ngff_version: str = "0.4", levels: int = 3) -> None:
    """Write ``maps`` as an OME-Zarr image with labels at ``path``, atomically.

    Everything goes into a hidden sibling folder first, renamed to ``path`` only when
    complete, so a failure never leaves a half-written ``maps.zarr``. Provenance and the
    heterogeneity result are stored in the root attributes under ``"her2slide"``
    (non-finite numbers become null, since JSON has no NaN).
    """
    from ome_zarr.format import FormatV04, FormatV05

    if ngff_version not in NGFF_VERSIONS:
        raise ValueError(f"NGFF version {ngff_version!r} is not supported; choose one of {', '.join(NGFF_VERSIONS)}")
    if levels < 1:
        raise ValueError(f"levels must be at least 1, not {levels}")
    fmt = FormatV04() if ngff_version == "0.4" else FormatV05()
    names = list(CHANNELS) + (["excluded"] if maps.excluded is not None else [])
    pyramid = float_pyramid(maps, levels)
    transforms = level_transforms(maps, len(pyramid), channel_axis=True)
    path = Path(path)
    with staged_folder(path) as staging:
        _write(staging, fmt, maps, heterogeneity, provenance, names, pyramid, transforms)


def _write(folder: Path, fmt: Any, maps: RegionMaps, heterogeneity: HeterogeneityResult, provenance: dict,
           names: list[str], pyramid: list[np.ndarray], transforms: list[list[dict]]) -> None:
    import zarr

    root = zarr.open_group(str(folder), mode="w", zarr_format=fmt.zarr_format)
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]
    with warnings.catch_warnings():
        # ome-zarr 0.18 deprecates explicit transformations in favour of a scale that it
        # turns into per-level scales from the array shapes; that cannot express the slide
        # origin, and shape ratios are not exactly 2 for odd grids, so we pass them ourselves.
        # (Importing its writer also warns about its own deprecated Scaler default.)
        warnings.filterwarnings("ignore", message=".*(coordinate_transformations|Scaler).*",
                                category=DeprecationWarning)
        from ome_zarr.writer import write_multiscale, write_multiscale_labels

        write_multiscale(pyramid, root, fmt=fmt, axes=axes, coordinate_transformations=transforms,
                         storage_options=_chunks(pyramid), name="maps",
                         metadata={"omero": _omero(names, pyramid[0])})
        label_axes = axes[1:]
        label_transforms = level_transforms(maps, len(pyramid), channel_axis=False)
        for name in LABELS:
            levels = label_pyramid(maps.labels[name], len(pyramid))
            write_multiscale_labels(levels, root, name=name, fmt=fmt, axes=label_axes,
                                    coordinate_transformations=label_transforms, storage_options=_chunks(levels),
                                    label_metadata=_label_metadata(name, maps, heterogeneity))
    if fmt.zarr_format == 3:
        # NGFF 0.5 requires "version" in every "ome" block; ome-zarr-py 0.18 leaves it out of the labels group.
        labels_group = root["labels"]
        labels_group.attrs["ome"] = {**labels_group.attrs["ome"], "version": fmt.version}
    root.attrs["her2slide"] = json_safe({
        "channels": names, "labels": list(LABELS),
        "region_um": maps.region_um, "origin_um": list(maps.origin_um), "mpp_level0": maps.mpp_level0,
        "grid_shape": list(maps.shape), "tumour_cells": int(maps.counts.sum()),
        "heterogeneity": heterogeneity.to_dict(), "provenance": provenance,
    })


# ---------------------------------------------------------------- geometry


def level_transforms(maps: RegionMaps, levels: int, channel_axis: bool) -> list[list[dict[str, Any]]]:
    """NGFF scale + translation per level: pixel centres on the regions' centres in slide µm.

    Level-0 pixel (row, col) is region (row, col), covering ``origin + [col, col + 1) * R``;
    NGFF maps a pixel's centre to ``translation + index * scale``, so the translation is
    the centre of the first pixel, ``origin + scale / 2``. Level ``k`` pixels cover
    ``2**k`` regions, hence ``scale = R * 2**k`` and ``translation = origin + R * 2**k / 2``.
    """
    lead = [1.0] if channel_axis else []
    out = []
    for k in range(levels):
        size = maps.region_um * 2**k
        out.append([
            {"type": "scale", "scale": lead + [size, size]},
            {"type": "translation", "translation": [0.0] * len(lead) + [maps.origin_um[1] + size / 2,
                                                                       maps.origin_um[0] + size / 2]},
        ])
    return out


# ---------------------------------------------------------------- pyramids


def float_pyramid(maps: RegionMaps, levels: int) -> list[np.ndarray]:
    """(c, y, x) float32 levels; each coarser pixel summarises a 2 x 2 block of regions.

    Per-cell quantities (class fractions, completeness, DAB, local score) are cell-weighted
    means over the block's regions that have a value, so a coarse pixel is what its cells
    say, not what its emptiest region says; density is the block's area mean (a region
    without tumour cells counts as 0) and the excluded share its area mean. NaN where no
    region of the block has a value (for density: no tumour cell). At most ``levels``
    levels, fewer once a level is a single pixel. Coarse levels are for display.
    """
    counts = maps.counts.astype(np.float64)
    channels = {name: maps.channels[name].astype(np.float64) for name in CHANNELS}
    if maps.excluded is not None:
        channels["excluded"] = maps.excluded.astype(np.float64)
    pyramid = [np.stack(list(channels.values())).astype(np.float32)]
    while len(pyramid) < levels and max(counts.shape) > 1:
        area = np.ones_like(counts)
        channels = {name: _block_mean(np.nan_to_num(values, nan=0.0), area) if name == "cell_density"
                    else _block_mean(values, area if name == "excluded" else counts)
                    for name, values in channels.items()}
        counts = _blocks(counts, 0.0).sum(axis=2)
        channels["cell_density"][counts == 0] = np.nan
        pyramid.append(np.stack(list(channels.values())).astype(np.float32))
    return pyramid


def _blocks(values: np.ndarray, fill: float) -> np.ndarray:
    """(ny/2, nx/2, 4) view of 2 x 2 blocks, padding odd edges with ``fill``."""
    ny, nx = values.shape
    padded = np.full((ny + ny % 2, nx + nx % 2), fill, dtype=np.float64)
    padded[:ny, :nx] = values
    return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).transpose(0, 2, 1, 3).reshape(
        padded.shape[0] // 2, padded.shape[1] // 2, 4)


def _block_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of the finite values of each 2 x 2 block; NaN where none is finite."""
    v = _blocks(values, np.nan)
    finite = np.isfinite(v)
    w = np.where(finite, _blocks(weights, 0.0), 0.0)
    # A block whose finite values all have zero weight falls back to their plain mean.
    w = np.where((w.sum(axis=2) > 0)[..., None], w, finite.astype(np.float64))
    total = w.sum(axis=2)
    mean = (np.where(finite, v, 0.0) * w).sum(axis=2)
    return np.where(total > 0, mean / np.where(total > 0, total, 1.0), np.nan)


def label_pyramid(labels: np.ndarray, levels: int) -> list[np.ndarray]:
    """Integer levels; a coarser pixel takes the most common non-zero label of its block.

    Zero ("nothing") wins only when the whole block is zero, so a small positive cluster
    stays visible when zoomed out; ties go to the higher value (the higher local score).
    """
    pyramid = [labels.astype(np.int32)]
    while len(pyramid) < levels and max(pyramid[-1].shape) > 1:
        block = _blocks(pyramid[-1], 0).astype(np.int64)
        same = (block[..., :, None] == block[..., None, :]).sum(axis=3)
        rank = np.where(block > 0, same * (int(block.max()) + 1) + block, -1)
        pyramid.append(np.take_along_axis(block, rank.argmax(axis=2)[..., None], axis=2)[..., 0].astype(np.int32))
    return pyramid


# ---------------------------------------------------------------- metadata


def _chunks(pyramid: list[np.ndarray]) -> list[dict[str, tuple[int, ...]]]:
    return [{"chunks": tuple(min(s, _CHUNK) if i >= level.ndim - 2 else 1 for i, s in enumerate(level.shape))}
            for level in pyramid]


def _omero(names: list[str], level0: np.ndarray) -> dict[str, Any]:
    """Channel names, colours and display windows (OMERO rendering settings, NGFF "omero")."""
    channels = []
    for name, values in zip(names, level0, strict=True):
        colour, end = _CHANNEL_DISPLAY[name]
        finite = values[np.isfinite(values)]
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else end
        if name == "cell_density" and finite.size:
            end = max(high, 1.0)
        channels.append({"label": name, "color": colour, "active": name == "local_score", "coefficient": 1.0,
                         "family": "linear", "inverted": False,
                         "window": {"min": min(low, 0.0), "max": max(high, end), "start": 0.0, "end": end}})
    return {"name": "her2slide region maps", "channels": channels,
            "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0}}


def _label_metadata(name: str, maps: RegionMaps, heterogeneity: HeterogeneityResult) -> dict[str, Any]:
    colours = maps.label_colours.get(name) or (SCORE_COLOURS if name == "local_score_class" else {})
    meta: dict[str, Any] = {"source": {"image": "../../"}}
    if colours:  # the schema wants at least one entry when "colors" is present
        meta["colors"] = [{"label-value": int(v), "rgba": [int(c) for c in rgba]}
                          for v, rgba in sorted(colours.items())]
    if name == "local_score_class":
        meta["properties"] = [{"label-value": value, "local_score": score} for value, score in _SCORE_NAMES.items()]
    elif name == "heterogeneity_regions" and heterogeneity.clusters:
        meta["properties"] = [{"label-value": k, **{key: value for key, value in json_safe(cluster).items()
                                                    if isinstance(value, (str, int, float, bool))}}
                              for k, cluster in enumerate(heterogeneity.clusters, start=1)]
    return meta


def json_safe(value: Any) -> Any:
    """Plain JSON types, with non-finite floats as None (JSON has no NaN or Infinity)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)
