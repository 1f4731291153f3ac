"""The library API (her2slide.score_slide, open_slide, load_settings): what a notebook user gets
is what ``her2slide score`` writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from her2slide.cli.main import main
from her2slide.synth.slides import SlideSpec, make_synthetic_slide
import her2slide


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SlideSpec(name="api2p", pattern="homogeneous", score="2+", size_um=(450.0, 450.0), seed=5)
    return make_synthetic_slide(spec, tmp_path_factory.mktemp("synth")).svs


def _report(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    report.pop("timings")
    return report


def test_score_slide_writes_what_the_cli_writes(slide: Path, tmp_path: Path) -> None:
    assert main(["score", str(slide), "--out", str(tmp_path / "cli"), "--criteria", "gastric-resection"]) == 0
    outcome = her2slide.score_slide(slide, tmp_path / "api", criteria="gastric-resection")
    assert outcome.out_dir == tmp_path / "api" / slide.stem
    assert _report(outcome.out_dir) == _report(tmp_path / "cli" / slide.stem)
    assert outcome.report["score"] == _report(outcome.out_dir)["score"] is not None
    assert outcome.report["criteria"] == "gastric-resection"


def test_settings_object_and_overrides(slide: Path, tmp_path: Path) -> None:
    settings = her2slide.load_settings(criteria="gastric-biopsy")
    outcome = her2slide.score_slide(slide, tmp_path, settings)
    assert outcome.report["criteria"] == "gastric-biopsy"
    with pytest.raises(her2slide.InputError, match="criteria"):
        her2slide.score_slide(slide, tmp_path, settings, criteria="lung")


def test_open_slide_is_the_pipelines_reader(slide: Path) -> None:
    reader = her2slide.open_slide(slide)
    try:
        assert reader.mpp == pytest.approx(0.25) and reader.dimensions == (1800, 1800)
        assert reader.read_at_mpp(0, 0, 400, 400, 1.0).shape == (100, 100, 3)
    finally:
        reader.close()


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = "import sys, her2slide; her2slide.__all__; print(sorted(m for m in ('torch', 'her2slide.run.pipeline', 'openslide') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_importing_the_slide_package_loads_no_decoder() -> None:
    """OpenSlide and the image decoders load when a slide is opened, not when the package is imported."""
    code = "import sys, her2slide.slide; print(sorted(m for m in ('openslide', 'tifffile') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
