"""The membrane CNN's parts: network shapes and gradients, checked weights files, training
samples (synthetic, lab tiles, QuPath cells) and their augmentation, the loss, pixel F1.

Mechanics only: every network here is tiny and randomly initialised (a few thousand
parameters), so nothing depends on the shipped weights or on a long training run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
from PIL import Image
from scipy import ndimage as ndi

from her2slide.errors import InputError
from her2slide.model.checkpoint import ModelIO, build_network, load_weights, save_weights
from her2slide.model.inputs import normalise
from her2slide.model.network import UNet, fused_for_inference
from her2slide.model.training.data import Augment, Sample, lab_samples, load_npz_sample, load_png_sample, qupath_samples
from her2slide.model.training.metrics import evaluate_maps, network_predictor, pixel_f1, summarise
from her2slide.model.training.train import loss_fn
from her2slide.provenance import file_sha256
from her2slide.run.engine import _pad_stack
from her2slide.slide import open_slide
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec
from her2slide.synth.tiles import make_training_tiles

TINY = ModelIO(widths=(4, 8, 16))  # multiple 4, ~5 k parameters


def save_tiny_model(path: Path, io: ModelIO = TINY, seed: int = 0) -> Path:
    """A randomly initialised network saved as a checked weights file (for mechanics tests)."""
    torch.manual_seed(seed)
    save_weights(path, build_network(io), io, {"note": "random init, for tests"})
    return path


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from threads, and on a busy 2-core machine OpenMP threads
    waiting for each other made a 20-step training loop 25x slower (27 s instead of 1 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def npz_tile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic training tile, 96 px at 0.5 µm/px (~0.4 s to make)."""
    started = time.perf_counter()
    (path,) = make_training_tiles(1, tmp_path_factory.mktemp("tiles"), tile_px=96, seed=3)
    print(f"make_training_tiles(1, tile_px=96): {time.perf_counter() - started:.2f} s")
    return path


# --- network ------------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(4, 8, 16), (8, 16, 32, 64)])
def test_output_has_the_input_shape_at_multiples(widths: tuple[int, ...]) -> None:
    network = UNet(widths).eval()
    m = network.multiple
    assert m == 2 ** (len(widths) - 1)
    with torch.no_grad():
        out = network(torch.randn(2, 3, 5 * m, 3 * m))
    assert out.shape == (2, 3, 5 * m, 3 * m)


def test_odd_sizes_padded_by_the_engine_come_back_whole() -> None:
    network = UNet((4, 8, 16)).eval()
    rgbs = [np.full((37, 53, 3), 200, np.uint8), np.full((21, 60, 3), 90, np.uint8)]
    batch = _pad_stack(rgbs, network.multiple)
    assert batch.shape[1] % network.multiple == 0 and batch.shape[2] % network.multiple == 0
    assert batch.shape[1:3] == (40, 60)  # the largest tile, rounded up to the multiple (4)
    with torch.no_grad():
        out = network(normalise(torch.from_numpy(batch).permute(0, 3, 1, 2), TINY))
    assert out.shape == (2, 3, 40, 60)
    assert out[0, :, :37, :53].shape == (3, 37, 53)


def test_folding_batchnorm_into_the_convolutions_keeps_the_function() -> None:
    """The engine runs the network with BatchNorm folded into the convolutions (faster); trained
    statistics (not the initial identity ones) must give the same logits, and the original stays as it was."""
    torch.manual_seed(0)
    network = UNet((4, 8, 16)).train()
    with torch.no_grad():  # non-trivial running statistics, as after training
        for _ in range(3):
            network(torch.randn(2, 3, 32, 32) * 2 + 1)
    network.eval()
    fused = fused_for_inference(network)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())
    x = torch.randn(1, 3, 48, 40)
    with torch.inference_mode():
        np.testing.assert_allclose(fused(x).numpy(), network(x).numpy(), atol=1e-4)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    network = UNet((4, 8, 16)).train()
    network(torch.randn(2, 3, 32, 32)).square().mean().backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name


# --- checkpoint ---------------------------------------------------------------------------


def _one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_save_writes_weights_and_checksum(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "model.pt")
    sha_file = tmp_path / "model.pt.sha256"
    assert path.exists() and sha_file.exists()
    assert sha_file.read_text() == f"{file_sha256(path)}  model.pt\n"
    assert not list(tmp_path.glob("*.partial"))


