"""The v2 cell network: haematoxylin input, centre maps, nucleus instances, weights files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from her2slide.cells import nuclei_from_centres
from her2slide.config import Settings
from her2slide.errors import InputError
from her2slide.model.checkpoint import INPUTS_V2, OUTPUTS_V2, ModelIO, build_network, load_weights, save_weights
from her2slide.model.inputs import detector_stain, haematoxylin, network_input, stain_rows
from her2slide.model.training.targets import centre_map, v2_targets
from her2slide.model.training.train import loss_fn
from her2slide.run.engine import CnnSegmenter
from her2slide.stain import StainModel, compose_rgb, stain_amounts

from test_model import one_torch_thread  # noqa: F401  (an autouse fixture)

TINY_V2 = ModelIO(widths=(4, 8, 16), inputs=INPUTS_V2, outputs=OUTPUTS_V2)
REPO = Path(__file__).resolve().parents[1]


def _tilted_stain() -> StainModel:
    d = StainModel.default()
    h = d.haematoxylin + np.array([0.05, -0.03, 0.04])
    return StainModel(h / np.linalg.norm(h), d.dab, np.array([236.0, 231.0, 244.0]))


def test_haematoxylin_input_is_the_deconvolution_the_pipeline_uses() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    stain = _tilted_stain()
    got = haematoxylin(torch.from_numpy(rgb).permute(2, 0, 1)[None], stain_rows([stain]))[0, 0].numpy()
    np.testing.assert_allclose(got, stain_amounts(rgb, stain)[..., 0], atol=1e-5)


def test_dab_does_not_reach_the_v2_input() -> None:
    """Detection cannot see DAB by construction: the same haematoxylin with and without a strong
    membrane of DAB gives the same input, up to 8-bit rounding; and the input is deconvolved with
    the reference vectors, not the slide's DAB-dependent estimate (only its white point is used)."""
    stain = _tilted_stain()
    yy, xx = np.mgrid[:64, :64]
    h = 0.25 * (((yy - 32) ** 2 + (xx - 20) ** 2) < 60) + 0.05
    membrane = 0.9 * (np.abs(xx - 40) < 2)
    reference = detector_stain(stain.white)
    assert np.allclose(reference.haematoxylin, StainModel.default().haematoxylin)
    assert np.array_equal(reference.white, stain.white)
    plain = compose_rgb(h.astype(np.float32), np.zeros_like(h, np.float32), reference)
    stained = compose_rgb(h.astype(np.float32), membrane.astype(np.float32), reference)
    assert np.abs(stained.astype(int) - plain).max() > 60  # the membrane is plainly brown
    rows = stain_rows([reference])
    a, b = (network_input(torch.from_numpy(x).permute(2, 0, 1)[None], TINY_V2, rows) * TINY_V2.haematoxylin_scale
            for x in (plain, stained))
    assert float((a - b).abs().max()) < 0.02


def test_centre_map_peaks_inside_each_nucleus_and_falls_to_zero_between_touching_ones() -> None:
    nuclei = np.zeros((20, 30), np.int32)
    nuclei[5:15, 3:13] = 1
    nuclei[5:15, 13:23] = 2  # touching its neighbour along column 12|13
    centre = centre_map(nuclei)
    assert centre.max() == pytest.approx(1.0)
    for label in (1, 2):
        assert centre[nuclei == label].max() == pytest.approx(1.0)
    assert centre[:, 12].max() == 0 and centre[:, 13].max() == 0
    assert centre[nuclei == 0].max() == 0


