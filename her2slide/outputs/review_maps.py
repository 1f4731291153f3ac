"""The region maps on review.html: each map is a PNG data URI with one pixel per region, scaled
and placed over the thumbnail by CSS percentages computed from the micrometre extents (so the page
stays small however large the slide), with its caption, colour bar and the clusters' outline.

``MAP_INFO`` and :func:`map_style` (caption, unit and display range of a float map) are shared
with the viewer, so a map reads the same in both.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from her2slide.maps.region_maps import CHANNELS, SCORE_COLOURS, RegionMaps
from her2slide.outputs.inline_html import css_colour, format_value, data_uri, escape
from her2slide.outputs.overlay import SCORE_NAMES, VIRIDIS, label_rgba, scalar_rgba

__all__ = ["MAP_INFO", "THUMBNAIL_MAX_PX", "map_style"]

#: Longest side of the thumbnail embedded in the page (pixels): enough to see, small enough to mail.
THUMBNAIL_MAX_PX = 1200

#: Caption, unit and fixed display range (None: the map's own maximum) of every float map.
MAP_INFO: dict[str, tuple[str, str, float | None]] = {
    "fraction_0": ("share of cells scored 0", "", 1.0),
    "fraction_1+": ("share of cells scored 1+", "", 1.0),
    "fraction_2+": ("share of cells scored 2+", "", 1.0),
    "fraction_3+": ("share of cells scored 3+", "", 1.0),
    "mean_completeness": ("mean membrane completeness", "", 1.0),
    "mean_membrane_dab_od": ("mean membrane DAB", " OD", None),
    "cell_density": ("tumour cell density", " /mm²", None),
    "excluded": ("excluded area (QC / ROI)", "", 1.0),
}


def map_style(name: str, values: np.ndarray) -> tuple[str, str, float]:
    """Caption, unit and top of the display range (0 to top) of the float map ``name``."""
    caption, unit, top = MAP_INFO[name]
    if top is None:
        finite = values[np.isfinite(values)]
        top = (float(finite.max()) if finite.size else 1.0) or 1.0
    return caption, unit, top


def display_thumbnail(thumbnail_rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The thumbnail shrunk to at most THUMBNAIL_MAX_PX on its longest side, and the factor it grew in µm/px."""
    height, width = thumbnail_rgb.shape[:2]
    factor = max(height, width) / THUMBNAIL_MAX_PX
    if factor <= 1:
        return thumbnail_rgb[..., :3], 1.0
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    small = np.asarray(Image.fromarray(thumbnail_rgb[..., :3]).resize(size, Image.Resampling.BOX))
    return small, width / size[0]


def thumbnail_extent(shape: tuple[int, int], thumb_mpp: float, mpp_level0: float) -> tuple[float, float, float, float]:
    """(x0, y0, width, height) in slide µm covered by the thumbnail (level-0 pixel j centred on j)."""
    height, width = shape
    start = -0.5 * mpp_level0
    return start, start, width * thumb_mpp, height * thumb_mpp


def map_figures(maps: RegionMaps, extent: tuple[float, float, float, float], shape: tuple[int, int]) -> str:
    """One figure per map: the region grid as a pixelated layer placed over the thumbnail by µm extents."""
    x0, y0, width_um, height_um = extent
    ny, nx = maps.shape
    place = (f"left:{100 * (maps.origin_um[0] - x0) / width_um:.4f}%;"
             f"top:{100 * (maps.origin_um[1] - y0) / height_um:.4f}%;"
             f"width:{100 * nx * maps.region_um / width_um:.4f}%;"
             f"height:{100 * ny * maps.region_um / height_um:.4f}%")
    outline = _cluster_svg(maps.labels["heterogeneity_regions"], maps, extent)
    colours = maps.label_colours.get("local_score_class") or SCORE_COLOURS
    legend = "".join(f'<span style="color:{css_colour(colours.get(v, SCORE_COLOURS[v]))}">■</span> {n} '
                     for v, n in SCORE_NAMES.items())
    figures = [_figure("local score (the slide rules applied to each region)",
                       label_rgba(maps.labels["local_score_class"], colours), place, shape, outline, legend)]
    layers = {name: maps.channels[name] for name in CHANNELS if name in MAP_INFO}
    if maps.excluded is not None:
        layers["excluded"] = maps.excluded
    for name, values in layers.items():
        caption, unit, top = map_style(name, values)
        figures.append(_figure(caption, scalar_rgba(values, 0.0, top), place, shape, outline,
                               _colour_bar(0.0, top, unit)))
    return _viridis_gradient() + "".join(figures)


def _figure(caption: str, rgba: np.ndarray, place: str, shape: tuple[int, int], outline: str, legend: str) -> str:
    height, width = shape
    return (f'<figure><figcaption>{escape(caption)}</figcaption>'
            f'<div class="map" style="aspect-ratio:{width}/{height}">'
            f'<img class="layer" alt="" src="{data_uri(rgba, "PNG")}" style="{place}">{outline}</div>'
            f"<div>{legend}</div></figure>")


def _cluster_svg(clusters: np.ndarray, maps: RegionMaps, extent: tuple[float, float, float, float]) -> str:
    """Cluster edges as one SVG path in slide µm: every grid edge with different labels on its two sides."""
    padded = np.pad(clusters, 1)
    r = maps.region_um
    ox, oy = maps.origin_um
    rows, cols = np.nonzero((padded[:, 1:] != padded[:, :-1])[1:-1])  # vertical edges left of column `cols`
    vertical = ("M%.1f %.1fv" + f"{r:g}") * len(rows) % tuple(np.column_stack([ox + cols * r, oy + rows * r]).ravel())
    rows, cols = np.nonzero((padded[1:, :] != padded[:-1, :])[:, 1:-1])  # horizontal edges above row `rows`
    horizontal = ("M%.1f %.1fh" + f"{r:g}") * len(rows) % tuple(np.column_stack([ox + cols * r, oy + rows * r]).ravel())
    if not vertical and not horizontal:
        return ""
    x0, y0, width_um, height_um = extent
    return (f'<svg class="clusters" viewBox="{x0:.1f} {y0:.1f} {width_um:.1f} {height_um:.1f}" '
            f'preserveAspectRatio="none"><path d="{vertical}{horizontal}" fill="none" stroke="#111" '
            f'stroke-width="2" vector-effect="non-scaling-stroke"/></svg>')


def _viridis_gradient() -> str:
    """The colour-bar gradient, defined once per page and referenced by id."""
    stops = "".join(f'<stop offset="{i / (len(VIRIDIS) - 1):.2f}" stop-color="{css_colour(c)}"/>'
                    for i, c in enumerate(VIRIDIS.astype(int)))
    return f'<svg width="0" height="0" style="position:absolute"><defs><linearGradient id="viridis">{stops}' \
           f'</linearGradient></defs></svg>'


def _colour_bar(low: float, high: float, unit: str) -> str:
    return (f'<svg viewBox="0 0 300 30" width="100%" style="max-width:300px">'
            f'<rect x="0" y="0" width="300" height="12" fill="url(#viridis)"/>'
            f'<text x="0" y="26">{format_value(low)}{escape(unit)}</text>'
            f'<text x="300" y="26" text-anchor="end">{format_value(high)}{escape(unit)}</text></svg>')