def test_load_round_trips_the_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    network = build_network(TINY).eval()
    digest = save_weights(tmp_path / "model.pt", network, TINY, {"steps": 3})
    loaded = load_weights(tmp_path / "model.pt", work_mpp=0.5)
    assert loaded.io == TINY and loaded.training == {"steps": 3}
    assert loaded.sha256 == digest == file_sha256(tmp_path / "model.pt") and loaded.model_id == "model"
    assert not loaded.network.training
    x = torch.randn(1, 3, 24, 32)
    with torch.no_grad():
        assert torch.equal(network(x), loaded.network(x))


def test_a_changed_byte_is_a_checksum_mismatch(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "model.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum mismatch") as exc:
        load_weights(path)
    _one_line_naming(exc, path)


def test_weights_without_a_checksum_file_are_refused(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "model.pt")
    (tmp_path / "model.pt.sha256").unlink()
    with pytest.raises(InputError, match="no checksum file model.pt.sha256") as exc:
        load_weights(path)
    _one_line_naming(exc, path)


def test_missing_weights_are_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model weights not found") as exc:
        load_weights(tmp_path / "absent.pt")
    _one_line_naming(exc, tmp_path / "absent.pt")


def test_a_model_at_another_resolution_is_refused(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "model.pt")  # trained at 0.5 µm/px, tolerance 10 %
    with pytest.raises(InputError) as exc:
        load_weights(path, work_mpp=0.25)
    message = _one_line_naming(exc, path)
    assert "0.5 µm/px" in message and "0.25 µm/px" in message
    assert load_weights(path, work_mpp=0.53).io.input_mpp == 0.5  # within tolerance


def _with_checksum(path: Path) -> Path:
    """Give any file a matching .sha256, so that loading gets past the checksum."""
    path.with_name(path.name + ".sha256").write_text(f"{file_sha256(path)}  {path.name}\n")
    return path


