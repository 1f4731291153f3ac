"""The segmentation engine: the CNN streams a slide's tile plan (workers, batches, padding)
into the same (tile, RGB, maps) interface as the classical baseline; the pipeline records
which model scored; the CLI refuses a bad model in one line; on CUDA (autocast, channels
last) it agrees with float32 on the CPU.

Networks here are tiny: random (mechanics) or set by hand to a colour rule (so the
pipeline finds cells without a trained model). The GPU tests use the shipped weights when
they are there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from her2slide.cells import classical_maps
from her2slide.cli.main import build_parser, main
from her2slide.cli.options import settings_from_args
from her2slide.config import ContextSettings, ModelSettings, Settings, TilingSettings
from her2slide.errors import InputError
from her2slide.model.checkpoint import ModelIO, build_network, save_weights
from her2slide.model.weights_path import DEFAULT_WEIGHTS
from her2slide.provenance import file_sha256
from her2slide.run.engine import ClassicalSegmenter, CnnSegmenter, make_segmenter
from her2slide.run.pipeline import score_slide_file
from her2slide.slide import TilePlan, detect_tissue, open_slide, plan_tiles
from her2slide.stain import StainModel, stain_amounts
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec
from test_model import one_torch_thread, save_tiny_model  # noqa: F401  (an autouse fixture)

TILE_PX = 256  # 128 µm tiles: a 300 µm slide makes a plan of 8-9 tiles of 3 sizes


def cnn_settings(weights: Path, tile_px: int = TILE_PX, **model: object) -> Settings:
    return Settings(segmenter="cnn", tiling=TilingSettings(tile_px=tile_px),
                    model=ModelSettings(weights=str(weights), **{"device": "cpu", "workers": 0, **model}))


def tile_plan(svs: Path, settings: Settings) -> TilePlan:
    """The plan exactly as pipeline.score_slide_file builds it."""
    reader = open_slide(svs)
    thumb, thumb_mpp = reader.thumbnail(settings.tiling.tissue_mpp)
    mask = detect_tissue(thumb, thumb_mpp, level0_mpp=reader.mpp)
    t = settings.tiling
    return plan_tiles(reader, mask, work_mpp=t.work_mpp, tile_px=t.tile_px, margin_um=t.margin_um,
                      min_tissue_fraction=t.min_tissue_fraction)


def colour_rule_network(path: Path, rgb: np.ndarray, nucleus: np.ndarray) -> Path:
    """A network set by hand, not trained: nucleus = a linear (Fisher) discriminant of a pixel's
    RGB, fitted to ``nucleus`` on ``rgb``; tumour everywhere; membrane nowhere. It makes the
    pipeline find and measure cells through the CNN path in seconds.

    Channel 0 of the first block computes the discriminant (plus an offset that keeps it
    positive through the ReLUs); the next block and the last decoder pass it on unchanged,
    the deeper levels are zero, and the head subtracts the offset again.
    """
    pixels, labels = rgb.reshape(-1, 3) / 255.0, nucleus.ravel()
    mean_in, mean_out = pixels[labels].mean(axis=0), pixels[~labels].mean(axis=0)
    w = np.linalg.solve(np.cov(pixels[labels].T) + np.cov(pixels[~labels].T), mean_in - mean_out)
    b = -w @ (mean_in + mean_out) / 2
    io = ModelIO(widths=(4, 8))
    network, offset = build_network(io), 20.0
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        conv, norm = network.encoders[0][0][0], network.encoders[0][0][1]
        conv.weight[0, :, 1, 1] = torch.as_tensor(w * np.array(io.std))  # the input is (rgb - mean) / std
        norm.weight[0], norm.bias[0] = 1.0, float(w @ np.array(io.mean) + b + offset)
        for block in (network.encoders[0][1], network.decoders[-1]):
            block[0].weight[0, 0, 1, 1], block[1].weight[0] = 1.0, 1.0
        network.head.weight[1, 0] = 1.0
        network.head.bias[:] = torch.tensor([-10.0, -offset, 10.0])
    save_weights(path, network.eval(), io, {"note": "hand-set colour rule, for tests"})
    return path


def colour_rule_for(svs: Path, path: Path) -> Path:
    """The colour-rule network fitted to the classical nuclei of the middle of a slide."""
    reader = open_slide(svs)
    w, h = reader.dimensions
    rgb = reader.read_at_mpp(w // 4, h // 4, w // 2, h // 2, 0.5)
    nucleus = classical_maps(rgb, StainModel.default(), Settings().cells, 0.5).nucleus > 0.5
    return colour_rule_network(path, rgb, nucleus)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SlideSpec(name="eng3p", score="3+", size_um=(300.0, 300.0), seed=2)
    return make_synthetic_slide(spec, tmp_path_factory.mktemp("engine")).svs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny.pt")


@pytest.fixture(scope="module")
def plan(slide: Path, tiny: Path) -> TilePlan:
    plan = tile_plan(slide, cnn_settings(tiny))
    sizes = {(t.read[2] - t.read[0], t.read[3] - t.read[1]) for t in plan}
    assert len(plan) >= 4 and len(sizes) >= 3  # tiles of several sizes: padding is exercised
    return plan


@pytest.fixture(scope="module")
def runs(slide: Path, tiny: Path, plan: TilePlan) -> dict[str, list]:
    """The tiny network over the plan: in-process one tile at a time, in batches of 3 (tiles
    of different sizes padded together), and with a worker process reading the tiles."""
    out = {}
    for name, model in {"single": {}, "batch3": {"batch_size": 3}, "worker": {"workers": 1}}.items():
        segmenter = CnnSegmenter(cnn_settings(tiny, **model))
        out[name] = list(segmenter.tiles(open_slide(slide), plan, StainModel.default()))
    return out


def test_every_tile_once_in_plan_order_with_maps_the_tile_shape(runs: dict[str, list], plan: TilePlan) -> None:
    for name, tiles in runs.items():
        assert [tile for tile, _, _ in tiles] == plan.tiles, name
        for tile, rgb, maps in tiles:
            shape = rgb.shape[:2]
            assert rgb.dtype == np.uint8 and shape == (round((tile.read[3] - tile.read[1]) / plan.downsample),
                                                       round((tile.read[2] - tile.read[0]) / plan.downsample))
            for channel in (maps.membrane, maps.nucleus, maps.tumour):
                assert channel.shape == shape and channel.dtype == np.float32
                assert channel.min() >= 0 and channel.max() <= 1
            np.testing.assert_array_equal(maps.dab, stain_amounts(rgb, StainModel.default())[..., 1])


def test_batching_and_padding_do_not_change_the_maps(runs: dict[str, list], tiny: Path) -> None:
    """Each tile's maps equal predict() on that tile alone, whatever it was batched with: the
    engine pads every tile with enough glass that its neighbours in the batch are out of reach."""
    segmenter = CnnSegmenter(cnn_settings(tiny))
    for (_, rgb, single), (_, batched_rgb, batched) in zip(runs["single"], runs["batch3"]):
        np.testing.assert_array_equal(rgb, batched_rgb)
        alone = segmenter.predict(rgb)
        for maps in (single, batched):
            np.testing.assert_allclose(np.stack([maps.membrane, maps.nucleus, maps.tumour]), alone, atol=1e-5)


def test_a_worker_process_gives_the_same_tiles_and_maps(runs: dict[str, list]) -> None:
    for (tile_a, rgb_a, maps_a), (tile_b, rgb_b, maps_b) in zip(runs["single"], runs["worker"]):
        assert tile_a == tile_b
        np.testing.assert_array_equal(rgb_a, rgb_b)
        np.testing.assert_array_equal(maps_a.membrane, maps_b.membrane)
        np.testing.assert_array_equal(maps_a.nucleus, maps_b.nucleus)
        np.testing.assert_array_equal(maps_a.tumour, maps_b.tumour)


def test_classical_segmenter_yields_the_same_tiles_and_pixels(runs: dict[str, list], slide: Path,
                                                             plan: TilePlan) -> None:
    classical = ClassicalSegmenter(Settings())
    tiles = list(classical.tiles(open_slide(slide), plan, StainModel.default()))
    assert [t for t, _, _ in tiles] == [t for t, _, _ in runs["single"]]
    for (_, rgb, maps), (_, cnn_rgb, _) in zip(tiles, runs["single"]):
        np.testing.assert_array_equal(rgb, cnn_rgb)
        assert maps.membrane.shape == rgb.shape[:2]


def test_predict_keeps_odd_sizes(tiny: Path) -> None:
    segmenter = CnnSegmenter(cnn_settings(tiny))
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    probs = segmenter.predict(rgb)
    assert probs.shape == (3, 37, 53) and probs.dtype == np.float32
    assert segmenter.segment(rgb, StainModel.default()).nucleus.shape == (37, 53)


def test_an_empty_plan_yields_nothing(tiny: Path, slide: Path) -> None:
    empty = TilePlan([], work_mpp=0.5, margin_um=32.0, downsample=2.0)
    assert list(CnnSegmenter(cnn_settings(tiny)).tiles(open_slide(slide), empty, StainModel.default())) == []


def test_make_segmenter_picks_the_class(tiny: Path) -> None:
    assert isinstance(make_segmenter(Settings(segmenter="classical")), ClassicalSegmenter)
    cnn = make_segmenter(cnn_settings(tiny))
    assert isinstance(cnn, CnnSegmenter)
    assert cnn.model_id == "tiny" and cnn.model_sha256 == file_sha256(tiny)
    assert cnn.device.type == "cpu" and cnn.batch_size(256) == 1  # CPU: no batching


def test_default_settings_load_the_shipped_weights() -> None:
    segmenter = make_segmenter(Settings(segmenter="cnn", model=ModelSettings(device="cpu")))
    assert segmenter.model_id == DEFAULT_WEIGHTS.stem and segmenter.model_sha256 == file_sha256(DEFAULT_WEIGHTS)


def test_the_engine_refuses_too_little_tile_margin_for_the_model(tmp_path: Path) -> None:
    needy = save_tiny_model(tmp_path / "needy.pt", ModelIO(widths=(4, 8, 16), context_px=100))
    with pytest.raises(InputError, match="needs 100 px of context"):  # the 32 µm margin is 64 px
        CnnSegmenter(cnn_settings(needy))


def test_the_engine_refuses_a_model_for_another_resolution(tiny: Path) -> None:
    settings = cnn_settings(tiny).model_copy(update={"tiling": TilingSettings(work_mpp=0.25)})
    with pytest.raises(InputError, match="trained at 0.5 µm/px; this run works at 0.25 µm/px"):
        CnnSegmenter(settings)


def test_cuda_asked_for_without_cuda_is_one_line(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no CUDA device") as exc:
        CnnSegmenter(cnn_settings(tiny, device="cuda"))
    assert "\n" not in str(exc.value)
    assert CnnSegmenter(cnn_settings(tiny, device="auto")).device.type == "cpu"


# --- command line and pipeline ------------------------------------------------------------


def test_settings_from_args_puts_the_command_line_on_top() -> None:
    parser = build_parser()
    args = parser.parse_args(["score", "s.svs", "--out", "o", "--segmenter", "cnn", "--model", "m.pt",
                              "--device", "cpu"])
    settings = settings_from_args(args)
    assert settings.segmenter == "cnn" and settings.model.weights == "m.pt" and settings.model.device == "cpu"
    plain = settings_from_args(parser.parse_args(["score", "s.svs", "--out", "o"]))
    assert plain.model == Settings().model and plain.segmenter == Settings().segmenter


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_cli_refuses_a_bad_model_in_one_line(problem: str, slide: Path, tiny: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.pt"
    if problem == "corrupt":
        bad.write_bytes(tiny.read_bytes()[:-10])
        bad.with_name("bad.pt.sha256").write_text(tiny.with_name("tiny.pt.sha256").read_text())
    code = main(["score", str(slide), "--out", str(tmp_path / "out"), "--segmenter", "cnn", "--model", str(bad)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"her2slide: {bad}: ")
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())  # at most the empty --out the run started with


@pytest.fixture(scope="module")
def colour_rule(slide: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_rule_for(slide, tmp_path_factory.mktemp("models") / "colour-rule.pt")


def test_score_slide_file_records_the_model(slide: Path, colour_rule: Path, tmp_path: Path) -> None:
    settings = cnn_settings(colour_rule, tile_px=1024).model_copy(update={"context": ContextSettings(simulations=10)})
    outcome = score_slide_file(slide, tmp_path, settings, segmenter=CnnSegmenter(settings))
    report = json.loads((outcome.out_dir / "report.json").read_text())
    sha256 = (colour_rule.parent / "colour-rule.pt.sha256").read_text().split()[0]
    assert report["provenance"]["model"] == {"id": "colour-rule", "sha256": sha256}
    assert sha256 == file_sha256(colour_rule)
    assert report["provenance"]["config"]["segmenter"] == "cnn"
    assert report["provenance"]["config"]["model"]["weights"] == str(colour_rule)
    assert report["cells"]["total"] > 20  # the CNN path found and measured cells


# --- GPU ----------------------------------------------------------------------------------

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(),
                               reason="needs a CUDA device: torch.cuda.is_available() is False")


@pytest.fixture(scope="module")
def gpu_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SlideSpec(name="gpu-focal", pattern="focal", score="1+", positive="3+", fraction=0.3,
                     size_um=(1000.0, 1000.0), seed=9)
    return make_synthetic_slide(spec, tmp_path_factory.mktemp("gpu")).svs


@pytest.fixture(scope="module")
def gpu_weights(gpu_slide: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model where it is there (the real workload), else the colour-rule network."""
    if DEFAULT_WEIGHTS.exists():
        return DEFAULT_WEIGHTS
    return colour_rule_for(gpu_slide, tmp_path_factory.mktemp("models") / "colour-rule.pt")


