"""maps.zarr: valid OME-NGFF 0.4 / 0.5, read back by ome-zarr's reader in the right place.

Validation uses ome-zarr-models (pydantic models of the NGFF 0.4 and 0.5 schemas, maintained
alongside the spec): ``Image.from_zarr`` checks the multiscales, axes, transformations and
omero metadata; label images are checked one by one with ``ImageLabel.from_zarr`` because its
0.4 ``Image`` does not descend into ``labels/`` (ome-zarr-models-py PR #355 is still open).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from her2slide.maps.region_maps import CHANNELS, LABELS, SCORE_COLOURS
from her2slide.outputs import zarr_maps
from her2slide.outputs.zarr_maps import float_pyramid, label_pyramid, write_maps_zarr
from region_maps_fixtures import MARKED, ORIGIN_UM, REGION_UM, make_heterogeneity, make_maps

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")


def _read(path: Path) -> dict[str, object]:
    """ome-zarr reader nodes by name ("maps" and each label name)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    return {node.metadata.get("name"): node for node in Reader(parse_url(str(path)))() if node.metadata.get("name")}


@pytest.fixture(scope="module", params=["0.4", "0.5"])
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp(f"ngff{request.param}") / "maps.zarr"
    write_maps_zarr(path, make_maps(excluded=True), make_heterogeneity(), {"input_sha256": "ab" * 32, "mpp": 0.25},
                    ngff_version=request.param, levels=3)
    return request.param, path


def test_validates_against_the_ngff_models(written: tuple[str, Path]) -> None:
    version, path = written
    models = pytest.importorskip(f"ome_zarr_models.v0{version[-1]}")
    group = zarr.open_group(str(path), mode="r")
    image = models.Image.from_zarr(group)
    assert image.ome_zarr_version == version
    for name in LABELS:
        label = models.ImageLabel.from_zarr(group[f"labels/{name}"])
        assert label is not None
    assert group.metadata.zarr_format == (2 if version == "0.4" else 3)


