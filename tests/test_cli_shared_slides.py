"""Every unsuitable real file in ../shared/data/slides gets one line and a non-zero exit from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from her2slide.cli.main import main

EXPECTED = {
    "CMU-1-Small-Region.svs": "looks like H&E (eosin counterstain), not HER2 IHC; not scored",
    "tcga-cr-7395-jpeg2000-no-mpp.svs": "no pixel size in the file metadata; pass --mpp",
    "dicom-multiframe.dcm": "is implausible for cell-level scoring",
    "fluorescence-dapi.ndpi": "looks like a fluorescence image, not brightfield IHC; not scored",
    "openslide-fixture-small.svs": "too small to hold tissue",
    "openslide-fixture-boxes.tiff": "is implausible for cell-level scoring",
    "openslide-fixture-unopenable.tiff": "cannot be opened as a slide or image",
    "openslide-fixture-unreadable.svs": "pixel data cannot be decoded",
}


def test_each_unsuitable_file_gets_one_line(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = [shared_data / "slides" / name for name in EXPECTED]
    assert main(["score", *map(str, files), "--out", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(files)
    for line, path in zip(lines, files):
        assert line.startswith(f"her2slide: {path}: ") and EXPECTED[path.name] in line, line
    assert list(tmp_path.iterdir()) == []


def test_he_slide_with_mpp_override_is_still_refused(shared_data: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    slide = shared_data / "slides" / "tcga-cr-7395-jpeg2000-no-mpp.svs"
    assert main(["score", str(slide), "--mpp", "0.5", "--out", str(tmp_path)]) == 1
    assert "looks like H&E" in capsys.readouterr().err