def test_nuclei_from_perfect_maps_splits_touching_nuclei() -> None:
    yy, xx = np.mgrid[:40, :60]
    nuclei = np.zeros((40, 60), np.int32)
    for label, (cy, cx) in enumerate([(20, 15), (20, 26), (10, 45)], start=1):
        nuclei[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = label  # the first two overlap: one blob
    assert int(np.unique(nuclei[nuclei > 0]).size) == 3
    found = nuclei_from_centres((nuclei > 0).astype(np.float32), centre_map(nuclei), mpp=0.5)
    assert len(np.unique(found[found > 0])) == 3
    for label in (1, 2, 3):
        overlap = np.bincount(found[nuclei == label])
        assert overlap[1:].max() >= 0.8 * (nuclei == label).sum()


def test_v2_targets_come_from_the_instances() -> None:
    nuclei = np.zeros((8, 8), np.int32)
    nuclei[2:6, 2:6] = 1
    target = np.zeros((3, 8, 8), np.float32)
    target[2, :4] = 1.0  # tumour
    target, valid = v2_targets(target, np.array([True, False, True]), nuclei)
    assert valid.tolist() == [True, True, True]
    assert (target[0] == (nuclei > 0)).all() and target[1, :4].all() and target[2].max() == 1.0
    _, valid = v2_targets(np.zeros((3, 8, 8), np.float32), np.array([True, True, False]), None)
    assert valid.tolist() == [True, False, False]


def test_dice_is_not_applied_to_the_soft_centre_channel() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16)
    target = (torch.rand(2, 3, 16, 16) > 0.5).float()
    only_centre = torch.zeros(2, 3, dtype=torch.bool)
    only_centre[:, 2] = True
    # a centre-only loss is the BCE alone: no Dice term was added
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 2], target[:, 2])
    got = loss_fn(logits, target, only_centre, torch.ones(3), dice_channels=2)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_v2_weights_round_trip_and_v1_stays_loadable(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build_network(TINY_V2).eval()
    save_weights(tmp_path / "v2.pt", network, TINY_V2, {"note": "test"})
    loaded = load_weights(tmp_path / "v2.pt")
    assert loaded.io.haematoxylin_only and tuple(loaded.io.outputs) == OUTPUTS_V2
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    rows = stain_rows([StainModel.default()])
    with torch.inference_mode():
        a = network(network_input(x, TINY_V2, rows))
        b = loaded.network(network_input(x, loaded.io, rows))
    assert a.shape == (1, 3, 32, 32) and torch.equal(a, b)
    v1 = load_weights(REPO / "models" / "her2slide-membrane-v1.pt")
    assert not v1.io.haematoxylin_only and tuple(v1.io.outputs) == ("membrane", "nucleus", "tumour")


def test_a_weights_file_with_unknown_inputs_is_refused(tmp_path: Path) -> None:
    odd = ModelIO(widths=(4, 8, 16), inputs=("rgb", "dab"))
    save_weights(tmp_path / "odd.pt", build_network(ModelIO(widths=(4, 8, 16))), odd, {})
    with pytest.raises(InputError, match="inputs"):
        load_weights(tmp_path / "odd.pt")


def test_the_segmenter_turns_a_v2_model_into_nucleus_instances(tmp_path: Path) -> None:
    torch.manual_seed(1)
    save_weights(tmp_path / "v2.pt", build_network(TINY_V2), TINY_V2, {})
    segmenter = CnnSegmenter(Settings(segmenter="cnn").with_model(weights=str(tmp_path / "v2.pt"), device="cpu"))
    rgb = np.random.default_rng(0).integers(100, 255, (48, 56, 3)).astype(np.uint8)
    maps = segmenter.segment(rgb, StainModel.default())
    assert maps.nuclei is not None and maps.nuclei.shape == (48, 56) and maps.nuclei.dtype == np.int32
    assert maps.nucleus_props is not None and len(maps.nucleus_props["label"]) == len(np.unique(maps.nuclei)) - 1
    assert maps.nucleus.shape == maps.tumour.shape == (48, 56)
    assert not maps.membrane.any()  # v2 outlines never follow the DAB


def test_a_v2_run_trains_saves_and_reports_the_maps_it_makes(tmp_path: Path) -> None:
    """End to end on a tiny run: the weights file is v2 and the synthetic validation report
    scores the maps a v2 model makes (nucleus, tumour), not a membrane map it has none of."""
    from her2slide.model.training.train import TrainConfig, train

    config = TrainConfig(out=tmp_path / "run", architecture="v2", steps=2, batch=2, synthetic_tiles=3,
                         validation_tiles=2, tile_cache=tmp_path / "tiles", workers=0)
    report = train(config, log=lambda line: None)
    assert set(report["validation"]) == {"nucleus", "tumour"}
    assert load_weights(tmp_path / "run" / "model.pt").io.outputs == OUTPUTS_V2
    assert (tmp_path / "run" / "validation.json").is_file()
