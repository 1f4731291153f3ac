"""review.html and overlay.png: self-contained, complete, and rendered by headless Chromium without errors."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from her2slide.outputs.overlay import thumbnail_regions, write_overlay_png
from her2slide.outputs.review import COMPLETENESS_BINS, DAB_BINS, histograms, write_review_html
from region_maps_fixtures import MARKED, ORIGIN_UM, REGION_UM, make_heterogeneity, make_maps, make_report

THUMB_MPP = 8.0


def _thumbnail() -> np.ndarray:
    """A pale slide 2.1 x 2.7 mm at 8 µm/px (the map's grid covers x 1.0-1.7, y 2.0-2.5 mm), tissue blob on it."""
    rows, cols = np.indices((340, 260))
    tissue = ((rows - 270) / 60) ** 2 + ((cols - 165) / 70) ** 2 < 1
    image = np.full((340, 260, 3), 235, dtype=np.uint8)
    image[tissue] = (190, 160, 200)
    return image


def _cells_parquet(path: Path, n: int = 500) -> Path:
    rng = np.random.default_rng(3)
    table = pa.table({
        "x": rng.uniform(0, 8000, n), "completeness": rng.uniform(0, 1, n).astype(np.float32),
        "membrane_dab_od": rng.gamma(2.0, 0.15, n).astype(np.float32), "cell_class": rng.integers(0, 4, n),
    })
    pq.write_table(table, path)
    return path


@pytest.fixture()
def page(tmp_path: Path) -> Path:
    path = tmp_path / "review.html"
    write_review_html(path, make_report(), make_maps(excluded=True), make_heterogeneity(), _thumbnail(), THUMB_MPP,
                      _cells_parquet(tmp_path / "cells.parquet"))
    return path


def test_page_is_self_contained_and_complete(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!data:)", text), "every resource must be inline"
    assert not re.search(r"url\((?![\"']?(data:|#))", text), "CSS may only reference inline data or ids"
    assert "http://" not in text.split("</head>")[1] and "https://" not in text
    assert "Content-Security-Policy" in text
    for expected in ("2+", "equivocal", "breast", "14.0%", "focal", "one cluster", "positive_percent",
                     "share of cells scored 3+", "mean membrane completeness", "mean membrane DAB",
                     "tumour cell density", "excluded area", "Membrane completeness", "Membrane DAB",
                     "no QC flags", "slide-7", "classical-segmenter"):
        assert expected in text, expected
    assert text.count('<img class="layer"') == 1 + 8  # local score + 4 fractions, completeness, DAB, density, excluded


def test_not_scored_and_qc_dict(tmp_path: Path) -> None:
    report = make_report(score=None)
    report["qc"] = {"verdict": "fail", "flags": ["few_tumour_cells", {"name": "blur", "share": 0.4}]}
    path = tmp_path / "review.html"
    write_review_html(path, report, make_maps(), make_heterogeneity(), _thumbnail(), THUMB_MPP,
                      _cells_parquet(tmp_path / "cells.parquet"))
    text = path.read_text(encoding="utf-8")
    assert "not scored" in text and "fail" in text and "few_tumour_cells" in text and "blur (share: 0.4)" in text


def test_histograms_count_every_cell(tmp_path: Path) -> None:
    completeness, dab = histograms(_cells_parquet(tmp_path / "cells.parquet", n=777))
    assert completeness.sum() == dab.sum() == 777
    assert len(completeness) == len(COMPLETENESS_BINS) - 1 and len(dab) == len(DAB_BINS) - 1


def test_overlay_png_puts_the_map_on_its_regions(tmp_path: Path) -> None:
    maps = make_maps()
    thumb = _thumbnail()
    path = tmp_path / "overlay.png"
    write_overlay_png(path, thumb, THUMB_MPP, maps, make_report(score=None))
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] >= thumb.shape[0] and image.shape[1] > thumb.shape[1]  # thumbnail + legend panel
    rows, cols = thumbnail_regions(thumb.shape[:2], THUMB_MPP, maps)
    # the thumbnail pixel at the marked (3+) region's centre turns red; one outside the grid is untouched
    r, c = MARKED
    y = int((ORIGIN_UM[1] + (r + 0.5) * REGION_UM) / THUMB_MPP)
    x = int((ORIGIN_UM[0] + (c + 0.5) * REGION_UM) / THUMB_MPP)
    assert (rows[y], cols[x]) == (r, c)
    red = image[y, x].astype(int)
    assert red[0] > red[1] + 40 and red[0] > red[2] + 40
    assert (image[2, 2] == thumb[2, 2]).all() and rows[2] == -1


# ---------------------------------------------------------------- headless Chromium