@pytest.mark.parametrize("content", [b"GIF89a not a model", None], ids=["not-torch", "other-torch-file"])
def test_a_file_that_is_not_a_weights_file_is_refused(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "model.pt"
    if content is None:
        torch.save({"state": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match="not a her2slide weights file") as exc:
        load_weights(_with_checksum(path))
    _one_line_naming(exc, path)


# --- data: synthetic and lab tiles --------------------------------------------------------


def test_npz_tile_becomes_a_sample(npz_tile: Path) -> None:
    sample = load_npz_sample(npz_tile)
    with np.load(npz_tile) as data:
        expected = np.stack([data["membrane_all"], data["nucleus"], data["tumour"]])
    assert sample.image.shape == (96, 96, 3) and sample.image.dtype == np.uint8
    assert sample.target.shape == (3, 96, 96) and sample.target.dtype == np.float32
    np.testing.assert_array_equal(sample.target, expected)
    assert sample.valid.tolist() == [True, True, True]
    assert sample.target[0].any() and sample.target[1].any()


def test_npz_with_some_masks_marks_the_others_unannotated(tmp_path: Path) -> None:
    nucleus = np.zeros((8, 8), bool)
    nucleus[2:4, 2:4] = True
    np.savez(tmp_path / "lab.npz", image=np.zeros((8, 8, 3), np.uint8), nucleus=nucleus)
    sample = load_npz_sample(tmp_path / "lab.npz")
    assert sample.valid.tolist() == [False, True, False]
    np.testing.assert_array_equal(sample.target[1], nucleus)
    assert not sample.target[[0, 2]].any()


def test_png_tile_with_masks_present_and_missing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    membrane = np.zeros((20, 30), np.uint8)
    membrane[5, 3:20] = 255
    tumour = np.zeros((20, 30), np.uint8)
    tumour[:10] = 1  # any non-zero value is foreground
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(membrane).save(tmp_path / "a_membrane.png")
    Image.fromarray(tumour).save(tmp_path / "a_tumour.png")
    sample = load_png_sample(tmp_path / "a.png")
    np.testing.assert_array_equal(sample.image, image)
    assert sample.valid.tolist() == [True, False, True]  # no a_nucleus.png: nucleus unannotated
    np.testing.assert_array_equal(sample.target[0], membrane > 0)
    np.testing.assert_array_equal(sample.target[2], tumour > 0)
    assert not sample.target[1].any()
    # the folder loader takes the image and skips its mask files
    (only,) = lab_samples(tmp_path)
    np.testing.assert_array_equal(only.target, sample.target)


def test_png_tile_without_masks_or_with_a_wrong_size_mask_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(InputError, match="no masks beside the image") as exc:
        load_png_sample(tmp_path / "b.png")
    _one_line_naming(exc, tmp_path / "b.png")
    Image.fromarray(np.zeros((10, 30), np.uint8)).save(tmp_path / "b_nucleus.png")
    with pytest.raises(InputError, match="mask is") as exc:
        load_png_sample(tmp_path / "b.png")
    _one_line_naming(exc, tmp_path / "b_nucleus.png")


def test_empty_lab_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no training tiles"):
        lab_samples(tmp_path)
    with pytest.raises(InputError, match="folder not found"):
        lab_samples(tmp_path / "absent")


# --- data: augmentation -------------------------------------------------------------------


def test_augment_shapes_dtypes_ranges_and_determinism(npz_tile: Path) -> None:
    sample = load_npz_sample(npz_tile)
    augment = Augment(out_px=64)
    for seed in range(6):
        out = augment(sample, np.random.default_rng(seed))
        assert out.image.shape == (64, 64, 3) and out.image.dtype == np.uint8
        assert out.target.shape == (3, 64, 64) and out.target.dtype == np.float32
        assert out.target.min() >= 0 and out.target.max() <= 1
        assert out.image.flags.c_contiguous and out.target.flags.c_contiguous
        np.testing.assert_array_equal(out.valid, sample.valid)
    again = [augment(sample, np.random.default_rng(4)) for _ in range(2)]
    np.testing.assert_array_equal(again[0].image, again[1].image)
    np.testing.assert_array_equal(again[0].target, again[1].target)
    other = augment(sample, np.random.default_rng(5))
    assert not np.array_equal(other.image, again[0].image)


def _blob_sample(size: int = 96) -> Sample:
    """Dark blobs (RGB 40) on a pale field (RGB 220), no symmetry; the targets are derived from
    the image: membrane = dark, nucleus = pale, tumour = dark in the top half only."""
    rng = np.random.default_rng(7)
    dark = ndi.gaussian_filter(rng.normal(size=(size, size)), 4) > 0.05
    image = np.where(dark[..., None], 40, 220).astype(np.uint8).repeat(3, axis=2)
    tumour = dark.copy()
    tumour[size // 2:] = False
    return Sample(image, np.stack([dark, ~dark, tumour]).astype(np.float32), np.ones(3, bool))


@pytest.mark.parametrize("mpp_range", [(0.5, 0.5), (0.4, 0.6)], ids=["no-rescale", "rescale"])
def test_augmented_targets_stay_on_their_pixels(mpp_range: tuple[float, float]) -> None:
    """With the colour changes off (stain scale/shift 0, no blur, no JPEG; only noise of σ ≤ 4
    and a ±5 % channel gain are left), the dark pixels of any augmented image must still be
    the membrane target: a rotation or flip applied to one and not the other, or a different
    crop, would leave about half of them wrong. Rescaling blends both the same way
    (bilinear), so a 0.5 threshold on the target matches the image's mid-grey."""
    sample = _blob_sample()
    augment = Augment(out_px=64, mpp_range=mpp_range, stain_scale=0.0, stain_shift=0.0,
                      blur_probability=0.0, jpeg_probability=0.0)
    seen = set()
    for seed in range(12):
        out = augment(sample, np.random.default_rng(seed))
        dark = out.image.mean(axis=2) < 130
        agree = (dark == (out.target[0] >= 0.5)).mean()
        assert agree > (0.999 if mpp_range[0] == mpp_range[1] else 0.98), (seed, agree)
        assert ((~dark) == (out.target[1] >= 0.5)).mean() > 0.98
        assert (out.target[2] <= out.target[0] + 1e-6).all()  # tumour ⊂ dark survives too
        seen.add(out.target[0].tobytes())
    assert len(seen) == 12


# --- data: QuPath cells -------------------------------------------------------------------


def _square(x: float, y: float, side: float) -> list[list[float]]:
    return [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]


def _octagon(cx: float, cy: float, r: float) -> list[list[float]]:
    angles = np.linspace(0, 2 * np.pi, 9)
    return np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)]).tolist()


