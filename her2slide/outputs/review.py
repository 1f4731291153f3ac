"""``review.html``: one self-contained page a pathologist opens from disk to check a result.

Everything is inline: the thumbnail is a JPEG data URI used once as a CSS background;
each map is a PNG data URI with one pixel per region, scaled and placed over the
thumbnail by CSS percentages computed from the micrometre extents (so the page stays
small however large the slide); charts are inline SVG; a few lines of inline script
drive the opacity slider. No network access, no external file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from importlib import resources
from pathlib import Path
from string import Template
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

from her2slide.outputs.overlay import (SCORE_NAMES, VIRIDIS, label_rgba, scalar_rgba, score_text)
from her2slide.maps.region_maps import CHANNELS, SCORE_COLOURS, HeterogeneityResult, RegionMaps

#: Longest side of the thumbnail embedded in the page (pixels): enough to see, small enough to mail.
THUMBNAIL_MAX_PX = 1200
_SCORE_VALUES = {name: value for value, name in SCORE_NAMES.items()}
#: Fixed histogram bins, so cells.parquet can be binned batch by batch.
COMPLETENESS_BINS = np.linspace(0.0, 1.0, 21)
DAB_BINS = np.linspace(0.0, 1.2, 25)

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


def write_review_html(path: Path, report: dict, maps: RegionMaps, heterogeneity: HeterogeneityResult,
                      thumbnail_rgb: np.ndarray, thumb_mpp: float, cells_parquet: Path, gallery: str = "") -> None:
    """Render the review page for one scored slide and write it atomically to ``path``.

    ``gallery``: the example-cell section's HTML (her2slide.outputs.cell_gallery), built where
    the slide is open.
    """
    template = Template(resources.files("her2slide.outputs").joinpath("review_template.html").read_text("utf-8"))
    thumb, scale = _display_thumbnail(thumbnail_rgb)
    extent = _thumbnail_extent(thumb.shape[:2], thumb_mpp * scale, maps.mpp_level0)
    completeness, dab = histograms(Path(cells_parquet))
    rules = ((report.get("provenance") or {}).get("config") or {}).get("scoring") or {}
    score = report.get("score")
    page = template.substitute(
        title=escape(_slide_name(report)),
        score=escape(score if score is not None else "not scored"),
        badge_class="" if score is not None else "none",
        badge_colour=_css_colour(SCORE_COLOURS.get(_SCORE_VALUES.get(score, 0), (136, 136, 136))),
        summary=escape(" · ".join(str(v) for v in (score_text(report), f"criteria: {report.get('criteria', '?')}")
                                  if v)),
        reasons="".join(f"<li>{escape(r)}</li>" for r in _as_list(report.get("reasons")))
                + "".join(f'<li class="check">QC flag: {escape(c)}</li>' for c in qc_checks(report.get("qc"))),
        class_table=_class_table(report),
        class_chart=_class_chart(report),
        pattern=escape(heterogeneity.pattern),
        heterogeneity=_heterogeneity(heterogeneity),
        thumbnail=data_uri(thumb, "JPEG"),
        maps=_maps(maps, extent, thumb.shape[:2]),
        map_note=escape(f"{maps.region_um:g} µm regions; no colour: no tumour cells (local score: too few to score)"),
        completeness_histogram=svg_histogram(completeness, COMPLETENESS_BINS, "completeness (share of circumference)",
                                             [(rules["complete_fraction"], "complete")]
                                             if "complete_fraction" in rules else []),
        dab_histogram=svg_histogram(dab, DAB_BINS, "membrane DAB (OD)",
                                    [(rules[k], k.replace("_od", "")) for k in ("faint_od", "moderate_od", "intense_od")
                                     if k in rules]),
        qc=_qc(report.get("qc")),
        qc_summary=escape(_qc_summary(report.get("qc"))),
        gallery=gallery or '<p class="muted">no cells to show</p>',
        provenance=_provenance(report),
    )
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- data


def histograms(cells_parquet: Path) -> tuple[np.ndarray, np.ndarray]:
    """Cell counts per completeness and membrane-DAB bin, reading only those two columns batch by batch.

    Values beyond the bins' range are counted in the first or last bin.
    """
    import pyarrow.parquet as pq

    completeness = np.zeros(len(COMPLETENESS_BINS) - 1, dtype=np.int64)
    dab = np.zeros(len(DAB_BINS) - 1, dtype=np.int64)
    for batch in pq.ParquetFile(cells_parquet).iter_batches(columns=["completeness", "membrane_dab_od"]):
        for counts, bins, name in ((completeness, COMPLETENESS_BINS, "completeness"),
                                   (dab, DAB_BINS, "membrane_dab_od")):
            values = batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            values = np.clip(values[np.isfinite(values)], bins[0], bins[-1])
            counts += np.histogram(values, bins=bins)[0]
    return completeness, dab


def _display_thumbnail(thumbnail_rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The thumbnail shrunk to at most THUMBNAIL_MAX_PX on its longest side, and the factor it grew in µm/px."""
    height, width = thumbnail_rgb.shape[:2]
    factor = max(height, width) / THUMBNAIL_MAX_PX
    if factor <= 1:
        return thumbnail_rgb[..., :3], 1.0
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    small = np.asarray(Image.fromarray(thumbnail_rgb[..., :3]).resize(size, Image.Resampling.BOX))
    return small, width / size[0]


