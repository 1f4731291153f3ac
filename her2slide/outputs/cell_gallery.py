"""The gallery of example cells on review.html: what each class, and each threshold, looked like.

A score is a count of cells sorted by rules; the page alone should show what "3+" meant on
this slide. So the gallery shows, at full resolution with the measured outline drawn on:

- for every class, cells spread over its range of stained-membrane DAB (the class's
  weakest to strongest, at evenly spaced quantiles), the score's own class first;
- for every threshold the rules apply (the three DAB intensity cut-offs and the
  completeness cut-off for complete staining), the cells nearest it on either side.

Only a few columns of cells.parquet are read whole (class, stained DAB, completeness,
intensity: ~10 bytes a cell); the positions and outlines of the chosen cells are then picked
batch by batch, so memory stays small whatever the slide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from her2slide.outputs.cells_table import outline_points
from her2slide.outputs.inline_html import data_uri, escape
from her2slide.scoring import CELL_CLASSES, Intensity, ScoringRules
from her2slide.slide import SlideReader

#: Crop side around each cell, µm (a cell is 10-20 µm across: the crop shows its neighbours too).
CROP_UM = 36.0
#: Crops are read at level 0, but never finer than this (µm/px), to keep the page small.
CROP_MIN_MPP = 0.25
#: Cells shown per class and per threshold.
PER_GROUP = 6
_INTENSITY_NAMES = {int(i): i.name.lower().replace("moderate", "weak–moderate") for i in Intensity}


@dataclass(frozen=True)
class Group:
    title: str
    note: str
    rows: np.ndarray  # cells.parquet rows, in display order


def gallery_html(reader: SlideReader, cells_parquet: Path, rules: ScoringRules, score: str | None) -> str:
    """The gallery section's HTML (empty when the slide has no cells)."""
    table = pq.read_table(cells_parquet, columns=["cell_class", "stained_dab_od", "completeness", "intensity"])
    if table.num_rows == 0:
        return ""
    codes = np.array([CELL_CLASSES.index(c) for c in table.column("cell_class").to_pylist()], dtype=np.int8)
    dab = table.column("stained_dab_od").to_numpy(zero_copy_only=False).astype(np.float64)
    completeness = table.column("completeness").to_numpy(zero_copy_only=False).astype(np.float64)
    intensity = table.column("intensity").to_numpy(zero_copy_only=False)
    groups = class_groups(codes, dab, score) + threshold_groups(dab, completeness, intensity, rules)
    wanted = np.unique(np.concatenate([g.rows for g in groups]))
    cells = _pick_rows(cells_parquet, wanted)
    parts = []
    for group in groups:
        figures = "".join(_figure(reader, cells[int(row)]) for row in group.rows)
        parts.append(f'<h3>{escape(group.title)}</h3><p class="muted">{escape(group.note)}</p>'
                     f'<div class="gallery">{figures}</div>')
    return "".join(parts)


def class_groups(codes: np.ndarray, dab: np.ndarray, score: str | None) -> list[Group]:
    """Per class (the score's class first, then strongest to weakest): cells at evenly spaced DAB quantiles."""
    order = sorted(range(len(CELL_CLASSES)), key=lambda c: (CELL_CLASSES[c] != score, -c))
    groups = []
    for code in order:
        members = np.flatnonzero(codes == code)
        if len(members) == 0:
            continue
        ranked = members[np.argsort(dab[members], kind="stable")]
        picks = ranked[np.unique(np.round(np.linspace(0, len(ranked) - 1, min(PER_GROUP, len(ranked)))).astype(int))]
        name = CELL_CLASSES[code]
        title = f"{name} cells" + (" — the class that made the score" if name == score else "")
        groups.append(Group(title, f"{len(members):,} cells ({100 * len(members) / len(codes):.1f}%); shown from "
                                   f"the weakest to the strongest stained membrane", picks))
    return groups