@pytest.mark.gpu
@cuda_only
def test_cuda_maps_match_cpu_float32(gpu_slide: Path, gpu_weights: Path) -> None:
    torch.set_num_threads(8)  # the CPU reference; the GPU machines have 16 cores
    cpu = CnnSegmenter(cnn_settings(gpu_weights, tile_px=512, workers=2))  # 16 tiles: several per batch
    cuda = CnnSegmenter(cnn_settings(gpu_weights, tile_px=512, device="cuda", workers=4))
    assert cuda.cuda and cuda.dtype in (torch.bfloat16, torch.float16)
    plan = tile_plan(gpu_slide, cuda.settings)
    reference = list(cpu.tiles(open_slide(gpu_slide), plan, StainModel.default()))
    list(cuda.tiles(open_slide(gpu_slide), plan, StainModel.default()))  # warm-up: cuDNN, batch size
    torch.cuda.synchronize()
    started = time.perf_counter()
    on_gpu = list(cuda.tiles(open_slide(gpu_slide), plan, StainModel.default()))
    seconds = time.perf_counter() - started
    megapixels = sum(rgb.shape[0] * rgb.shape[1] for _, rgb, _ in on_gpu) / 1e6
    print(f"\nCUDA engine ({torch.cuda.get_device_name()}, {cuda.dtype}, batch {cuda.batch_size(0)}, "
          f"{len(plan)} tiles, {megapixels:.1f} MP at 0.5 µm/px): {megapixels / seconds:.1f} MP/s end to end")
    assert [t for t, _, _ in on_gpu] == plan.tiles
    for (_, rgb, ref), (_, gpu_rgb, got) in zip(reference, on_gpu):
        np.testing.assert_array_equal(rgb, gpu_rgb)
        for name in ("membrane", "nucleus", "tumour"):
            a, b = getattr(ref, name), getattr(got, name)
            assert np.abs(a - b).mean() < 0.02, name
            assert ((a >= 0.5) == (b >= 0.5)).mean() > 0.99, name