def _thumbnail_extent(shape: tuple[int, int], thumb_mpp: float, mpp_level0: float) -> tuple[float, float, float, float]:
    """(x0, y0, width, height) in slide µm covered by the thumbnail (level-0 pixel j centred on j)."""
    height, width = shape
    start = -0.5 * mpp_level0
    return start, start, width * thumb_mpp, height * thumb_mpp


# ---------------------------------------------------------------- sections


def _class_table(report: dict) -> str:
    cells = report.get("cells") or {}
    total = cells.get("total")
    percent = cells.get("percent") or {}
    rows = []
    for value, name in SCORE_NAMES.items():
        if name not in percent:
            continue
        share = float(percent[name])
        count = f"{round(share * total / 100):d}" if isinstance(total, (int, float)) else ""
        rows.append(f'<tr><td><span style="color:{_css_colour(SCORE_COLOURS[value])}">■</span> {escape(name)}</td>'
                    f'<td class="num">{count}</td><td class="num">{share:.1f}%</td></tr>')
    total_text = f"{total:,}" if isinstance(total, int) else escape(total)
    return (f"<table><tr><th>class</th><th>cells</th><th>share</th></tr>{''.join(rows)}"
            f'<tr><th>total</th><td class="num">{total_text}</td><td></td></tr></table>')


def _class_chart(report: dict) -> str:
    percent = (report.get("cells") or {}).get("percent") or {}
    bars = []
    for i, (value, name) in enumerate(SCORE_NAMES.items()):
        share = float(percent.get(name, 0.0))
        y = 10 + i * 28
        bars.append(f'<text x="0" y="{y + 15}">{escape(name)}</text>'
                    f'<rect x="34" y="{y}" width="{3.4 * share:.1f}" height="20" '
                    f'fill="{_css_colour(SCORE_COLOURS[value])}"/>'
                    f'<text x="{40 + 3.4 * share:.1f}" y="{y + 15}">{share:.1f}%</text>')
    return (f'<svg role="img" aria-label="class percentages" viewBox="0 0 420 {20 + 28 * len(SCORE_NAMES)}" '
            f'width="100%" style="max-width:520px">{"".join(bars)}</svg>')


#: What each pattern means, in words (docs/heterogeneity.md).
_PATTERN_WORDS = {
    "homogeneous": "the positive cells are not a distinct subpopulation: the slide reads the same throughout",
    "focal": "the positive cells are a subpopulation gathered in distinct areas and absent from others",
    "mosaic": "the positive cells are a subpopulation intermixed with negative cells throughout",
}
#: The few heterogeneity numbers a reader needs: (metric key, label, shown as a percentage).
_KEY_METRICS = (
    ("positive_percent", "tumour cells {positive} or stronger", False),
    ("cluster_count", "clusters of positive regions", False),
    ("positive_area_share", "scored regions where positive cells are the majority", True),
    ("largest_cluster_share_of_positive_cells", "positive cells in the largest cluster", True),
    ("segregation", "segregation (0 intermixed … 1 apart)", False),
)


