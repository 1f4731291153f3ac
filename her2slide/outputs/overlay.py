"""``overlay.png``: the slide thumbnail with the local-score map over it, cluster outlines and a legend.

Also the colouring helpers the review page shares: a region map becomes an RGBA grid
(one pixel per region, transparent where there is nothing), and every thumbnail pixel
finds its region from the two micrometre scales, so the map lands where its cells are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from her2slide.maps.region_maps import SCORE_COLOURS, RegionMaps

#: Viridis at five stops: a perceptually even, colour-blind-safe scale for continuous maps.
VIRIDIS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64)
SCORE_NAMES = {1: "0", 2: "1+", 3: "2+", 4: "3+"}
CLUSTER_OUTLINE = (20, 20, 20)
OVERLAY_ALPHA = 0.5
_PANEL_WIDTH = 300


# ---------------------------------------------------------------- colouring (shared with review_maps.py)


def label_rgba(labels: np.ndarray, colours: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """(ny, nx, 4) uint8 colours of an integer label grid; 0 and unlisted values are transparent."""
    lut = np.zeros((max([int(labels.max(initial=0)), *colours]) + 1, 4), dtype=np.uint8)
    for value, rgba in colours.items():
        lut[value] = rgba
    return lut[np.clip(labels, 0, len(lut) - 1)]


def scalar_rgba(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """(ny, nx, 4) uint8 viridis colours of a float grid over [vmin, vmax]; NaN is transparent."""
    finite = np.isfinite(values)
    t = np.clip((np.where(finite, values, vmin) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    position = t * (len(VIRIDIS) - 1)
    low = np.minimum(position.astype(int), len(VIRIDIS) - 2)
    frac = (position - low)[..., None]
    rgb = VIRIDIS[low] * (1 - frac) + VIRIDIS[low + 1] * frac
    return np.concatenate([np.rint(rgb), np.where(finite, 255, 0)[..., None]], axis=-1).astype(np.uint8)


def thumbnail_regions(shape: tuple[int, int], thumb_mpp: float, maps: RegionMaps) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index of the region under each thumbnail pixel (-1 outside the grid).

    Thumbnail pixel ``i`` covers level-0 pixels ``[i * d, (i + 1) * d)`` (``d`` the
    downsample), whose centre in slide micrometres (level-0 pixel ``j`` centred on ``j``)
    is ``((i + 0.5) * d - 0.5) * mpp``; region ``c`` covers ``origin + [c, c + 1) * R``.
    """
    height, width = shape
    d = thumb_mpp / maps.mpp_level0
    x_um = ((np.arange(width) + 0.5) * d - 0.5) * maps.mpp_level0
    y_um = ((np.arange(height) + 0.5) * d - 0.5) * maps.mpp_level0
    ny, nx = maps.shape
    col = np.floor((x_um - maps.origin_um[0]) / maps.region_um).astype(np.int64)
    row = np.floor((y_um - maps.origin_um[1]) / maps.region_um).astype(np.int64)
    return np.where((row >= 0) & (row < ny), row, -1), np.where((col >= 0) & (col < nx), col, -1)


def upsample(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray, outside: Any = 0) -> np.ndarray:
    """A region grid resampled onto the thumbnail (nearest region), ``outside`` off the grid."""
    inside = (rows[:, None] >= 0) & (cols[None, :] >= 0)
    picked = grid[np.maximum(rows, 0)[:, None], np.maximum(cols, 0)[None, :]]
    fill = np.asarray(outside, dtype=grid.dtype)
    return np.where(inside[(...,) + (None,) * (grid.ndim - 2)], picked, fill)


def blend(thumbnail_rgb: np.ndarray, rgba: np.ndarray, alpha: float) -> np.ndarray:
    """Thumbnail with a thumbnail-sized RGBA layer over it at ``alpha`` times its own opacity."""
    a = rgba[..., 3:4].astype(np.float32) * np.float32(alpha / 255.0)
    out = thumbnail_rgb[..., :3].astype(np.float32) * (1 - a) + rgba[..., :3].astype(np.float32) * a
    return np.rint(out).astype(np.uint8)


def cluster_boundary(clusters: np.ndarray, width_px: int = 2) -> np.ndarray:
    """Pixels on the edge of a heterogeneity cluster (a thumbnail-sized label image), ``width_px`` thick."""
    edge = np.zeros(clusters.shape, dtype=bool)
    edge[:, 1:] |= clusters[:, 1:] != clusters[:, :-1]
    edge[1:, :] |= clusters[1:, :] != clusters[:-1, :]
    edge &= ndi.maximum_filter(clusters, size=3) > 0
    return ndi.binary_dilation(edge, iterations=max(width_px - 1, 0)) if width_px > 1 else edge