@pytest.fixture(scope="module")
def qupath_slide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, list]]:
    """A 300 µm synthetic slide (0.25 µm/px) and a QuPath export in level-0 pixels: 2 cells
    with nuclei, one tumour annotation, and a third cell across the edge between the two
    tiles (128 working px = 256 level-0 px from x = 200, the cells' left edge)."""
    folder = tmp_path_factory.mktemp("qupath")
    svs = make_synthetic_slide(SlideSpec(name="qp", score="2+", size_um=(300.0, 300.0), seed=5), folder).svs
    shapes = {"cells": [_square(200, 200, 40), _octagon(320, 260, 24), _square(440, 300, 32)],
              "nuclei": [_square(212, 212, 16), _octagon(320, 260, 8), _square(448, 308, 16)],
              "tumour": [_square(380, 200, 60)]}
    cells = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [outline]},
              "nucleusGeometry": {"type": "Polygon", "coordinates": [nucleus]},
              "properties": {"objectType": "cell", "classification": {"name": "Tumor"}}}
             for outline, nucleus in zip(shapes["cells"], shapes["nuclei"])]
    region = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [shapes["tumour"][0]]},
              "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}}
    geojson = folder / "cells.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [*cells, region]}))
    return svs, geojson, shapes


def test_qupath_cells_are_rasterised_on_their_outlines(qupath_slide) -> None:
    svs, geojson, shapes = qupath_slide
    sample, right = qupath_samples(svs, geojson, work_mpp=0.5, tile_px=128)
    # Tiles from the cells' top-left corner (200, 200), 128 px at 0.5 µm/px = 256 level-0 px.
    assert sample.image.shape == (128, 128, 3) and sample.target.shape == (3, 128, 128)
    np.testing.assert_array_equal(sample.image, open_slide(svs).read_at_mpp(200, 200, 256, 256, 0.5)[:128, :128])
    assert sample.valid.tolist() == [True, True, True]
    membrane, nucleus, tumour = sample.target.astype(bool)

    def level0(mask: np.ndarray, x0: int = 200) -> np.ndarray:
        """Centres of a mask's working pixels in level-0 coordinates (2 level-0 px per pixel)."""
        rows, cols = np.nonzero(mask)
        return np.column_stack([x0 + (cols + 0.5) * 2, 200 + (rows + 0.5) * 2])

    outlines = [shapely.Polygon(ring) for ring in shapes["cells"]]
    edges = shapely.union_all([o.exterior for o in outlines])
    # Every membrane pixel lies on an outline (within one working pixel = 2 level-0 px): none
    # where the tile edge cuts the third cell ...
    assert shapely.distance(edges, shapely.points(level0(membrane))).max() <= 2.0
    right_membrane = right.target[0].astype(bool)
    assert shapely.distance(edges, shapely.points(level0(right_membrane, 456))).max() <= 2.0
    assert right_membrane.any() and right.target[2, 50:66, 0].all() and not right_membrane[52:64, 0].any()
    # ... and each whole outline is drawn all round, also on the tile's first row and column
    # (the left and top sides of the first cell): ~ one pixel per working pixel of perimeter.
    for outline in outlines[:2]:
        on_it = shapely.distance(outline.exterior, shapely.points(level0(membrane))) <= 2.0
        assert 0.8 < on_it.sum() / (outline.length / 2) < 1.2
    # Nuclei inside their outlines, with about their area (4 level-0 px² per working pixel).
    nuclei = shapely.union_all([shapely.Polygon(ring) for ring in shapes["nuclei"]])
    assert shapely.distance(nuclei, shapely.points(level0(nucleus))).max() <= 1.0
    assert nucleus.sum() == pytest.approx(nuclei.area / 4, rel=0.2)
    # Tumour: the cells' insides plus the annotated region, nothing else.
    tumour_area = shapely.union_all([*outlines, shapely.Polygon(shapes["tumour"][0])]).intersection(
        shapely.box(200, 200, 456, 456))
    assert shapely.distance(tumour_area, shapely.points(level0(tumour))).max() <= 1.0
    assert tumour.sum() == pytest.approx(tumour_area.area / 4, rel=0.1)
    assert not (membrane & ~tumour).any()


def test_qupath_export_without_cells_is_refused(qupath_slide, tmp_path: Path) -> None:
    svs, _, _ = qupath_slide
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(InputError, match="no cell objects"):
        qupath_samples(svs, empty, work_mpp=0.5)
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(InputError, match="not readable GeoJSON"):
        qupath_samples(svs, tmp_path / "bad.geojson", work_mpp=0.5)


# --- loss ---------------------------------------------------------------------------------


