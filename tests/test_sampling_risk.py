"""Biopsy sampling risk on cell sets whose answer is known, built directly with numpy (no rendering)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from her2slide.cli.main import main
from her2slide.config import ContextSettings
from her2slide.context import sampling
from her2slide.context.sampling import GAUGE_CORE_DIAMETER_UM, format_table, sampling_risk
from her2slide.scoring import CELL_CLASSES, ScoringRules, score_counts, score_slide

RULES = ScoringRules()
FAST = ContextSettings(simulations=300, needle_gauge=18, grid_um=20.0, angles=12)


def _sheet(width_um: float, height_um: float, spacing_um: float = 30.0, seed: int = 0) -> np.ndarray:
    """Tumour cells on a jittered square lattice: (N, 2) µm."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(0, width_um, spacing_um), np.arange(0, height_um, spacing_um))
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    return xy + rng.uniform(-0.3 * spacing_um, 0.3 * spacing_um, xy.shape)


def _focal(size_um: float = 4000.0, radius_um: float = 780.0, spacing_um: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """A square tumour of 0/1+ cells with one 3+ disc (12% of the cells) near a corner: slide 3+."""
    xy = _sheet(size_um, size_um, spacing_um)
    codes = np.random.default_rng(0).integers(0, 2, len(xy))
    codes[np.hypot(*(xy - size_um / 3).T) < radius_um] = 3
    return xy, codes


@pytest.fixture(scope="module")
def focal() -> tuple[np.ndarray, np.ndarray, dict]:
    xy, codes = _focal()
    return xy, codes, _risk(xy, codes)


def _risk(xy: np.ndarray, codes: np.ndarray, criteria: str = "breast", settings: ContextSettings = FAST) -> dict:
    return sampling_risk(xy[:, 0], xy[:, 1], codes, criteria, RULES, settings)


def test_gauges_are_the_nominal_inner_diameters() -> None:
    assert GAUGE_CORE_DIAMETER_UM == {14: 1600.0, 16: 1194.0, 18: 838.0}
    xy = _sheet(3000.0, 3000.0)
    result = _risk(xy, np.full(len(xy), 3), settings=ContextSettings(simulations=20, needle_gauge=16))
    assert result["model"]["core_width_um"] == pytest.approx(1194.0, abs=10.0)  # one 10 µm lattice step
    assert result["model"]["needle_gauge"] == 16


def test_homogeneous_slide_is_never_missed() -> None:
    xy = _sheet(4000.0, 4000.0)
    codes = np.where(np.random.default_rng(1).random(len(xy)) < 0.9, 3, 1)  # 90% 3+ everywhere
    result = _risk(xy, codes)
    assert result["slide"]["score"] == "3+"
    for row in result["by_cores"]:
        for rule in ("pooled", "max_core"):
            assert row[rule]["miss"]["p"] < 0.01
            assert row[rule]["nondiagnostic"]["p"] == 0.0
        assert row["pooled"]["scores"]["3+"]["p"] > 0.99


def test_small_focal_cluster_is_often_missed_and_less_with_more_cores(focal: tuple) -> None:
    result = focal[2]
    assert result["slide"]["score"] == "3+"
    rows = result["by_cores"]
    assert rows[0]["pooled"]["miss"]["p"] > 0.4
    best = [row["max_core"]["miss"]["p"] for row in rows]
    assert all(a >= b for a, b in zip(best, best[1:]))  # nested cores: never more misses with more cores
    assert best[0] - best[-1] > 0.3
    first, last = rows[0]["pooled"]["miss"], rows[-1]["pooled"]["miss"]
    assert first["p"] - last["p"] > 3 * np.hypot(first["se"], last["se"])
    assert rows[0]["pooled"] == rows[0]["max_core"]  # one core: both readings are that core's score


def test_probabilities_add_up_and_errors_are_binomial(focal: tuple) -> None:
    result = focal[2]
    n = result["model"]["simulations"]
    for row in result["by_cores"]:
        for rule in ("pooled", "max_core"):
            out = row[rule]
            total = sum(v["p"] for v in out["scores"].values()) + out["nondiagnostic"]["p"]
            assert total == pytest.approx(1.0, abs=1e-4)
            p = out["miss"]["p"]
            assert out["miss"]["se"] == pytest.approx(np.sqrt(p * (1 - p) / n), abs=1e-5)
            assert out["different"]["p"] == pytest.approx(out["miss"]["p"] + out["over"]["p"], abs=1e-4)


def test_seeded_and_reproducible(focal: tuple) -> None:
    xy, codes, result = focal
    assert _risk(xy, codes) == result
    assert _risk(xy, codes, settings=FAST.model_copy(update={"seed": 1}))["by_cores"] != result["by_cores"]


def test_too_few_cells_is_nondiagnostic_not_negative() -> None:
    xy = _sheet(2000.0, 2000.0, spacing_um=100.0)  # 400 cells, far fewer per core
    result = _risk(xy, np.full(len(xy), 3), settings=FAST.model_copy(update={"min_core_cells": 10_000}))
    for row in result["by_cores"]:
        assert row["pooled"]["nondiagnostic"]["p"] == 1.0
        assert row["pooled"]["miss"]["p"] == 0.0


def test_a_biopsy_is_not_sampled_again() -> None:
    xy = _sheet(1000.0, 1000.0)
    with pytest.raises(ValueError, match="scored as a biopsy"):
        _risk(xy, np.zeros(len(xy), dtype=int), criteria="gastric-biopsy")


# ---------------------------------------------------------------- the fast paths equal the slide rules


def _brute_members(xy: np.ndarray, centres: np.ndarray, angles: np.ndarray, geo: sampling.CoreGeometry) -> list[np.ndarray]:
    """Each core's cells by testing every cell against its box: the definition, without the tables."""
    out = []
    for centre, a in zip(centres, angles):
        lat = sampling._lattice(xy, np.pi * a / geo.angles, geo.grid_um)
        r0, r1, c0, c1 = sampling._clip(sampling._boxes(lat, np.array([centre]), geo), lat)[0]
        out.append(np.flatnonzero((lat.rows >= r0) & (lat.rows < r1) & (lat.cols >= c0) & (lat.cols < c1)))
    return out


def _cores(xy: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, sampling.CoreGeometry]:
    settings = ContextSettings(core_width_um=300.0, core_length_um=1200.0, angles=12)
    rng = np.random.default_rng(5)
    return rng.integers(len(xy), size=n), rng.integers(12, size=n), sampling.core_geometry(xy, settings)


@pytest.mark.parametrize("criteria", ["breast", "gastric-resection"])
def test_core_counts_and_percent_scores_match_score_slide(criteria: str) -> None:
    xy, codes = _focal(size_um=1500.0, radius_um=300.0)
    centres, angles, geo = _cores(xy, 60)
    counts, _ = sampling._simulate_cores(xy, codes, centres, angles, geo, None)
    scores = score_counts(counts, criteria, RULES)
    for members, row, score in zip(_brute_members(xy, centres, angles, geo), counts, scores):
        assert np.array_equal(row, np.bincount(codes[members], minlength=4))
        if len(members):
            assert CELL_CLASSES[score] == score_slide(codes[members], criteria, RULES).score


def test_cluster_rule_matches_score_slide_gastric_biopsy() -> None:
    """Cores cutting through small clusters of each class: the exact shortcut equals clustering every core."""
    rng = np.random.default_rng(2)
    xy = _sheet(2000.0, 2000.0, spacing_um=15.0)  # cohesive: neighbours 15 µm apart, link 20 µm
    codes = np.zeros(len(xy), dtype=int)
    for k in (1, 2, 3, 3, 2, 1, 3):  # small blobs that cores cut at their edges
        centre = rng.uniform(200, 1800, 2)
        codes[np.hypot(*(xy - centre).T) < rng.uniform(20, 60)] = k
    codes[rng.random(len(xy)) < 0.03] = 3  # scattered single cells never make a cluster
    centres, angles, geo = _cores(xy, 150)
    _, reached = sampling._simulate_cores(xy, codes, centres, angles, geo, RULES)
    scores = sampling._cluster_scores(reached)
    for members, score in zip(_brute_members(xy, centres, angles, geo), scores):
        expected = score_slide(codes[members], "gastric-biopsy", RULES, xy_um=xy[members]).score if len(members) else "0"
        assert CELL_CLASSES[score] == expected


@pytest.mark.parametrize("counts_toward", [True, False])
def test_percent_scores_match_score_slide_on_boundaries(counts_toward: bool) -> None:
    rules = ScoringRules(intense_complete_counts_toward_2plus=counts_toward)
    rng = np.random.default_rng(3)
    rows = [rng.multinomial(rng.integers(1, 400), rng.dirichlet([1, 1, 1, 1])) for _ in range(400)]
    rows += [[90, 0, 0, 10], [89, 0, 0, 11], [90, 0, 10, 0], [89, 0, 11, 0], [90, 10, 0, 0], [89, 11, 0, 0],
             [99, 0, 0, 1], [100, 0, 0, 1], [95, 0, 5, 5], [94, 0, 5, 6], [0, 0, 0, 1], [1, 0, 0, 0]]
    counts = np.array(rows, dtype=np.int64)
    for criteria in ("breast", "gastric-resection"):
        scores = score_counts(counts, criteria, rules)
        for row, score in zip(counts, scores):
            assert CELL_CLASSES[score] == score_slide(np.repeat(np.arange(4), row), criteria, rules).score, row


def test_gastric_resection_cores_use_the_biopsy_rule() -> None:
    xy, codes = _focal(size_um=2500.0, radius_um=500.0, spacing_um=15.0)  # cohesive: 15 µm apart, link 20 µm
    result = _risk(xy, codes, criteria="gastric-resection")
    assert result["model"]["core_criteria"] == "gastric-biopsy"
    as_percent = _risk(xy, codes, "gastric-resection", FAST.model_copy(update={"gastric_cores_as_biopsies": False}))
    assert as_percent["model"]["core_criteria"] == "gastric-resection"
    # a cluster of 5 cohesive 3+ cells is enough in a biopsy: fewer misses than the 10% rule
    assert result["by_cores"][0]["pooled"]["miss"]["p"] <= as_percent["by_cores"][0]["pooled"]["miss"]["p"]


@pytest.mark.slow
def test_speed_many_cores_on_100k_cells() -> None:
    """12,000 cores (2000 biopsies x 6) on 100k cells: seconds, not minutes (measured ~3 s on 2 busy cores)."""
    import time

    xy = _sheet(10_000.0, 10_000.0, spacing_um=31.6)
    codes = np.random.default_rng(0).integers(0, 4, len(xy))
    start = time.perf_counter()
    _risk(xy, codes, settings=ContextSettings())
    assert time.perf_counter() - start < 30.0


# ---------------------------------------------------------------- command line


def _write_slide(folder: Path, xy: np.ndarray, codes: np.ndarray, criteria: str = "breast") -> Path:
    folder.mkdir(parents=True)
    labels = np.array(CELL_CLASSES)[codes]
    pq.write_table(pa.table({"x": xy[:, 0] / 0.25, "y": xy[:, 1] / 0.25, "x_um": xy[:, 0], "y_um": xy[:, 1],
                             "cell_class": labels}), folder / "cells.parquet")
    result = score_slide(codes, criteria, RULES)
    (folder / "report.json").write_text(json.dumps({"score": result.score, "criteria": criteria}))
    return folder


def test_cli_json_to_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xy, codes = _focal(size_um=2000.0, radius_um=390.0)
    folder = _write_slide(tmp_path / "slide", xy, codes)
    out = tmp_path / "risk.json"
    assert main(["sampling-risk", str(folder), "--json", "--simulations", "100", "--cores", "3",
                 "--gauge", "18", "--core-length-um", "3000", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["slide"]["score"] == "3+" and len(printed["by_cores"]) == 3
    assert printed["model"]["simulations"] == 100 and printed["input"] == str(folder)
    assert main(["sampling-risk", str(folder / "cells.parquet"), "--simulations", "100"]) == 0
    text = capsys.readouterr().out
    assert "miss (pooled)" in text and "100 simulated biopsies" in text


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sampling-risk", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err.startswith(f"her2slide: {tmp_path / 'nothing'}: not found")
    folder = _write_slide(tmp_path / "slide", _sheet(500.0, 500.0), np.zeros(289, dtype=int))
    assert main(["sampling-risk", str(folder), "--simulations", "5"]) == 1
    assert "invalid setting context.simulations" in capsys.readouterr().err


@pytest.mark.slow
def test_on_a_scored_synthetic_slide(tmp_path: Path) -> None:
    """End to end: `her2slide demo` (generate + score, ~20 s), then sampling-risk on its output folder."""
    subprocess.run([sys.executable, "-m", "her2slide.cli.main", "demo", "--out", str(tmp_path)], check=True,
                   capture_output=True)
    folder = tmp_path / "results" / "demo-focal"
    done = subprocess.run([sys.executable, "-m", "her2slide.cli.main", "sampling-risk", str(folder), "--json",
                           "--core-width-um", "200", "--core-length-um", "600", "--simulations", "300"],
                          check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)
    report = json.loads((folder / "report.json").read_text())
    assert result["slide"]["score"] == report["score"]
    assert result["by_cores"][0]["pooled"]["miss"]["p"] > result["by_cores"][-1]["max_core"]["miss"]["p"]
    assert "cores" in format_table({k: v for k, v in result.items() if k != "input"})