def score_text(report: dict) -> str:
    """"HER2 IHC 3+ (positive, HER2-positive)", or "not scored" for a slide that failed QC."""
    if report.get("score") is None:
        return "HER2 IHC: not scored"
    extra = ", ".join(dict.fromkeys(str(v) for v in (report.get("status"), report.get("category")) if v))
    return f"HER2 IHC {report['score']}" + (f" ({extra})" if extra else "")


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def scale_bar_um(width_um: float) -> float:
    """The longest round length (µm) that fits in a quarter of the image width."""
    fits = [v for v in (50, 100, 200, 500, 1000, 2000, 5000, 10000) if v <= width_um / 4]
    return fits[-1] if fits else 50


# ---------------------------------------------------------------- overlay.png


def write_overlay_png(path: Path, thumbnail_rgb: np.ndarray, thumb_mpp: float, maps: RegionMaps, report: dict) -> None:
    """Write the thumbnail with the local-score classes blended over it and a legend panel to its right."""
    rows, cols = thumbnail_regions(thumbnail_rgb.shape[:2], thumb_mpp, maps)
    colours = maps.label_colours.get("local_score_class") or SCORE_COLOURS
    layer = upsample(label_rgba(maps.labels["local_score_class"], colours), rows, cols)
    image = blend(thumbnail_rgb, layer, OVERLAY_ALPHA)
    image[cluster_boundary(upsample(maps.labels["heterogeneity_regions"], rows, cols))] = CLUSTER_OUTLINE
    unit = max(1.0, image.shape[0] / 900)  # text grows with the image so it stays readable when scaled down
    canvas = Image.new("RGB", (image.shape[1] + round(_PANEL_WIDTH * unit), max(image.shape[0], round(420 * unit))),
                       "white")
    canvas.paste(Image.fromarray(image), (0, 0))
    draw = ImageDraw.Draw(canvas)
    _scale_bar(draw, image.shape, thumb_mpp, unit)
    _legend(draw, image.shape[1] + round(16 * unit), colours, report, unit)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    canvas.save(tmp, format="PNG", compress_level=3)  # level 6 takes 2.5x longer for 10% less
    os.replace(tmp, path)


def _scale_bar(draw: ImageDraw.ImageDraw, shape: tuple[int, ...], thumb_mpp: float, unit: float) -> None:
    length_um = scale_bar_um(shape[1] * thumb_mpp)
    length_px = length_um / thumb_mpp
    x0, y0 = round(12 * unit), shape[0] - round(18 * unit)
    draw.rectangle([x0 - 4 * unit, y0 - 20 * unit, x0 + length_px + 4 * unit, y0 + 8 * unit], fill=(255, 255, 255))
    draw.rectangle([x0, y0, x0 + length_px, y0 + 4 * unit], fill=(0, 0, 0))
    draw.text((x0, y0 - 18 * unit), f"{length_um / 1000:g} mm", fill=(0, 0, 0), font=font(round(14 * unit)))


def _legend(draw: ImageDraw.ImageDraw, x: int, colours: dict[int, tuple[int, int, int, int]], report: dict,
            unit: float) -> None:
    big, small = font(round(24 * unit)), font(round(15 * unit))
    step = round(21 * unit)
    y = round(14 * unit)
    title, _, detail = score_text(report).partition(" (")
    draw.text((x, y), title, fill=(0, 0, 0), font=big)
    y += round(34 * unit)
    cells = report.get("cells", {})
    lines = ([detail.rstrip(")")] if detail else []) + [f"criteria: {report.get('criteria', '?')}",
                                                         f"tumour cells: {cells.get('total', '?')}"]
    percent = cells.get("percent") or {}
    lines += [f"    {name}: {float(percent[name]):.1f}%" for name in SCORE_NAMES.values() if name in percent]
    pattern = (report.get("heterogeneity") or {}).get("pattern")
    if pattern:
        lines.append(f"heterogeneity: {pattern}")
    for line in lines:
        draw.text((x, y), line, fill=(0, 0, 0), font=small)
        y += step
    y += step
    draw.text((x, y), "local score of each region", fill=(0, 0, 0), font=small)
    y += step
    box = round(16 * unit)
    for value, name in SCORE_NAMES.items():
        draw.rectangle([x, y, x + box, y + box], fill=tuple(colours.get(value, SCORE_COLOURS[value])[:3]),
                       outline=(0, 0, 0))
        draw.text((x + box + 8 * unit, y), name, fill=(0, 0, 0), font=small)
        y += step
    draw.rectangle([x, y, x + box, y + box], outline=CLUSTER_OUTLINE, width=max(2, round(2 * unit)))
    draw.text((x + box + 8 * unit, y), "cluster of positive regions", fill=(0, 0, 0), font=small)