def test_unannotated_channels_contribute_nothing() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = (torch.rand(2, 3, 16, 16) > 0.7).float()
    valid = torch.tensor([[True, False, True], [True, True, False]])
    pos_weight = torch.tensor([3.0, 1.0, 1.0])
    loss = loss_fn(logits, target, valid, pos_weight)
    changed = target.clone()
    changed[0, 1] = 1 - changed[0, 1]  # sample 0 has no nucleus annotation
    changed[1, 2] = 1.0  # sample 1 has no tumour annotation
    assert torch.equal(loss, loss_fn(logits, changed, valid, pos_weight))
    loss.backward()
    assert logits.grad[0, 1].abs().max() == 0 and logits.grad[1, 2].abs().max() == 0
    assert logits.grad[0, 0].abs().max() > 0 and logits.grad[1, 1].abs().max() > 0


def test_loss_falls_when_overfitting_one_batch(npz_tile: Path) -> None:
    """Sanity check of network + normalisation + loss: 20 Adam steps on one fixed batch."""
    torch.manual_seed(0)
    sample = load_npz_sample(npz_tile)
    images = torch.from_numpy(sample.image[:64, :64]).permute(2, 0, 1)[None]
    target = torch.from_numpy(sample.target[:, :64, :64])[None]
    valid = torch.from_numpy(sample.valid)[None]
    network = build_network(TINY).train()
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    pos_weight = torch.tensor([3.0, 1.0, 1.0])
    losses = []
    for _ in range(20):
        loss = loss_fn(network(normalise(images, TINY)), target, valid, pos_weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], losses


# --- metrics ------------------------------------------------------------------------------


def test_pixel_f1_tolerates_a_one_pixel_shift_only_with_tolerance() -> None:
    truth = np.zeros((10, 10), bool)
    truth[:, 5] = True  # a vertical membrane, 10 px
    shifted = np.roll(truth, 1, axis=1)  # the same line one pixel to the right
    # tolerance 1: every predicted pixel has a true one next to it, and vice versa -> F1 1
    assert pixel_f1(shifted, truth, 1) == {"tp_pred": 10, "n_pred": 10, "tp_true": 10, "n_true": 10}
    assert summarise([pixel_f1(shifted, truth, 1)]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    # tolerance 0: no pixel coincides -> F1 0
    assert pixel_f1(shifted, truth, 0) == {"tp_pred": 0, "n_pred": 10, "tp_true": 0, "n_true": 10}
    assert summarise([pixel_f1(shifted, truth, 0)])["f1"] == 0.0
    # two pixels off is a miss even with tolerance 1
    assert summarise([pixel_f1(np.roll(truth, 2, axis=1), truth, 1)])["f1"] == 0.0


def test_summarise_pools_counts_over_tiles() -> None:
    truth = np.zeros((10, 10), bool)
    truth[:, 5] = True
    far = np.zeros((10, 10), bool)
    far[:, 0] = True  # 10 false alarms, and the 10 true pixels missed
    partial = truth.copy()
    partial[5:] = False  # 5 of 10 true pixels found, no false alarm
    # exact pixels (tolerance 0), per tile (tp_pred, n_pred, tp_true, n_true):
    # (10, 10, 10, 10), (0, 10, 0, 10), (5, 5, 5, 10); pooled: precision 15 / 25 = 0.6,
    # recall 15 / 30 = 0.5, F1 = 2 * 0.6 * 0.5 / 1.1 = 0.5455 (a mean of per-tile F1s would be 0.556)
    counts = [pixel_f1(truth, truth, 0), pixel_f1(far, truth, 0), pixel_f1(partial, truth, 0)]
    assert summarise(counts) == {"precision": 0.6, "recall": 0.5, "f1": 0.5455}


def test_evaluate_maps_scores_a_perfect_and_a_real_predictor(npz_tile: Path, tmp_path: Path) -> None:
    def perfect(image: np.ndarray) -> dict[str, np.ndarray]:
        sample = load_npz_sample(npz_tile)
        return {"membrane": sample.target[0] > 0, "nucleus": sample.target[1] > 0, "tumour": sample.target[2] > 0}

    report = evaluate_maps(perfect, [npz_tile])
    assert all(report[c]["f1"] == 1.0 for c in ("membrane", "nucleus", "tumour"))
    predict = network_predictor(load_weights(save_tiny_model(tmp_path / "m.pt")), torch.device("cpu"))
    maps = predict(np.zeros((37, 45, 3), np.uint8))
    assert set(maps) == {"membrane", "nucleus", "tumour"}
    assert all(m.shape == (37, 45) and m.dtype == bool for m in maps.values())