def _chromium() -> str | None:
    return os.environ.get("HER2SLIDE_CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)


def render(html: Path, out: Path, size: str = "1400,2400") -> tuple[list[str], np.ndarray]:
    """Screenshot ``html`` with headless Chromium; return its console messages and the image.

    Chromium logs every console message (and every uncaught error and CSP violation) as an
    ``INFO:CONSOLE`` line on stderr with ``--enable-logging=stderr``.
    """
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = out / f"{html.stem}.png"
    result = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={out / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
         f"--window-size={size}", f"--screenshot={shot}", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return console, np.asarray(Image.open(shot).convert("RGB"))


def test_harness_sees_javascript_errors(tmp_path: Path) -> None:
    """Control: a page with a script error must produce a console line, or the real check proves nothing."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefined();</script></body></html>")
    console, _ = render(broken, tmp_path, size="300,200")
    assert any("notDefined" in line for line in console)


def test_review_renders_in_chromium_without_console_messages(page: Path, tmp_path: Path) -> None:
    console, image = render(page, tmp_path)
    assert console == []
    assert image.std() > 20, "blank screenshot"
    colours = np.unique(image.reshape(-1, 3)[::97], axis=0)
    assert len(colours) > 50


# ---------------------------------------------------------------- readable for a pathologist


def test_qc_exclusions_and_the_heterogeneity_call_are_spelled_out(tmp_path: Path) -> None:
    report = make_report()
    report["qc"] = {"verdict": "pass", "flags": [], "reasons": [], "assessed_area_mm2": 0.4209,
                    "excluded": {"saturated": 0.0, "blur": 0.0041, "edge": 0.0933}, "excluded_fraction": 0.2313,
                    "cells_removed": {"roi": 0, "qc": 25}}
    path = tmp_path / "review.html"
    write_review_html(path, report, make_maps(), make_heterogeneity(), _thumbnail(), THUMB_MPP,
                      _cells_parquet(tmp_path / "cells.parquet"), gallery="<p>GALLERY</p>")
    text = path.read_text(encoding="utf-8")
    assert "QC: 23.1% of the assessed tissue excluded (edge 22.2%, blur 1.0%); 25 cells removed" in text
    assert "Excluded from scoring: <b>23.1%</b> of the assessed tissue; cells removed: 25 in excluded blocks" in text
    assert "<td>edge</td><td class=\"num\">0.093</td><td class=\"num\">22.2%</td>" in text
    assert "<td>saturated</td>" not in text and "<p>GALLERY</p>" in text
    visible, folded = text.split("all heterogeneity metrics")
    assert "<b>Focal</b>: the positive cells are a subpopulation gathered in distinct areas" in visible
    assert "tumour cells 2+ or stronger" in visible and "positive_percent" not in visible
    assert "positive_percent" in folded


def test_a_scored_slide_with_qc_flags_says_what_to_check(tmp_path: Path) -> None:
    """Issue 18's verdict scores a slide with flags and says, per flag, what a pathologist should
    check: the page shows each of those sentences beside the score and in the QC section."""
    report = make_report()
    warnings = ["150 tumour cells scored (fewer than 200; one cell is 0.7% of them): check on the image that they "
                "represent the tumour", "background DAB over the tissue (OD 0.062) is above what DAB-free tissue "
                "shows (0.05): check the background & the negative control; faint (1+) calls may be raised"]
    report["qc"] = {"verdict": "pass", "flags": ["few_tumour_cells", "background_dab"], "failed": [], "reasons": [],
                    "warnings": warnings, "assessed_area_mm2": 0.42, "excluded": {"edge": 0.0},
                    "cells_removed": {"roi": 0, "qc": 0}}
    path = tmp_path / "review.html"
    write_review_html(path, report, make_maps(), make_heterogeneity(), _thumbnail(), THUMB_MPP,
                      _cells_parquet(tmp_path / "cells.parquet"))
    header, body = path.read_text(encoding="utf-8").split("</header>")
    for warning in warnings:
        assert f'<li class="check">QC flag: {html.escape(warning)}</li>' in header
        assert f"<li>{html.escape(warning)}</li>" in body.split("What to check")[1]
    assert "verdict: <b>pass</b> with flags" in body and "no QC flags" not in body


def test_slide_derived_text_is_escaped(tmp_path: Path) -> None:
    report = make_report()
    report["provenance"]["input"] = '/data/<script>alert(1)</script> "x".svs'
    report["reasons"] = ['<img src=x onerror="alert(2)">']
    report["qc"] = {"verdict": "fail", "flags": ["<b>flag</b>"], "reasons": ["<i>why</i>"]}
    path = tmp_path / "review.html"
    write_review_html(path, report, make_maps(), make_heterogeneity(), _thumbnail(), THUMB_MPP,
                      _cells_parquet(tmp_path / "cells.parquet"))
    text = path.read_text(encoding="utf-8")
    for raw in ("<script>alert", "<img src=x", "<b>flag", "<i>why"):
        assert raw not in text, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in text


def test_gallery_picks_each_class_across_its_range_and_the_cells_nearest_each_cut() -> None:
    from her2slide.outputs.cell_gallery import PER_GROUP, class_groups, threshold_groups
    from her2slide.scoring import ScoringRules

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 4, 400)
    dab = rng.uniform(0, 1.2, 400)
    completeness = rng.uniform(0, 1, 400)
    intensity = np.digitize(dab, [0.1, 0.28, 0.55])
    groups = class_groups(codes, dab, score="2+")
    assert [g.title.split()[0] for g in groups] == ["2+", "3+", "1+", "0"] and "made the score" in groups[0].title
    for group, code in zip(groups, (2, 3, 1, 0)):
        members = dab[codes == code]
        assert len(group.rows) == PER_GROUP and (codes[group.rows] == code).all()
        assert dab[group.rows[0]] == members.min() and dab[group.rows[-1]] == members.max()
    rules = ScoringRules()
    cuts = threshold_groups(dab, completeness, intensity, rules)
    assert len(cuts) == 4
    nearest = np.sort(np.abs(dab - rules.intense_od))
    picked = np.abs(dab[cuts[2].rows] - rules.intense_od)
    below = (dab[cuts[2].rows] < rules.intense_od).sum()
    assert below == PER_GROUP // 2 and picked.max() <= nearest[PER_GROUP * 2]
    assert (intensity[cuts[3].rows] >= 2).all()
