"""Bulk-NGS dilution: the formula and its inverses against hand-worked values, round trips, impossible cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from her2slide.cli.main import main
from her2slide.context.ngs import (
    Unreachable, amplified_share, cn_from_log2, dilution_report, log2_ratio, min_amplified_fraction, min_purity,
    observed_cn,
)


@pytest.mark.parametrize("p, f, cn_a, cn_u, expected", [
    # tumour 0.2*12 + 0.8*2 = 4.0; bulk 0.5*4.0 + 0.5*2 = 3.0
    (0.5, 0.2, 12, 2, 3.0),
    # tumour 0.5*12 + 0.5*2 = 7.0; bulk 0.8*7.0 + 0.2*2 = 5.6 + 0.4 = 6.0
    (0.8, 0.5, 12, 2, 6.0),
    # pure, fully amplified: the clone itself, 20
    (1.0, 1.0, 20, 2, 20.0),
    # no tumour: 2 whatever the clones
    (0.0, 1.0, 20, 2, 2.0),
    # unamplified cells at 3 copies (polysomy): tumour 0.1*10 + 0.9*3 = 3.7; bulk 0.6*3.7 + 0.4*2 = 2.22 + 0.8 = 3.02
    (0.6, 0.1, 10, 3, 3.02),
])
def test_observed_copy_number_by_hand(p: float, f: float, cn_a: float, cn_u: float, expected: float) -> None:
    assert observed_cn(p, f, cn_a, cn_u) == pytest.approx(expected)


def test_log2_ratio_by_hand() -> None:
    assert log2_ratio(2.0) == 0.0  # diploid
    assert log2_ratio(8.0) == 2.0  # 8/2 = 4 = 2^2
    assert log2_ratio(3.0) == pytest.approx(0.5850, abs=1e-4)  # log2(1.5)
    assert log2_ratio(1.0) == -1.0  # one copy lost
    assert log2_ratio(0.0) == -math.inf
    assert cn_from_log2(1.0) == 4.0  # 2 * 2^1
    for cn in (1.0, 2.5, 6.0, 17.3):
        assert cn_from_log2(log2_ratio(cn)) == pytest.approx(cn)


def test_min_purity_by_hand() -> None:
    # T = 6, f = 0.5, CN_a = 12: tumour 7, excess over normal 5; p = (6 - 2) / 5 = 0.8
    assert min_purity(6, 0.5, 12) == pytest.approx(0.8)
    # f = 1, CN_a = 10: excess 8; p = 4 / 8 = 0.5
    assert min_purity(6, 1.0, 10) == pytest.approx(0.5)
    # CN_a exactly at the threshold: only pure, fully amplified tumour reaches it (p = 4 / 4 = 1)
    assert min_purity(6, 1.0, 6) == pytest.approx(1.0)
    # a log2 threshold of 1 is CN 4: f = 0.25, CN_a = 18: tumour 0.25*18 + 0.75*2 = 6; p = 2 / 4 = 0.5
    assert min_purity(cn_from_log2(1.0), 0.25, 18) == pytest.approx(0.5)


def test_min_amplified_fraction_by_hand() -> None:
    # T = 6, p = 0.8, CN_a = 12, CN_u = 2: f = ((6 - 2)/0.8 + 2 - 2) / (12 - 2) = 5 / 10 = 0.5
    assert min_amplified_fraction(6, 0.8, 12) == pytest.approx(0.5)
    # p = 1, CN_a = 10: f = 4 / 8 = 0.5
    assert min_amplified_fraction(6, 1.0, 10) == pytest.approx(0.5)
    # CN_u = 7 is above T = 6 at p = 1: no amplified cells needed
    assert min_amplified_fraction(6, 1.0, 20, cn_unamplified=7) == 0.0


@pytest.mark.parametrize("p, f, cn_a, cn_u", [(0.3, 0.9, 25, 2), (0.7, 0.4, 15, 2), (0.55, 0.6, 9, 3), (0.9, 0.15, 40, 1)])
def test_round_trips(p: float, f: float, cn_a: float, cn_u: float) -> None:
    """Threshold set to what (p, f) gives: each inverse returns the p or f it came from."""
    t = observed_cn(p, f, cn_a, cn_u)
    assert t > 2
    assert min_purity(t, f, cn_a, cn_u) == pytest.approx(p)
    assert min_amplified_fraction(t, p, cn_a, cn_u) == pytest.approx(f)
    assert observed_cn(min_purity(t, f, cn_a, cn_u), f, cn_a, cn_u) == pytest.approx(t)


@pytest.mark.parametrize("call, match", [
    # CN_a = 5 < T = 6: even p = f = 1 gives 5
    (lambda: min_purity(6, 1.0, 5), "below the threshold 6: no purity"),
    # f = 0.2, CN_a = 12: pure tumour averages 4 < 6
    (lambda: min_purity(6, 0.2, 12), "average 4 copies"),
    # p = 0.4, CN_a = 10: f = 1 gives 0.4*10 + 0.6*2 = 5.2 < 6
    (lambda: min_amplified_fraction(6, 0.4, 10), "gives CN 5.2"),
    (lambda: min_amplified_fraction(6, 0.0, 10), "no tumour DNA"),
    (lambda: min_amplified_fraction(6, 0.9, 2), "not above the unamplified one"),
])
def test_impossible_cases_say_why(call, match: str) -> None:
    with pytest.raises(Unreachable, match=match):
        call()


@pytest.mark.parametrize("call, match", [
    (lambda: observed_cn(1.2, 0.5, 10), "purity must lie between 0 and 1"),
    (lambda: observed_cn(0.5, -0.1, 10), "amplified fraction must lie"),
    (lambda: observed_cn(0.5, 0.5, -3), "non-negative copy number"),
    (lambda: min_purity(2.0, 0.5, 10), "must exceed the normal copy number 2"),
    (lambda: min_purity(float("nan"), 0.5, 10), "must exceed"),
])
def test_bad_inputs_are_errors_not_answers(call, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert not isinstance(info.value, Unreachable)


def test_report_and_verdicts() -> None:
    diluted = dilution_report(cn_amplified=12, threshold=6, amplified_fraction=0.5, purity=0.6, region=(0.9, 0.5))
    assert diluted["sample"]["cn"] == pytest.approx(5.0)  # 0.6*7 + 0.4*2
    assert not diluted["sample"]["amplification_called"]
    assert diluted["region"]["cn"] == pytest.approx(6.5)  # macrodissected: 0.9*7 + 0.1*2
    assert diluted["region"]["amplification_called"]
    assert diluted["min_purity"] == {"value": 0.8, "reason": None}
    assert "diluted below the threshold" in diluted["verdict"] and "purity >= 80.0%" in diluted["verdict"]
    hopeless = dilution_report(cn_amplified=12, threshold=6, amplified_fraction=0.2)
    assert hopeless["min_purity"]["value"] is None and "at any purity" in hopeless["verdict"]
    low_clone = dilution_report(cn_amplified=5, threshold=6, amplified_fraction=1.0)
    assert "themselves (5 copies) are below the threshold" in low_clone["verdict"]


def test_amplified_share() -> None:
    classes = np.array(["3+"] * 20 + ["1+"] * 80)
    assert amplified_share(classes) == (0.2, 20, 100)
    inside = np.arange(100) < 40
    assert amplified_share(classes, inside) == (0.5, 20, 40)
    with pytest.raises(ValueError, match="no tumour cells"):
        amplified_share(classes, np.zeros(100, dtype=bool))


def test_cli_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "ngs.json"
    assert main(["ngs-dilution", "--cn-amplified", "12", "--fraction", "0.5", "--purity", "0.6",
                 "--threshold-log2", "1", "--json", "--out", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(out.read_text())
    assert data["threshold"]["cn"] == 4.0  # 2 * 2^1
    assert data["sample"]["cn"] == pytest.approx(5.0) and data["sample"]["amplification_called"]
    assert data["min_purity"]["value"] == pytest.approx(0.4)  # (4 - 2) / (7 - 2)
    assert data["slide"] is None


def test_cli_slide_and_roi(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "slide"
    folder.mkdir()
    x, y = (g.ravel() * 40.0 + 20.0 for g in np.meshgrid(np.arange(10), np.arange(10)))  # level-0 pixels
    classes = np.where(x < 200, "3+", "0")  # 3+: the 5 left columns, 50 cells
    pq.write_table(pa.table({"x": x, "y": y, "cell_class": classes}), folder / "cells.parquet")
    roi = tmp_path / "roi.geojson"  # the left 6 columns (60 cells) minus a 2 x 2 hole of 3+ cells
    outer, hole = [[0, 0], [240, 0], [240, 400], [0, 400], [0, 0]], [[40, 40], [120, 40], [120, 120], [40, 120], [40, 40]]
    roi.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [outer, hole]}}))
    assert main(["ngs-dilution", "--cn-amplified", "20", "--slide", str(folder), "--roi", str(roi), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["slide"]["tumour_cells"] == 56 and data["slide"]["cells_3plus"] == 46
    assert data["amplified_fraction"] == pytest.approx(46 / 56, abs=1e-6)
    assert data["sample"] is None and "not given" in data["slide"]["purity"]
    # f = 46/56: tumour (46*20 + 10*2)/56 = 940/56 = 16.786; p = (6 - 2) / (16.786 - 2) = 0.2705
    assert data["min_purity"]["value"] == pytest.approx(4 / (940 / 56 - 2), abs=1e-4)
    assert main(["ngs-dilution", "--cn-amplified", "20", "--slide", str(folder)]) == 0
    assert "50 of 100 tumour cells in the whole slide are 3+" in capsys.readouterr().out
    roi.write_text("[[[0, 0], [80, 0], [80, 400], [0, 400]]]")  # a polygon list: the 2 left columns
    assert main(["ngs-dilution", "--cn-amplified", "20", "--slide", str(folder), "--roi", str(roi), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["slide"]["tumour_cells"] == 20


def test_cli_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["ngs-dilution", "--cn-amplified", "12", "--fraction", "1.5"]) == 2
    assert "amplified fraction must lie between 0 and 1" in capsys.readouterr().err
    assert main(["ngs-dilution", "--cn-amplified", "12", "--slide", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.startswith("her2slide: ")
    with pytest.raises(SystemExit):
        main(["ngs-dilution", "--cn-amplified", "12", "--fraction", "0.5", "--slide", str(tmp_path)])