def _heterogeneity(result: HeterogeneityResult) -> str:
    """The call in words, the few numbers behind it, the clusters; every metric folded away."""
    metrics = dict(result.metrics)
    reason = metrics.pop("reason", None)
    positive = metrics.get("positive_class", "2+")
    words = _PATTERN_WORDS.get(result.pattern, "")
    out = f'<p class="call"><b>{escape(result.pattern.capitalize())}</b>: {escape(words)}.</p>'
    if isinstance(reason, str):
        out += f'<p class="muted">Why: {escape(reason)}</p>'
    rows = []
    for key, label, percent in _KEY_METRICS:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = f"{100 * value:.1f}%" if percent else (f"{value:.1f}%" if key == "positive_percent" else _fmt(value))
            rows.append(f'<tr><th>{escape(label.format(positive=positive))}</th>'
                        f'<td class="num">{escape(text)}</td></tr>')
    out += f'<table class="key">{"".join(rows)}</table>' if rows else ""
    if result.clusters:
        keys = [k for k in result.clusters[0] if not isinstance(result.clusters[0][k], (dict, list))][:8]
        head = "".join(f"<th>{escape(k)}</th>" for k in ["#", *keys])
        body = "".join("<tr>" + f'<td class="num">{i}</td>' + "".join(
            f'<td class="num">{escape(_fmt(c.get(k)))}</td>' for k in keys) + "</tr>"
            for i, c in enumerate(result.clusters[:10], start=1))
        more = f'<p class="muted">{len(result.clusters) - 10} more clusters in report.json</p>' \
            if len(result.clusters) > 10 else ""
        out += f'<h3>Clusters of positive regions</h3><div class="scroll"><table>{head}{body}</table></div>{more}'
    out += ('<details><summary>all heterogeneity metrics</summary><div class="metrics">' + "".join(
        f"<div><span>{escape(k)}</span><span>{escape(v)}</span></div>" for k, v in _flatten(metrics))
        + "</div></details>")
    return out


