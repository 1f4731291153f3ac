"""Each real file in the shared data folder gives its documented outcome (see its README)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from her2slide.errors import InputError, UnsuitableSlideError
from her2slide.slide import check_suitability, detect_tissue, open_slide, plan_tiles

THUMB_MPP = 8.0
CORES = ["0_9b0f64d1-6785-49d9-b279-004b2deb8478.jpg", "1_154ae963-bd2a-4a12-8fa9-815ba13922ae.jpg",
         "2_0123a214-85b7-4804-86db-474b05a4ae57.jpg", "2_726fa489-3deb-4d06-ae5c-8f20bd3f3025.jpg"]


def _refusal(path: Path, mpp: float | None = None) -> str:
    """The reason ``open_slide`` + ``check_suitability`` give for ``path``."""
    reader = open_slide(path, mpp)
    thumb, thumb_mpp = reader.thumbnail(THUMB_MPP)
    with pytest.raises(UnsuitableSlideError) as exc:
        check_suitability(reader, thumb, thumb_mpp)
    assert exc.value.path == str(path)
    return exc.value.reason


@pytest.mark.parametrize("name, mpp, reason", [
    ("tcga-cr-7395-jpeg2000-no-mpp.svs", None,
     "no pixel size in the file metadata; pass --mpp (e.g. --mpp 0.25 for a 40x scan)"),
    ("dicom-multiframe.dcm", None,
     "pixel size 28.97 µm/px is implausible for cell-level scoring (expected 0.05–2 µm/px)"),
    ("openslide-fixture-small.svs", None, "image is 16 x 16 px, too small to hold tissue"),
    ("openslide-fixture-boxes.tiff", None, "pixel size 352.8 µm/px is implausible"),
    ("openslide-fixture-unopenable.tiff", None, "cannot be opened as a slide or image (Unsupported TIFF"),
    ("openslide-fixture-unreadable.svs", None, "pixel data cannot be decoded (Bogus marker length)"),
    ("no-such-slide.svs", None, "file not found"),
])
def test_refused_at_open(shared_data: Path, name: str, mpp: float | None, reason: str) -> None:
    path = shared_data / "slides" / name
    with pytest.raises(InputError, match=re.escape(reason)) as exc:
        open_slide(path, mpp).read_region(0, 0, 0, 16, 16)
    assert exc.value.path == str(path)


def test_he_slide_opens_and_is_refused(shared_data: Path) -> None:
    path = shared_data / "slides" / "CMU-1-Small-Region.svs"
    reader = open_slide(path)
    assert (reader.vendor, reader.dimensions, reader.mpp, reader.mpp_source) == (
        "aperio", (2220, 2967), pytest.approx(0.499), "metadata")
    assert "looks like H&E (eosin counterstain)" in _refusal(path)


def test_no_mpp_slide_opens_with_override_and_is_refused_as_he(shared_data: Path) -> None:
    path = shared_data / "slides" / "tcga-cr-7395-jpeg2000-no-mpp.svs"
    reader = open_slide(path, mpp=0.5)
    assert (reader.mpp, reader.mpp_source, len(reader.level_dimensions)) == (0.5, "override", 2)
    assert "looks like H&E (eosin counterstain)" in _refusal(path, mpp=0.5)


def test_fluorescence_is_refused(shared_data: Path) -> None:
    path = shared_data / "slides" / "fluorescence-dapi.ndpi"
    assert open_slide(path).mpp == pytest.approx(0.228, abs=1e-3)
    assert "looks like a fluorescence image, not brightfield IHC" in _refusal(path)


@pytest.mark.parametrize("name", CORES)
def test_her2_ihc_cores_pass(shared_data: Path, name: str) -> None:
    path = shared_data / "her2-ihc-oesophagus-tma" / name
    with pytest.raises(InputError, match=re.escape("pass --mpp")):
        open_slide(path)
    reader = open_slide(path, mpp=0.25)
    assert reader.dimensions == (5468, 5468)
    thumb, thumb_mpp = reader.thumbnail(THUMB_MPP)
    check_suitability(reader, thumb, thumb_mpp)
    tissue = detect_tissue(thumb, thumb_mpp, level0_mpp=reader.mpp)
    # A 1.2–1.4 mm core: about 0.8–1.6 mm² of tissue.
    assert 0.7e6 < tissue.area_um2 < 1.7e6
    plan = plan_tiles(reader, tissue)
    assert 4 <= len(plan) <= 9  # 512 µm tiles over a 1.37 mm square
