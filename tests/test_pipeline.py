"""`her2slide score` end to end: output contract, truth on clear slides, errors, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from her2slide.cli.main import main
from her2slide.run import pipeline
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec

CONTRACT_COLUMNS = ["x", "y", "x_um", "y_um", "area_um2", "membrane_dab_od", "completeness", "cell_class"]


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("synth")
    made = {}
    for score in ("0", "3+"):
        spec = SlideSpec(name=f"hom{score.replace('+', 'p')}", pattern="homogeneous", score=score,
                         size_um=(450.0, 450.0), seed=11)
        made[score] = make_synthetic_slide(spec, folder).svs
    return made


def test_score_writes_the_contract(slides: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["score", str(slides["3+"]), "--out", str(tmp_path)]) == 0
    out_dir = tmp_path / slides["3+"].stem
    report = json.loads((out_dir / "report.json").read_text())
    assert report["score"] == "3+" and report["status"] == "positive" and report["category"] == "HER2-positive"
    assert report["criteria"] == "breast"
    assert set(report["cells"]["percent"]) == {"0", "1+", "2+", "3+"}
    assert sum(report["cells"]["percent"].values()) == pytest.approx(100.0)
    provenance = report["provenance"]
    assert len(provenance["input_sha256"]) == 64 and provenance["slide"]["mpp"] == pytest.approx(0.25)
    assert provenance["slide"]["mpp_source"] == "metadata" and provenance["config"]["scoring"]["faint_od"] > 0
    assert report["timings"]["total"] > 0

    table = pq.read_table(out_dir / "cells.parquet")
    assert table.column_names[: len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
    assert table.num_rows == report["cells"]["total"]
    x, y = table.column("x").to_numpy(), table.column("y").to_numpy()
    assert (x >= 0).all() and (x < 1800).all() and (y >= 0).all() and (y < 1800).all()
    np.testing.assert_allclose(table.column("x_um").to_numpy(), x * 0.25)
    assert set(table.column("cell_class").to_pylist()) <= {"0", "1+", "2+", "3+"}
    assert "HER2 3+" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*partial*"))


def test_negative_slide_scores_zero(slides: dict[str, Path], tmp_path: Path) -> None:
    assert main(["score", str(slides["0"]), "--out", str(tmp_path), "--criteria", "gastric-resection"]) == 0
    report = json.loads((tmp_path / slides["0"].stem / "report.json").read_text())
    assert report["score"] == "0" and report["criteria"] == "gastric-resection"


def test_bad_file_is_one_line_and_the_batch_goes_on(slides: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "missing.svs"
    assert main(["score", str(missing), str(slides["0"]), "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("her2slide: ")]
    assert errors == [f"her2slide: {missing}: file not found"] and "Traceback" not in captured.err
    assert (tmp_path / "out" / slides["0"].stem / "report.json").exists()
    assert not (tmp_path / "out" / "missing").exists()


def test_interrupted_run_leaves_nothing_that_looks_finished(slides: dict[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "score_slide", explode)
    with pytest.raises(KeyboardInterrupt):
        pipeline.score_slide_file(slides["0"], tmp_path, pipeline.Settings())
    assert list(tmp_path.iterdir()) == []


def test_rerun_replaces_the_previous_result(slides: dict[str, Path], tmp_path: Path) -> None:
    first = pipeline.score_slide_file(slides["0"], tmp_path, pipeline.Settings())
    (first.out_dir / "stale.txt").write_text("from an older run")  # an output an older version wrote
    listing = json.loads((first.out_dir / ".her2slide.json").read_text())
    (first.out_dir / ".her2slide.json").write_text(json.dumps({**listing, "files": [*listing["files"], "stale.txt"]}))
    second = pipeline.score_slide_file(slides["0"], tmp_path, pipeline.Settings())
    assert second.out_dir == first.out_dir and not (second.out_dir / "stale.txt").exists()
    assert second.report["cells"]["total"] == first.report["cells"]["total"]


def test_bad_config_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("scoring:\n  intense_od: -1\n")
    assert main(["score", "whatever.svs", "--out", str(tmp_path), "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith(f"her2slide: {config}: invalid setting scoring.intense_od")


def test_every_true_cell_is_owned_by_exactly_one_planned_tile(slides: dict[str, Path]) -> None:
    """Generator truth against the real tile plan: no cell lost to the tissue mask, none owned twice."""
    from her2slide.slide import detect_tissue, open_slide, plan_tiles

    reader = open_slide(slides["3+"])
    thumb, thumb_mpp = reader.thumbnail(8.0)
    plan = plan_tiles(reader, detect_tissue(thumb, thumb_mpp, level0_mpp=reader.mpp), work_mpp=0.5,
                      tile_px=256, margin_um=32.0)
    truth = pq.read_table(slides["3+"].with_suffix(".truth.parquet"), columns=["x", "y"]).to_pydict()
    x, y = np.asarray(truth["x"]), np.asarray(truth["y"])
    owners = np.sum([tile.owns(x, y) for tile in plan], axis=0)
    assert len(plan) > 4 and (owners == 1).all()