@pytest.mark.gpu
@cuda_only
def test_cuda_and_cpu_score_a_slide_alike(gpu_slide: Path, gpu_weights: Path, tmp_path: Path) -> None:
    torch.set_num_threads(8)
    reports = {}
    for device in ("cpu", "cuda"):
        settings = cnn_settings(gpu_weights, tile_px=1024, device=device, workers=2)
        reports[device] = score_slide_file(gpu_slide, tmp_path / device, settings).report
    cpu, cuda = reports["cpu"], reports["cuda"]
    print(f"\ncpu: {cpu['score']} {cpu['cells']}\ncuda: {cuda['score']} {cuda['cells']}")
    assert cuda["score"] == cpu["score"]
    assert cuda["cells"]["total"] == pytest.approx(cpu["cells"]["total"], rel=0.01)
    for cls, percent in cpu["cells"]["percent"].items():
        assert cuda["cells"]["percent"][cls] == pytest.approx(percent, abs=1.0)


def test_no_decode_process_for_a_one_tile_plan_unless_configured(tiny: Path) -> None:
    """A decode worker only helps when there is a next tile to read while the network runs."""
    auto = CnnSegmenter(cnn_settings(tiny, workers=None))
    assert auto.workers(1) == 0
    assert auto.workers(50) == max(0, min(8, (os.cpu_count() or 1) - 1))
    assert CnnSegmenter(cnn_settings(tiny, workers=2)).workers(1) == 2
