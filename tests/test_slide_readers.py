"""Both slide backends on small synthetic files: coordinates, pixel size, levels, pickling."""

from __future__ import annotations

import multiprocessing
import operator
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from her2slide.errors import InputError
from her2slide.slide import SlideReader, open_slide
from her2slide.slide.image_backend import ImageReader
from her2slide.slide.openslide_backend import OpenSlideReader

RED = (200, 30, 30)
#: The red square, level-0 pixels (x0, y0, x1, y1); multiples of 4 so it is exact on every level.
SQUARE = (512, 256, 768, 512)


def _slide_image(width: int, height: int) -> np.ndarray:
    img = np.full((height, width, 3), 255, np.uint8)
    x0, y0, x1, y1 = SQUARE
    img[y0:y1, x0:x1] = RED
    return img


@pytest.fixture(scope="module")
def pyramid_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiled 3-level pyramid, 1024 x 768 at 0.5 µm/px, levels as pages (OpenSlide generic-tiff).

    OpenSlide's generic-tiff reads pyramid levels from the main IFD chain, not SubIFDs.
    """
    path = tmp_path_factory.mktemp("slides") / "pyramid.tiff"
    img = _slide_image(1024, 768)
    with tifffile.TiffWriter(path) as tw:
        for i in range(3):
            ppcm = 1e4 / (0.5 * 2**i)
            tw.write(img[:: 2**i, :: 2**i], tile=(256, 256), photometric="rgb", compression="zlib",
                     resolution=(ppcm, ppcm), resolutionunit="CENTIMETER", subfiletype=1 if i else 0)
    return path


@pytest.fixture(scope="module")
def field_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plain 2400 x 1600 PNG at 0.5 µm/px (50 800 dpi): the image backend's virtual pyramid."""
    path = tmp_path_factory.mktemp("fields") / "field.png"
    Image.fromarray(_slide_image(2400, 1600)).save(path, dpi=(50800, 50800))
    return path


def _is_red(rgb: np.ndarray) -> bool:
    return bool(np.abs(rgb.reshape(-1, 3).astype(int) - RED).max() <= 8)


def _is_white(rgb: np.ndarray) -> bool:
    return bool(rgb.min() >= 247)


@pytest.fixture(params=["openslide", "image"])
def reader(request: pytest.FixtureRequest, pyramid_tiff: Path, field_png: Path) -> SlideReader:
    path = pyramid_tiff if request.param == "openslide" else field_png
    r = open_slide(path)
    yield r
    r.close()


def test_backend_choice(pyramid_tiff: Path, field_png: Path) -> None:
    r = open_slide(pyramid_tiff)
    assert isinstance(r, OpenSlideReader) and r.vendor == "generic-tiff"
    assert r.level_dimensions == ((1024, 768), (512, 384), (256, 192))
    r = open_slide(field_png)
    assert isinstance(r, ImageReader) and r.vendor == "png"
    assert r.level_dimensions == ((2400, 1600), (1200, 800), (600, 400))
    assert isinstance(r, SlideReader)


def test_mpp_from_metadata_and_override(reader: SlideReader) -> None:
    assert reader.mpp == pytest.approx(0.5, rel=1e-3) and reader.mpp_source == "metadata"
    r = open_slide(reader.path, mpp=0.3)
    assert r.mpp == 0.3 and r.mpp_source == "override"


def test_read_region_coordinates(reader: SlideReader) -> None:
    x0, y0, x1, y1 = SQUARE
    region = reader.read_region(x0 - 8, y0 - 8, 0, 32, 32)
    assert region.shape == (32, 32, 3) and region.dtype == np.uint8
    assert _is_white(region[:8, :]) and _is_white(region[:, :8]) and _is_red(region[8:, 8:])
    # Level 1: origin still in level-0 pixels, size in level-1 pixels.
    region = reader.read_region(x0 - 16, y0 - 16, 1, 32, 32)
    assert _is_white(region[:8, :]) and _is_white(region[:, :8]) and _is_red(region[8:, 8:])
    assert _is_red(reader.read_region(x1 - 8, y1 - 8, 1, 4, 4))


def test_outside_the_slide_is_white(reader: SlideReader) -> None:
    w, h = reader.dimensions
    assert _is_white(reader.read_region(w - 4, h - 4, 0, 16, 16))
    assert _is_white(reader.read_region(-20, -20, 0, 10, 10))


def test_level_for_mpp(reader: SlideReader) -> None:
    # Downsamples 1, 2, 4 at 0.5 µm/px: levels serve 0.5, 1.0 and 2.0 µm/px.
    picks = {t: reader.level_for_mpp(t) for t in (0.1, 0.5, 0.99, 1.0, 1.5, 2.0, 10.0)}
    assert picks == {0.1: 0, 0.5: 0, 0.99: 0, 1.0: 1, 1.5: 1, 2.0: 2, 10.0: 2}


