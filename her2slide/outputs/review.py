"""``review.html``: one self-contained page a pathologist opens from disk to check a result.

Everything is inline: the thumbnail is a JPEG data URI used once as a CSS background;
each map is a PNG data URI placed over it (:mod:`her2slide.outputs.review_maps`); charts are
inline SVG; a few lines of inline script drive the opacity slider. No network access, no
external file. This module assembles the page and its score, heterogeneity, histogram and
provenance sections; the QC section is :mod:`her2slide.outputs.review_qc`.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from string import Template
from collections.abc import Iterable
from typing import Any

import numpy as np

from her2slide.maps.region_maps import SCORE_COLOURS, HeterogeneityResult, RegionMaps
from her2slide.outputs.inline_html import css_colour, format_value, data_uri, escape
from her2slide.outputs.overlay import SCORE_NAMES, score_text
from her2slide.outputs.review_maps import display_thumbnail, map_figures, thumbnail_extent
from her2slide.outputs.review_qc import qc_checks, qc_section, qc_summary

_SCORE_VALUES = {name: value for value, name in SCORE_NAMES.items()}
#: Fixed histogram bins, so cells.parquet can be binned batch by batch.
COMPLETENESS_BINS = np.linspace(0.0, 1.0, 21)
DAB_BINS = np.linspace(0.0, 1.2, 25)


def write_review_html(path: Path, report: dict, maps: RegionMaps, heterogeneity: HeterogeneityResult,
                      thumbnail_rgb: np.ndarray, thumb_mpp: float, cells_parquet: Path, gallery: str = "") -> None:
    """Render the review page for one scored slide and write it atomically to ``path``.

    ``gallery``: the example-cell section's HTML (her2slide.outputs.cell_gallery), built where
    the slide is open.
    """
    template = Template(resources.files("her2slide.outputs").joinpath("review_template.html").read_text("utf-8"))
    thumb, scale = display_thumbnail(thumbnail_rgb)
    extent = thumbnail_extent(thumb.shape[:2], thumb_mpp * scale, maps.mpp_level0)
    completeness, dab = histograms(Path(cells_parquet))
    rules = ((report.get("provenance") or {}).get("config") or {}).get("scoring") or {}
    score = report.get("score")
    page = template.substitute(
        title=escape(_slide_name(report)),
        score=escape(score if score is not None else "not scored"),
        badge_class="" if score is not None else "none",
        badge_colour=css_colour(SCORE_COLOURS.get(_SCORE_VALUES.get(score, 0), (136, 136, 136))),
        summary=escape(" · ".join(str(v) for v in (score_text(report), f"criteria: {report.get('criteria', '?')}")
                                  if v)),
        reasons="".join(f"<li>{escape(r)}</li>" for r in _as_list(report.get("reasons")))
                + "".join(f'<li class="check">QC flag: {escape(c)}</li>' for c in qc_checks(report.get("qc"))),
        class_table=_class_table(report),
        class_chart=_class_chart(report),
        pattern=escape(heterogeneity.pattern),
        heterogeneity=_heterogeneity(heterogeneity),
        thumbnail=data_uri(thumb, "JPEG"),
        maps=map_figures(maps, extent, thumb.shape[:2]),
        map_note=escape(f"{maps.region_um:g} µm regions; no colour: no tumour cells (local score: too few to score)"),
        completeness_histogram=svg_histogram(completeness, COMPLETENESS_BINS, "completeness (share of circumference)",
                                             [(rules["complete_fraction"], "complete")]
                                             if "complete_fraction" in rules else []),
        dab_histogram=svg_histogram(dab, DAB_BINS, "membrane DAB (OD)",
                                    [(rules[k], k.replace("_od", "")) for k in ("faint_od", "moderate_od", "intense_od")
                                     if k in rules]),
        qc=qc_section(report.get("qc")),
        qc_summary=escape(qc_summary(report.get("qc"))),
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
        rows.append(f'<tr><td><span style="color:{css_colour(SCORE_COLOURS[value])}">■</span> {escape(name)}</td>'
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
                    f'fill="{css_colour(SCORE_COLOURS[value])}"/>'
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
            text = f"{100 * value:.1f}%" if percent else (f"{value:.1f}%" if key == "positive_percent" else format_value(value))
            rows.append(f'<tr><th>{escape(label.format(positive=positive))}</th>'
                        f'<td class="num">{escape(text)}</td></tr>')
    out += f'<table class="key">{"".join(rows)}</table>' if rows else ""
    if result.clusters:
        keys = [k for k in result.clusters[0] if not isinstance(result.clusters[0][k], (dict, list))][:8]
        head = "".join(f"<th>{escape(k)}</th>" for k in ["#", *keys])
        body = "".join("<tr>" + f'<td class="num">{i}</td>' + "".join(
            f'<td class="num">{escape(format_value(c.get(k)))}</td>' for k in keys) + "</tr>"
            for i, c in enumerate(result.clusters[:10], start=1))
        more = f'<p class="muted">{len(result.clusters) - 10} more clusters in report.json</p>' \
            if len(result.clusters) > 10 else ""
        out += f'<h3>Clusters of positive regions</h3><div class="scroll"><table>{head}{body}</table></div>{more}'
    out += ('<details><summary>all heterogeneity metrics</summary><div class="metrics">' + "".join(
        f"<div><span>{escape(k)}</span><span>{escape(v)}</span></div>" for k, v in _flatten(metrics))
        + "</div></details>")
    return out


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
            f'<tr><th>{escape(k)}</th><td class="num">{format_value(v)} s</td></tr>' for k, v in timings.items())
            + "</table></details>")
    return f"<table>{table}</table>{details}"


# ---------------------------------------------------------------- small helpers


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
            yield name, format_value(value)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]
