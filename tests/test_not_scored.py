"""Results that must not read as scored (issue 16, class 2): a QC-failed slide has its own exit
status, count and summary status everywhere; an ROI region naming in-situ disease is never scored."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hardening_fixtures import CLASSICAL, tiny_slide
from her2slide.cli.main import main
from her2slide.config import Settings
from her2slide.errors import ExitStatus
from her2slide.run.pipeline import score_slide_file


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_slide(tmp_path_factory.mktemp("slides"), "pos")


@pytest.fixture
def strict(tmp_path: Path) -> Path:
    """A config this slide's ~300 tumour cells cannot pass QC with."""
    config = tmp_path / "strict.yaml"
    config.write_text("segmenter: classical\nqc:\n  min_tumour_cells: 1000000\n")
    return config


def test_score_of_a_qc_failed_slide_has_its_own_exit_status(slide: Path, strict: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    assert main(["score", str(slide), "--out", str(tmp_path / "out"), "--config", str(strict)]) == ExitStatus.NOT_SCORED
    assert capsys.readouterr().out.startswith(f"{slide}: not scored (QC failed: only ")
    missing = tmp_path / "missing.svs"  # a failure outranks "not scored"
    assert main(["score", str(slide), str(missing), "--out", str(tmp_path / "out"), "--config", str(strict)]) == 1
    assert main(["score", str(slide), "--out", str(tmp_path / "ok"), *CLASSICAL]) == ExitStatus.OK


def test_batch_counts_not_scored_apart_in_its_line_summary_log_and_marker(slide: Path, strict: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["batch", str(slide), "--out", str(out), "--config", str(strict)]) == ExitStatus.NOT_SCORED
    assert capsys.readouterr().out.startswith("batch: 0 scored, 1 not scored (QC failed), 0 already done, 0 failed")
    with open(out / "summary.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert (row["run_status"], row["score"], row["status"], row["qc_verdict"]) == ("not-scored", "", "not-scored", "fail")
    events = [json.loads(line) for line in (out / "batch.log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "slide_start", "slide_not_scored", "end"]
    assert events[-1]["scored"] == 0 and events[-1]["not_scored"] == 1
    assert json.loads((out / "pos" / "done.json").read_text())["outcome"] == "not-scored"

    # A rerun skips it, and still does not call it scored.
    assert main(["batch", str(slide), "--out", str(out), "--config", str(strict)]) == ExitStatus.NOT_SCORED
    assert "1 already done (1 of them not scored)" in capsys.readouterr().out
    skipped = [json.loads(line) for line in (out / "batch.log.jsonl").read_text().splitlines()][-2]
    assert skipped["event"] == "slide_skipped" and skipped["not_scored"] is True


@pytest.mark.parametrize("command", [["sampling-risk"], ["ngs-dilution", "--cn-amplified", "12", "--slide"]])
def test_commands_that_use_a_slides_cells_refuse_a_not_scored_slide(command: list[str], slide: Path, strict: Path,
                                                                    tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    main(["score", str(slide), "--out", str(out), "--config", str(strict)])
    capsys.readouterr()
    assert main([*command, str(out / "pos")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"her2slide: {out / 'pos' / 'report.json'}: this slide was not scored (QC failed: ")
    assert err.count("\n") == 1


def _roi(path: Path, name: str, box: tuple[int, int, int, int]) -> Path:
    x0, y0, x1, y1 = box
    feature = {"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": name}},
               "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


def test_a_carcinoma_in_situ_region_is_left_out_not_scored_as_the_invasive_tumour(slide: Path,
                                                                                  tmp_path: Path) -> None:
    """The issue's example: the ROI's only region is "Carcinoma in situ". It used to be taken as
    the include region, so only its cells were scored; now it is left out and the rest is scored."""
    settings = Settings(segmenter="classical")
    full = score_slide_file(slide, tmp_path / "full", settings).report
    corner = _roi(tmp_path / "cis.geojson", "Carcinoma in situ", (0, 0, 500, 500))
    report = score_slide_file(slide, tmp_path / "roi", settings, roi=corner).report
    assert report["score"] == full["score"] == "3+"
    assert report["roi"]["whole_tissue"] is True and report["roi"]["exclude"]["polygons"] == 1
    assert report["roi"]["class_roles"] == {"Carcinoma in situ": "exclude"}
    assert report["cells"]["total"] <= full["cells"]["total"]


def test_an_roi_region_of_unknown_class_is_refused_by_name(slide: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    roi = _roi(tmp_path / "roi.geojson", "Fibrosis", (0, 0, 900, 900))
    assert main(["score", str(slide), "--roi", str(roi), "--out", str(tmp_path / "out"), *CLASSICAL]) == 1
    err = capsys.readouterr().err
    assert f"her2slide: {roi}: ROI class 'Fibrosis' is neither an include nor an exclude class" in err
    config = tmp_path / "exclude-unknown.yaml"
    config.write_text("segmenter: classical\nroi:\n  unknown_classes: exclude\n")
    assert main(["score", str(slide), "--roi", str(roi), "--out", str(tmp_path / "out"), "--config", str(config)]) == 0
    report = json.loads((tmp_path / "out" / "pos" / "report.json").read_text())
    assert report["roi"]["unknown_classes"] == ["Fibrosis"] and report["roi"]["unknown_classes_rule"] == "exclude"
    assert report["roi"]["class_roles"] == {"Fibrosis": "exclude"}