def _maps(maps: RegionMaps, extent: tuple[float, float, float, float], shape: tuple[int, int]) -> str:
    """One figure per map: the region grid as a pixelated layer placed over the thumbnail by µm extents."""
    x0, y0, width_um, height_um = extent
    ny, nx = maps.shape
    place = (f"left:{100 * (maps.origin_um[0] - x0) / width_um:.4f}%;"
             f"top:{100 * (maps.origin_um[1] - y0) / height_um:.4f}%;"
             f"width:{100 * nx * maps.region_um / width_um:.4f}%;"
             f"height:{100 * ny * maps.region_um / height_um:.4f}%")
    outline = _cluster_svg(maps.labels["heterogeneity_regions"], maps, extent)
    colours = maps.label_colours.get("local_score_class") or SCORE_COLOURS
    legend = "".join(f'<span style="color:{_css_colour(colours.get(v, SCORE_COLOURS[v]))}">■</span> {n} '
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
    stops = "".join(f'<stop offset="{i / (len(VIRIDIS) - 1):.2f}" stop-color="{_css_colour(c)}"/>'
                    for i, c in enumerate(VIRIDIS.astype(int)))
    return f'<svg width="0" height="0" style="position:absolute"><defs><linearGradient id="viridis">{stops}' \
           f'</linearGradient></defs></svg>'


def _colour_bar(low: float, high: float, unit: str) -> str:
    return (f'<svg viewBox="0 0 300 30" width="100%" style="max-width:300px">'
            f'<rect x="0" y="0" width="300" height="12" fill="url(#viridis)"/>'
            f'<text x="0" y="26">{_fmt(low)}{escape(unit)}</text>'
            f'<text x="300" y="26" text-anchor="end">{_fmt(high)}{escape(unit)}</text></svg>')


def svg_histogram(counts: np.ndarray, bins: np.ndarray, xlabel: str, markers: list[tuple[float, str]]) -> str:
    """Bar chart of ``counts`` over ``bins`` with labelled vertical lines at ``markers`` (value, label)."""
    width, height, left, bottom = 420.0, 180.0, 40.0, 150.0
    top = max(int(counts.max(initial=0)), 1)
    scale_x = (width - left - 10) / (bins[-1] - bins[0])
    bars = "".join(
        f'<rect x="{left + (a - bins[0]) * scale_x:.1f}" y="{bottom - 130 * c / top:.1f}" '
        f'width="{max((b - a) * scale_x - 1, 0.5):.1f}" height="{130 * c / top:.1f}" fill="#5b7fa6"/>'
        for a, b, c in zip(bins[:-1], bins[1:], counts, strict=True))
    lines = "".join(
        f'<line x1="{left + (v - bins[0]) * scale_x:.1f}" x2="{left + (v - bins[0]) * scale_x:.1f}" y1="14" '
        f'y2="{bottom}" stroke="#c0392b" stroke-dasharray="3 2"/>'
        + _marker_label(left + (v - bins[0]) * scale_x, 12 + 11 * (i % 2), f"{label} {v:g}",
                        right=v > bins[0] + 0.75 * (bins[-1] - bins[0]))
        for i, (v, label) in enumerate(markers) if bins[0] <= v <= bins[-1])
    ticks = "".join(f'<text x="{left + (v - bins[0]) * scale_x:.1f}" y="{bottom + 14}" '
                    f'text-anchor="middle">{v:g}</text>' for v in np.linspace(bins[0], bins[-1], 5))
    return (f'<svg role="img" aria-label="{escape(xlabel)} histogram" viewBox="0 0 {width:g} {height:g}" width="100%" '
            f'style="max-width:560px"><text x="0" y="{bottom - 126}">{top}</text><text x="0" y="{bottom}">0</text>'
            f'<line x1="{left}" x2="{width - 10}" y1="{bottom}" y2="{bottom}" stroke="#333"/>{bars}{lines}{ticks}'
            f'<text x="{(width + left) / 2}" y="{height - 4}" text-anchor="middle">{escape(xlabel)}; '
            f'{int(counts.sum()):,} cells</text></svg>')


def _marker_label(x: float, y: float, text: str, right: bool) -> str:
    """A marker's label beside its line, on the left of it near the right edge so it is not cut off."""
    anchor = ' text-anchor="end"' if right else ""
    return f'<text x="{x - 2 if right else x + 2:.1f}" y="{y}"{anchor}>{escape(text)}</text>'


def qc_checks(qc: Any) -> list[str]:
    """What QC asks the pathologist to check on a slide it did not refuse: each flag's sentence
    (report.json ``qc.warnings``, her2slide.qc.verdict). Shown beside the score on the review
    page and in the viewer, so a flagged score never looks like a clean one."""
    warnings = qc.get("warnings") if isinstance(qc, dict) else None
    return [str(w) for w in warnings] if isinstance(warnings, list) else []


def _qc(qc: Any) -> str:
    """QC: the verdict and its reasons, what to check, the area excluded per reason, the cells
    removed, the flags.

    Takes report.json's dict (her2slide.qc) or an older bare list of flags.
    """
    qc = qc if isinstance(qc, dict) else {"flags": qc or []}
    flags = qc.get("flags") or []
    if isinstance(flags, dict):
        flags = [f"{k}: {v}" for k, v in flags.items()]
    checks = qc_checks(qc)
    parts = []
    if qc.get("verdict") is not None:
        parts.append(f"<p>verdict: <b>{escape(qc['verdict'])}</b>{' with flags' if checks else ''}</p>")
    parts.extend(f'<p class="flag">{escape(reason)}</p>' for reason in qc.get("reasons") or [])
    if checks:
        parts.append("<h3>What to check</h3><ul>" + "".join(f"<li>{escape(c)}</li>" for c in checks) + "</ul>")
    parts.append(_qc_exclusions(qc))
    if flags:
        parts.append("".join(f'<span class="flag">{escape(_flag_text(f))}</span>' for f in flags))
    elif not checks:
        parts.append('<p class="ok">no QC flags</p>')
    return "".join(parts)


def _qc_summary(qc: Any) -> str:
    """One line for the page's header: how much tissue QC took out, and why."""
    if not isinstance(qc, dict) or "excluded" not in qc:
        return ""
    assessed = qc.get("assessed_area_mm2") or 0
    excluded = {k: v for k, v in (qc.get("excluded") or {}).items() if isinstance(v, (int, float)) and v > 0}
    removed = (qc.get("cells_removed") or {}).get("qc", 0)
    if not excluded or not assessed:
        return "QC: no tissue excluded"
    parts = ", ".join(f"{reason} {100 * area / assessed:.1f}%" for reason, area in
                      sorted(excluded.items(), key=lambda item: -item[1]))
    return (f"QC: {100 * sum(excluded.values()) / assessed:.1f}% of the assessed tissue excluded ({parts}); "
            f"{removed:,} cells removed")


def _qc_exclusions(qc: dict) -> str:
    """Area excluded per reason (mm² and share of the assessed tissue) and the cells that removed."""
    excluded = {k: v for k, v in (qc.get("excluded") or {}).items() if isinstance(v, (int, float)) and v > 0}
    assessed = qc.get("assessed_area_mm2")
    removed = qc.get("cells_removed") or {}
    if not excluded and not any(removed.values()):
        return '<p class="ok">no tissue excluded</p>' if "excluded" in qc else ""

    def share(area: float) -> str:
        return f"{100 * area / assessed:.1f}%" if isinstance(assessed, (int, float)) and assessed > 0 else ""

    rows = "".join(f'<tr><td>{escape(reason)}</td><td class="num">{area:.3f}</td>'
                   f'<td class="num">{share(area)}</td></tr>'
                   for reason, area in sorted(excluded.items(), key=lambda item: -item[1]))
    total = sum(excluded.values())
    lost = ", ".join(f"{n:,} {where}" for where, n in (("in excluded blocks", removed.get("qc", 0)),
                                                      ("outside the ROI", removed.get("roi", 0))) if n)
    return (f"<p>Excluded from scoring: <b>{share(total) or f'{total:.3f} mm²'}</b> of the assessed tissue"
            f"{f'; cells removed: {lost}' if lost else ''}.</p>"
            f'<table><tr><th>reason</th><th>mm²</th><th>share</th></tr>{rows}'
            f'<tr><th>total</th><td class="num">{total:.3f}</td><td class="num">{share(total)}</td></tr></table>')


def _flag_text(flag: Any) -> str:
    if isinstance(flag, dict):
        name = flag.get("name") or flag.get("flag") or flag.get("code") or ""
        rest = ", ".join(f"{k}: {_fmt(v)}" for k, v in flag.items() if k not in ("name", "flag", "code"))
        return f"{name} ({rest})" if name and rest else name or rest
    return str(flag)


def _provenance(report: dict) -> str:
    p = report.get("provenance") or {}
    slide = p.get("slide") or {}
    model = p.get("model") or {}
    rows = [
        ("input", p.get("input")),
        ("SHA-256", p.get("input_sha256")),
        ("slide", f"{' x '.join(str(v) for v in slide.get('dimensions', []))} px, {slide.get('vendor', '?')}"
                  if slide else None),
        ("pixel size", f"{slide.get('mpp')} µm/px ({slide.get('mpp_source', '?')})" if slide.get("mpp") else None),
        ("working resolution", f"{p.get('work_mpp')} µm/px" if p.get("work_mpp") else None),
        ("segmenter", f"{model.get('id')}" + (f" ({str(model['sha256'])[:12]})" if model.get("sha256") else "")
         if model else None),
        ("code version", p.get("code_version")),
        ("total time", f"{report['timings']['total']:.1f} s" if "total" in (report.get("timings") or {}) else None),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows if v is not None)
    config = json.dumps(p.get("config"), indent=1) if p.get("config") is not None else None
    details = f"<details><summary>full settings</summary><pre>{escape(config)}</pre></details>" if config else ""
    timings = report.get("timings") or {}
    if timings:
        details += ("<details><summary>timings</summary><table>" + "".join(
            f'<tr><th>{escape(k)}</th><td class="num">{_fmt(v)} s</td></tr>' for k, v in timings.items())
            + "</table></details>")
    return f"<table>{table}</table>{details}"


# ---------------------------------------------------------------- small helpers


def data_uri(image: np.ndarray, kind: str) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=kind, **({"quality": 85} if kind == "JPEG" else {"optimize": True}))
    return f"data:image/{kind.lower()};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _slide_name(report: dict) -> str:
    source = (report.get("provenance") or {}).get("input")
    return Path(source).stem if source else "slide"


def _flatten(metrics: dict, prefix: str = "") -> Iterable[tuple[str, str]]:
    """Nested metrics as (dotted key, short text) rows; long lists are summarised."""
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, list) and len(value) > 6:
            yield name, f"[{len(value)} values]"
        else:
            yield name, _fmt(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if np.isfinite(value) else "—"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _css_colour(rgb: Iterable[int]) -> str:
    r, g, b = list(rgb)[:3]
    return f"rgb({int(r)},{int(g)},{int(b)})"


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value))