def threshold_groups(dab: np.ndarray, completeness: np.ndarray, intensity: np.ndarray,
                     rules: ScoringRules) -> list[Group]:
    """For each cut-off, the cells nearest it: half just below, half just above."""
    groups = []
    for key, below, above in (("faint_od", "none", "faint"), ("moderate_od", "faint", "weak–moderate"),
                              ("intense_od", "weak–moderate", "intense")):
        value = float(getattr(rules, key))
        picks = _nearest(dab, value, np.ones(len(dab), bool))
        if len(picks):
            groups.append(Group(f"Borderline at membrane DAB {value:g} OD ({below} | {above})",
                                "the cells whose stained-membrane DAB lies nearest this cut-off, below it first",
                                picks))
    stained = intensity >= int(Intensity.MODERATE)
    picks = _nearest(completeness, rules.complete_fraction, stained)
    if len(picks):
        groups.append(Group(f"Borderline at completeness {rules.complete_fraction:g} (incomplete | complete)",
                            "weak–moderate or intense cells whose stained share of the circumference lies nearest "
                            "the cut-off for complete staining, below it first", picks))
    return groups


def _nearest(values: np.ndarray, cut: float, among: np.ndarray) -> np.ndarray:
    """Up to PER_GROUP/2 rows just below ``cut`` and as many at or above it, ordered by value."""
    finite = among & np.isfinite(values)
    below = np.flatnonzero(finite & (values < cut))
    above = np.flatnonzero(finite & (values >= cut))
    half = PER_GROUP // 2
    below = below[np.argsort(cut - values[below], kind="stable")[:half]]
    above = above[np.argsort(values[above] - cut, kind="stable")[:half]]
    picks = np.concatenate([below, above])
    return picks[np.argsort(values[picks], kind="stable")]


def _pick_rows(path: Path, rows: np.ndarray) -> dict[int, dict]:
    """The chosen rows' positions, outlines and measurements, read batch by batch."""
    columns = ["x", "y", "outline_radius_px", "cell_class", "stained_dab_od", "completeness", "intensity"]
    found: dict[int, dict] = {}
    start = 0
    for batch in pq.ParquetFile(path).iter_batches(columns=columns):
        here = rows[(rows >= start) & (rows < start + batch.num_rows)]
        if len(here):
            for row, values in zip(here, batch.take(here - start).to_pylist()):
                found[int(row)] = values
        start += batch.num_rows
    return found


def _figure(reader: SlideReader, cell: dict) -> str:
    """A crop centred on the cell with its outline, and its class and measurements below."""
    mpp = max(reader.mpp, CROP_MIN_MPP)
    side0 = round(CROP_UM / reader.mpp)
    x0, y0 = round(cell["x"] - side0 / 2), round(cell["y"] - side0 / 2)
    crop = reader.read_at_mpp(x0, y0, side0, side0, mpp)
    scale = crop.shape[1] / side0  # crop pixels per level-0 pixel
    radii = np.asarray([cell["outline_radius_px"]], dtype=np.float64)
    outline = outline_points(np.array([cell["x"]]), np.array([cell["y"]]), radii)[0]
    # level-0 pixel j is centred on j; crop pixel i covers level-0 [x0 + i/scale, x0 + (i+1)/scale)
    points = " ".join(f"{(px - x0 + 0.5) * scale:.1f},{(py - y0 + 0.5) * scale:.1f}" for px, py in outline)
    h, w = crop.shape[:2]
    caption = (f"{escape(cell['cell_class'])} · DAB {cell['stained_dab_od']:.2f} OD · "
               f"{100 * cell['completeness']:.0f}% complete · {escape(_INTENSITY_NAMES.get(cell['intensity'], '?'))}")
    return (f'<figure class="cell"><div class="crop"><img alt="" src="{data_uri(crop, "JPEG")}">'
            f'<svg viewBox="0 0 {w} {h}" preserveAspectRatio="none"><polygon points="{points}" fill="none" '
            f'stroke="#00e5ff" stroke-width="1.5" vector-effect="non-scaling-stroke"/></svg></div>'
            f"<figcaption>{caption}</figcaption></figure>")
