"""What a new user stumbled on (issue 16, class 6): a manifest given positionally, progress on
stderr, calibrate's documented exit status and its warnings, the summary line, ``python3 -m
her2slide``, help on every option, reading maps.zarr without a warning, timings explained."""

from __future__ import annotations

import argparse
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hardening_fixtures import CLASSICAL, tiny_slide
from her2slide import __version__
from her2slide.cli.main import build_parser, main
from her2slide.cli.score import summary_line
from her2slide.config import Settings
from her2slide.errors import ExitStatus
from her2slide.run.calibrate import Control, ControlCells, fit_thresholds
from her2slide.run.pipeline import TIMINGS_NOTE
from her2slide.run.progress import tile_progress


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_slide(tmp_path_factory.mktemp("slides"), "core")


# --- batch takes a manifest where a slide would be -------------------------------------------------

@pytest.mark.parametrize("name, header", [("cohort.csv", "path,mpp"), ("cohort.txt", "patient, path")])
def test_batch_reads_a_manifest_given_as_a_slide(name: str, header: str, slide: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    manifest = tmp_path / name
    rows = {"path,mpp": f"{slide},", "patient, path": f"p1, {slide}"}
    manifest.write_text(f"{header}\n{rows[header]}\n")
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out"), *CLASSICAL]) == 0
    assert capsys.readouterr().out.startswith("batch: 1 scored,")
    assert (tmp_path / "out" / "core" / "done.json").exists()


# --- progress --------------------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_one_line_otherwise() -> None:
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        with tile_progress("slide.svs", stream)(3) as tick:
            for _ in range(3):
                tick({"cells": None})
    bar = terminal.getvalue()
    assert bar.startswith("\rslide.svs:") and "/3 [" in bar and "tile/s" in bar  # tqdm, cleared at the end
    assert log.getvalue().count("\n") == 1 and log.getvalue().startswith("slide.svs: 3 of 3 tiles measured in ")


def test_score_prints_one_progress_line_per_slide_on_stderr_when_it_is_not_a_terminal(
        slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["score", str(slide), "--out", str(tmp_path), *CLASSICAL]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{slide}: 1 of 1 tiles measured in ") and captured.err.count("\n") == 1
    assert captured.out.startswith(f"{slide}: HER2 3+")  # results alone on stdout


def test_calibrate_shows_progress_per_control(slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["calibrate", f"{slide}=3+", "--out", str(tmp_path / "lab.yaml"),
                 "--config", str(_classical(tmp_path))]) == 0
    assert f"control 1/1 {slide.name}: 1 of 1 tiles measured in " in capsys.readouterr().err


def _classical(folder: Path) -> Path:
    config = folder / "classical.yaml"
    config.write_text("segmenter: classical\n")
    return config


# --- calibrate: kept thresholds and exit status 3 -----------------------------------------------------

def _cells(score: str, od: float, n: int = 100) -> ControlCells:
    import numpy as np

    return ControlCells(Control(Path(f"{score}.svs"), score), np.full(n, od), np.ones(n), np.zeros(n, bool),
                        np.zeros((n, 2)))


def test_a_threshold_without_a_control_on_each_side_keeps_its_starting_value() -> None:
    settings = Settings()
    result = fit_thresholds([_cells("0", 0.02), _cells("1+", 0.2), _cells("3+", 0.9)], settings)
    assert result.rules.faint_od != settings.scoring.faint_od  # 0 and 1+ pin it
    assert result.rules.moderate_od == settings.scoring.moderate_od  # no 2+ control: kept, not invented
    assert result.rules.intense_od == settings.scoring.intense_od
    assert set(result.kept) == {"moderate_od", "intense_od"} and "no 2+ control" in result.kept["intense_od"]


def test_calibrate_exits_3_when_no_thresholds_reproduce_every_control(slide: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    copy = tmp_path / "same-slide-labelled-0.svs"
    copy.write_bytes(slide.read_bytes())
    out = tmp_path / "lab.yaml"
    code = main(["calibrate", f"{slide}=3+", f"{copy}=0", "--out", str(out), "--config", str(_classical(tmp_path))])
    assert code == ExitStatus.NOT_REPRODUCED == 3
    captured = capsys.readouterr()
    assert "1 of 2 controls reproduced" in captured.out and out.exists()
    assert "her2slide: warning: no 1+ control: faint_od keeps its starting value" in captured.err


# --- the summary line, the command itself -------------------------------------------------------------

def test_the_summary_line_says_equivocal_once() -> None:
    report = {"score": "2+", "status": "equivocal", "category": "equivocal", "criteria": "breast",
              "cells": {"total": 900}}
    assert summary_line(Path("s.svs"), report, Path("out/s")) == \
        "s.svs: HER2 2+ (equivocal), 900 tumour cells, breast criteria -> out/s"
    report.update(score="1+", status="negative", category="HER2-low")
    assert "(negative, HER2-low)" in summary_line(Path("s.svs"), report, Path("out/s"))


def test_python_m_her2slide_runs_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "her2slide", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"her2slide {__version__}"


def test_every_option_of_every_command_has_help_text() -> None:
    parser = build_parser()
    missing = [f"{name} {action.option_strings or action.dest}"
               for sub in parser._subparsers._group_actions for name, command in sub.choices.items()
               for action in command._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert missing == []


# --- outputs explained ---------------------------------------------------------------------------------

def test_timings_say_why_the_stages_add_up_to_more_than_total(slide: Path, tmp_path: Path) -> None:
    assert main(["score", str(slide), "--out", str(tmp_path), *CLASSICAL]) == 0
    report = json.loads((tmp_path / "core" / "report.json").read_text())
    assert report["timings_note"] == TIMINGS_NOTE
    overlapping = ("tile_stream", "read_and_segment", "qc", "cells", "write_cells")
    assert all(name in report["timings"] and name in TIMINGS_NOTE for name in overlapping)


def test_maps_zarr_read_as_documented_logs_no_version_mismatch(slide: Path, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    assert main(["score", str(slide), "--out", str(tmp_path), *CLASSICAL]) == 0
    maps = tmp_path / "core" / "maps.zarr"
    with caplog.at_level(logging.WARNING, logger="ome_zarr"):
        nodes = list(Reader(parse_url(maps, fmt=FormatV04()))())  # docs/outputs.md, "Reading maps.zarr"
    assert nodes and not [r for r in caplog.records if "version mismatch" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="ome_zarr"):
        list(Reader(parse_url(maps))())  # what the warning was: ome-zarr reads NGFF 0.5 unless told
    assert [r for r in caplog.records if "version mismatch" in r.getMessage()]


@pytest.mark.slow
def test_a_gastric_core_scores_differently_as_resection_and_as_biopsy(shared_data: Path, tmp_path: Path) -> None:
    """README, "Which --criteria": the evidence that the choice changes a result (0123a214 with the
    CNN v1 detector: 2+ with the resection rule, 3+ with the biopsy rule, where one cohesive cluster
    of 3+ cells decides; with the classical default its 3+ cells form no such cluster)."""
    import numpy as np
    import pyarrow.parquet as pq

    from her2slide.config import load_settings
    from her2slide.run.pipeline import score_slide_file
    from her2slide.scoring import score_slide

    core = shared_data / "her2-ihc-oesophagus-tma" / "2_0123a214-85b7-4804-86db-474b05a4ae57.jpg"
    v1 = Path(__file__).resolve().parents[1] / "models" / "her2slide-membrane-v1.pt"
    settings = load_settings(criteria="gastric-resection", segmenter="cnn").with_model(weights=str(v1))
    outcome = score_slide_file(core, tmp_path, settings, mpp=0.25)
    assert outcome.report["score"] == "2+"
    cells = pq.read_table(outcome.out_dir / "cells.parquet", columns=["cell_class", "x_um", "y_um"]).to_pydict()
    biopsy = score_slide(np.asarray(cells["cell_class"]), "gastric-biopsy", Settings().scoring,
                         xy_um=np.column_stack([cells["x_um"], cells["y_um"]]))
    assert biopsy.score == "3+"