def test_channels_scales_and_alignment(written: tuple[str, Path]) -> None:
    _, path = written
    node = _read(path)["maps"]
    assert node.metadata["channel_names"] == [*CHANNELS, "excluded"]
    axes = node.metadata["axes"]
    assert [a["name"] for a in axes] == ["c", "y", "x"]
    assert all(a.get("unit") == "micrometer" for a in axes[1:])
    transforms = node.metadata["coordinateTransformations"]
    assert len(node.data) == len(transforms) == 3
    for k, level in enumerate(transforms):
        scale = next(t["scale"] for t in level if t["type"] == "scale")
        assert scale == [1.0, REGION_UM * 2**k, REGION_UM * 2**k]

    # The marked region covers slide µm origin + [col, col + 1) * R; NGFF puts pixel centres at
    # translation + index * scale, so its centre must map back to exactly its (row, col).
    row, col = MARKED
    centre_um = np.array([ORIGIN_UM[1] + (row + 0.5) * REGION_UM, ORIGIN_UM[0] + (col + 0.5) * REGION_UM])
    for k, level in enumerate(transforms):
        scale = np.array(next(t["scale"] for t in level if t["type"] == "scale")[1:])
        translation = np.array(next(t["translation"] for t in level if t["type"] == "translation")[1:])
        index = (centre_um - translation) / scale
        assert np.allclose(np.rint(index), np.array([row, col]) // 2**k)
        assert np.all(np.abs(index - np.rint(index)) <= 0.5 - 0.5 / 2**k + 1e-9)
    level0 = np.asarray(node.data[0])
    assert level0[CHANNELS.index("local_score"), row, col] == pytest.approx(3.0)
    assert level0[CHANNELS.index("fraction_3+"), row, col] == pytest.approx(0.777)
    # region (0, 0) holds no cells: no value there, at any level of a per-cell map
    assert np.isnan(level0[:len(CHANNELS), 0, 0]).all()


def test_labels_colours_and_alignment(written: tuple[str, Path]) -> None:
    _, path = written
    nodes = _read(path)
    maps = make_maps()
    for name in LABELS:
        node = nodes[name]
        np.testing.assert_array_equal(np.asarray(node.data[0]), maps.labels[name])
        assert node.metadata["coordinateTransformations"][0][0]["scale"] == [REGION_UM, REGION_UM]
    colours = nodes["local_score_class"].metadata["color"]
    for value, rgba in SCORE_COLOURS.items():
        assert np.allclose(np.array(colours[value]) * 255, rgba)
    group = zarr.open_group(str(path), mode="r")
    attrs = group["labels/heterogeneity_regions"].attrs.asdict()
    image_label = (attrs.get("ome") or attrs)["image-label"]
    assert image_label["colors"] == [{"label-value": 1, "rgba": [128, 0, 128, 255]}]
    assert image_label["properties"][0]["label-value"] == 1


def test_provenance_and_heterogeneity_in_root_attributes(written: tuple[str, Path]) -> None:
    _, path = written
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()["her2slide"]
    assert attrs["provenance"]["input_sha256"] == "ab" * 32
    assert attrs["heterogeneity"]["pattern"] == "focal"
    assert attrs["heterogeneity"]["morans_i"]["z"] is None  # NaN is not JSON
    assert attrs["region_um"] == REGION_UM and attrs["origin_um"] == list(ORIGIN_UM)
    json.dumps(attrs, allow_nan=False)


def test_float_pyramid_is_nan_aware_and_cell_weighted() -> None:
    maps = make_maps()
    levels = float_pyramid(maps, 3)
    assert [lv.shape[1:] for lv in levels] == [(5, 7), (3, 4), (2, 2)]
    k = CHANNELS.index("mean_completeness")
    # block (0, 0) of level 1 holds regions (0,0), (0,1), (1,0) without cells and (1,1) with: its value
    assert levels[1][k, 0, 0] == pytest.approx(maps.channels["mean_completeness"][1, 1])
    # block (1, 1): four regions with cells, weighted by their cell counts
    values = maps.channels["mean_completeness"][2:4, 2:4].astype(np.float64)
    weights = maps.counts[2:4, 2:4]
    assert levels[1][k, 1, 1] == pytest.approx((values * weights).sum() / weights.sum(), rel=1e-6)
    # density: area mean, regions without cells counting as 0, NaN only where no cell at all
    d = CHANNELS.index("cell_density")
    assert levels[1][d, 0, 0] == pytest.approx(maps.channels["cell_density"][1, 1] / 4, rel=1e-6)
    empty = make_maps()
    empty.counts[:] = 0
    for name in CHANNELS:
        empty.channels[name][:] = np.nan
    assert np.isnan(float_pyramid(empty, 2)[1]).all()


def test_label_pyramid_keeps_small_clusters() -> None:
    labels = np.zeros((4, 4), dtype=np.int32)
    labels[1, 1] = 3
    labels[2:4, 2:4] = [[2, 2], [4, 1]]
    levels = label_pyramid(labels, 3)
    np.testing.assert_array_equal(levels[1], [[3, 0], [0, 2]])
    assert levels[2].tolist() == [[3]]  # a tie between 3 and 2: the higher value wins
    assert len(levels) == 3


def test_unsupported_version_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0.4, 0.5"):
        write_maps_zarr(tmp_path / "maps.zarr", make_maps(), make_heterogeneity(), {}, ngff_version="0.6")
    assert not (tmp_path / "maps.zarr").exists()


def test_failure_leaves_no_half_written_zarr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    destination = tmp_path / "maps.zarr"
    write_maps_zarr(destination, make_maps(), make_heterogeneity(), {"run": 1})
    before = sorted(p.relative_to(destination) for p in destination.rglob("*"))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(zarr_maps, "_label_metadata", broken)
    with pytest.raises(OSError, match="disk full"):
        write_maps_zarr(destination, make_maps(), make_heterogeneity(), {"run": 2})
    assert sorted(p.relative_to(destination) for p in destination.rglob("*")) == before
    assert zarr.open_group(str(destination), mode="r").attrs["her2slide"]["provenance"] == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["maps.zarr"]