def test_read_at_mpp(reader: SlideReader) -> None:
    x0, y0, x1, y1 = SQUARE
    out = reader.read_at_mpp(x0 - 64, y0 - 64, 384, 256, 1.5)
    assert out.shape == (round(256 * 0.5 / 1.5), round(384 * 0.5 / 1.5), 3)
    # The square starts 64 level-0 px in, i.e. at ≈ 21.3 output pixels.
    assert _is_white(out[:20, :20]) and _is_red(out[23:60, 23:60])


def test_thumbnail(reader: SlideReader) -> None:
    w, h = reader.dimensions
    thumb, mpp = reader.thumbnail(8.0)
    assert thumb.shape == (round(h / 16), round(w / 16), 3)
    assert mpp == pytest.approx(8.0, rel=0.01)
    x0, y0, x1, y1 = (v // 16 for v in SQUARE)
    assert _is_red(thumb[y0 + 1:y1 - 1, x0 + 1:x1 - 1]) and _is_white(thumb[:y0 - 1])
    # Never finer than level 0.
    assert reader.thumbnail(0.1)[1] == pytest.approx(reader.mpp)


def test_pickle_round_trip(reader: SlideReader) -> None:
    before = reader.read_region(400, 200, 0, 200, 200)
    data = pickle.dumps(reader)
    assert len(data) < 10_000  # no handle, no decoded pixels
    copy = pickle.loads(data)
    np.testing.assert_array_equal(copy.read_region(400, 200, 0, 200, 200), before)
    assert (copy.mpp, copy.dimensions, copy.level_downsamples) == (reader.mpp, reader.dimensions,
                                                                    reader.level_downsamples)


def test_read_in_spawned_worker(pyramid_tiff: Path, field_png: Path) -> None:
    readers = [open_slide(pyramid_tiff), open_slide(field_png)]
    for r in readers:
        r.read_region(0, 0, 0, 8, 8)  # an open handle must not stop pickling
    read = operator.methodcaller("read_region", 500, 250, 0, 40, 40)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(read, readers))
    for r, got in zip(readers, results):
        np.testing.assert_array_equal(got, read(r))


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = np.zeros((200, 200, 4), np.uint8)
    rgba[:100] = (0, 0, 255, 255)
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    rgb = open_slide(path, mpp=0.5).read_region(0, 0, 0, 200, 200)
    assert (rgb[:100] == (0, 0, 255)).all() and (rgb[100:] == 255).all()


def test_jpeg_needs_mpp_unless_dpi_is_plausible(tmp_path: Path) -> None:
    img = Image.fromarray(_slide_image(800, 600))
    img.save(tmp_path / "plain.jpg", quality=95)
    img.save(tmp_path / "screen.jpg", quality=95, dpi=(72, 72))
    img.save(tmp_path / "scan.jpg", quality=95, dpi=(50800, 50800))  # 0.5 µm/px (JFIF max is 65535)
    for name in ("plain.jpg", "screen.jpg"):
        with pytest.raises(InputError, match="no pixel size in the file metadata; pass --mpp"):
            open_slide(tmp_path / name)
    r = open_slide(tmp_path / "plain.jpg", mpp=0.25)
    assert (r.mpp, r.mpp_source, r.vendor) == (0.25, "override", "jpeg")
    assert _is_red(r.read_region(540, 280, 0, 200, 200)[20:-20, 20:-20])
    assert open_slide(tmp_path / "scan.jpg").mpp == pytest.approx(0.5, rel=1e-3)


def test_untiled_tiff_uses_image_backend(tmp_path: Path) -> None:
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, _slide_image(800, 600), photometric="rgb", resolution=(4.0, 4.0),
                     resolutionunit="MICROMETER")
    r = open_slide(path)
    assert isinstance(r, ImageReader) and r.mpp == pytest.approx(0.25) and r.mpp_source == "metadata"
    assert _is_red(r.read_region(520, 260, 0, 32, 32))


def test_input_errors(tmp_path: Path, field_png: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        open_slide(tmp_path / "missing.svs")
    (tmp_path / "notes.svs").write_text("not a slide")
    with pytest.raises(InputError, match=r"cannot be opened as a slide or image \(.+\)"):
        open_slide(tmp_path / "notes.svs")
    Image.new("RGB", (16, 16), "white").save(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="image is 16 x 16 px, too small to hold tissue"):
        open_slide(tmp_path / "tiny.png", mpp=0.5)
    with pytest.raises(InputError, match=r"pixel size 5 µm/px is implausible .*\(expected 0.05–2 µm/px\)"):
        open_slide(field_png, mpp=5.0)


def test_truncated_image_fails_on_read(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 800, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:20_000])
    r = open_slide(path, mpp=0.25)
    with pytest.raises(InputError, match="pixel data cannot be decoded"):
        r.read_region(0, 0, 0, 10, 10)
