"""Segmenters: turn the tile plan into (tile, pixels, CellMaps), the input of cell measurement.

Two segmenters with one interface, in two steps so the pipeline can overlap them:

- ``stream(reader, plan, stain)`` yields (tile, RGB, evidence) in plan order: the part that needs
  the slide and the accelerator (reading; the network), run by the caller's thread;
- ``maps(rgb, evidence, stain, spoilt)`` turns one tile's evidence into :class:`CellMaps`.
  It is pure and thread-safe, so the pipeline runs it in its measurement threads while the
  stream goes on (``tiles()`` is the two composed, one tile at a time).

- :class:`CnnSegmenter` streams tiles through the cell network: v2 finds nuclei (split at its
  centre map) and tumour epithelium from the haematoxylin amount alone, so cells and their
  outlines cannot depend on the DAB; v1 found membranes, nuclei and tumour from RGB. A torch DataLoader
  reads and decodes tiles in worker processes (each unpickles the reader and so opens its
  own slide handle), batches are padded with glass, pinned and copied to the GPU without
  blocking, and run under autocast (bf16 where the GPU has it, else fp16) in channels-last
  layout, with BatchNorm folded into the convolutions. The next batch is launched before the
  previous one's probabilities are handed out, so the GPU computes while cells are measured.
  On a CPU it is the same code in float32.
- :class:`ClassicalSegmenter` derives the maps from colour deconvolution (the baseline).

DAB is always measured from the pixels (``stain_amounts``), never from a network output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np

from her2slide.cells import CellMaps, classical_maps, nuclei_from_centres, nucleus_props
from her2slide.config import Settings
from her2slide.errors import InputError
from her2slide.slide import SlideReader, Tile, TilePlan
from her2slide.slide.tiles import read_tile
from her2slide.stain import StainModel, stain_amounts

#: What a segmenter yields per tile: the tile, its RGB at working resolution, its maps.
SegmentedTile = tuple[Tile, np.ndarray, CellMaps]
#: What ``stream`` yields per tile: the tile, its RGB, and the segmenter's evidence for ``maps``
#: (network probabilities (C, >=H, >=W), channels as the model's ``io.outputs``, for the CNN; None
#: for the classical segmenter).
StreamedTile = tuple[Tile, np.ndarray, np.ndarray | None]


class Segmenter(Protocol):
    model_id: str
    model_sha256: str | None

    def stream(self, reader: SlideReader, plan: TilePlan, stain: StainModel) -> Iterator[StreamedTile]: ...

    def maps(self, rgb: np.ndarray, evidence: np.ndarray | None, stain: StainModel,
             spoilt: np.ndarray | None = None) -> CellMaps: ...

    def tiles(self, reader: SlideReader, plan: TilePlan, stain: StainModel) -> Iterator[SegmentedTile]: ...

    def segment(self, rgb: np.ndarray, stain: StainModel) -> CellMaps: ...


class _Composed:
    """``tiles`` from a segmenter's ``stream`` and ``maps``, one tile at a time (tests, evaluation
    scripts; the pipeline overlaps the two through her2slide.run.tile_stream)."""

    def tiles(self, reader: SlideReader, plan: TilePlan, stain: StainModel) -> Iterator[SegmentedTile]:
        for tile, rgb, evidence in self.stream(reader, plan, stain):
            yield tile, rgb, self.maps(rgb, evidence, stain)


@dataclass
class ClassicalSegmenter(_Composed):
    settings: Settings
    model_id: str = "classical-segmenter"
    model_sha256: str | None = None

    def stream(self, reader: SlideReader, plan: TilePlan, stain: StainModel) -> Iterator[StreamedTile]:
        for tile in plan:
            yield tile, read_tile(reader, tile, plan.work_mpp), None

    def maps(self, rgb: np.ndarray, evidence: None, stain: StainModel, spoilt: np.ndarray | None = None) -> CellMaps:
        """Colour-deconvolution maps. ``spoilt`` pixels (pen ink, clipping, a fold: her2slide.qc)
        are turned to glass first: they would drag the tile-wide nucleus threshold for every cell."""
        clean = rgb if spoilt is None else _as_glass(rgb, spoilt, stain.white)
        return classical_maps(clean, stain, self.settings.cells, self.settings.tiling.work_mpp)

    def segment(self, rgb: np.ndarray, stain: StainModel) -> CellMaps:
        return self.maps(rgb, None, stain)


def _as_glass(rgb: np.ndarray, where: np.ndarray, white: np.ndarray) -> np.ndarray:
    clean = rgb.copy()
    clean[where] = np.clip(np.rint(white), 0, 255).astype(np.uint8)
    return clean


class _TileDataset:
    """Item i: (i, RGB of tile i at working resolution). Picklable with its reader."""

    def __init__(self, reader: SlideReader, plan: TilePlan) -> None:
        self.reader, self.plan = reader, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | InputError]:
        try:
            return i, read_tile(self.reader, self.plan.tiles[i], self.plan.work_mpp)
        except InputError as exc:
            # Handed back as a value: torch re-raises a worker's exception as a RuntimeError
            # holding a traceback, which would reach the user instead of the one-line reason.
            return i, exc


def _worker_init(_: int) -> None:
    import torch

    from her2slide.run.lifeline import die_with_parent

    die_with_parent()  # a killed `score` must not leave its decode processes behind
    torch.set_num_threads(1)  # decode workers must not fight the model for cores


class CnnSegmenter(_Composed):
    """The membrane network over a slide's tile plan (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        import torch

        from her2slide.model.checkpoint import load_weights
        from her2slide.model.network import fused_for_inference
        from her2slide.model.device import pick_device
        from her2slide.model.weights_path import weights_path

        self.settings = settings
        self.model = load_weights(weights_path(settings), work_mpp=settings.tiling.work_mpp)
        margin_px = settings.tiling.margin_um / settings.tiling.work_mpp
        if margin_px < self.model.io.context_px:
            raise InputError(self.model.path, f"the model needs {self.model.io.context_px} px of context around each "
                                              f"tile; tiling.margin_um gives only {margin_px:.0f} px")
        self.device = pick_device(settings.model.device)
        network = fused_for_inference(self.model.network)
        self.network = network.to(self.device).to(memory_format=torch.channels_last).eval()
        self.model_id = self.model.model_id
        self.model_sha256: str | None = self.model.sha256
        self.cuda = self.device.type == "cuda"
        self.dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if self.cuda else None
        self._batch_size = settings.model.batch_size

    def workers(self, tiles: int) -> int:
        """DataLoader decode processes for a plan of ``tiles``: configured, or one fewer than the
        cores (at most 8) and fewer than the tiles: a plan of one tile has nothing to decode
        ahead, and starting a process for it cost ~0.3 s of a 3 s small slide."""
        configured = self.settings.model.workers
        return configured if configured is not None else max(0, min(8, (os.cpu_count() or 1) - 1, tiles - 1))

    def batch_size(self, tile_px: int) -> int:
        """Tiles per batch: configured, or what fits in half the free GPU memory (1 on a CPU,
        where batching buys nothing)."""
        if self._batch_size is None:
            self._batch_size = self._fit_batch(tile_px) if self.cuda else 1
        return self._batch_size

    def _fit_batch(self, tile_px: int) -> int:
        import torch

        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        probe = torch.full((1, 3, tile_px, tile_px), 255, dtype=torch.uint8, device=self.device)
        self._forward(probe, self._stain_rows(StainModel.default(), 1))
        per_tile = max(torch.cuda.max_memory_allocated(self.device) - before, 1)
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(np.clip(0.5 * free // per_tile, 1, 64))

    def _stain_rows(self, stain: StainModel, n: int):
        """Stain rows of a batch of ``n`` tiles for the v2 haematoxylin input, on the device."""
        from her2slide.model.inputs import detector_stain, stain_rows

        return stain_rows([detector_stain(stain.white)]).to(self.device).expand(n, -1, -1)

    def _forward(self, images, rows):
        """uint8 (N, 3, H, W) on the device -> float probabilities (N, C, H, W)."""
        import torch

        from her2slide.model.inputs import network_input

        x = network_input(images, self.model.io, rows).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.cuda):
            return torch.sigmoid(self.network(x).float())

    def predict(self, rgb: np.ndarray, stain: StainModel | None = None) -> np.ndarray:
        """Probabilities (C, H, W) float32 for one RGB image (tests and evaluation)."""
        import torch

        batch = torch.from_numpy(_pad_stack([rgb], self.network.multiple, self.model.io.context_px))
        batch = batch.permute(0, 3, 1, 2).to(self.device)
        h, w = rgb.shape[:2]
        return self._forward(batch, self._stain_rows(stain or StainModel.default(), 1))[0, :, :h, :w].cpu().numpy()

    def segment(self, rgb: np.ndarray, stain: StainModel) -> CellMaps:
        return self.maps(rgb, self.predict(rgb, stain), stain)

    def maps(self, rgb: np.ndarray, evidence: np.ndarray, stain: StainModel,
             spoilt: np.ndarray | None = None) -> CellMaps:
        """Network probabilities (padding cropped here) plus DAB measured from the pixels; a v2
        model's nuclei are split into instances at its centre map.
        ``spoilt`` is not needed: the network's calls are local, no tile-wide threshold to drag."""
        h, w = rgb.shape[:2]
        maps = dict(zip(self.model.io.outputs, evidence[:, :h, :w]))
        dab = stain_amounts(rgb, stain)[..., 1]
        if not self.model.io.haematoxylin_only:
            return CellMaps(nucleus=maps["nucleus"], membrane=maps["membrane"], tumour=maps["tumour"], dab=dab)
        # v2: no membrane evidence, so outlines grow from the nuclei within the epithelium, blind to DAB
        nuclei = nuclei_from_centres(maps["nucleus"], maps["centre"], self.settings.tiling.work_mpp)
        return CellMaps(nucleus=maps["nucleus"], membrane=np.zeros_like(maps["nucleus"]), tumour=maps["tumour"],
                        dab=dab, nuclei=nuclei, nucleus_props=nucleus_props(nuclei))

    def stream(self, reader: SlideReader, plan: TilePlan, stain: StainModel) -> Iterator[StreamedTile]:
        import torch
        from torch.utils.data import DataLoader

        if len(plan) == 0:
            return
        side = max(max(t.read[2] - t.read[0], t.read[3] - t.read[1]) for t in plan.tiles)
        context = self.model.io.context_px
        tile_px = int(np.ceil((side / plan.downsample + context) / self.network.multiple) * self.network.multiple)
        workers = self.workers(len(plan))
        loader = DataLoader(_TileDataset(reader, plan), batch_size=self.batch_size(tile_px), shuffle=False,
                            num_workers=workers, pin_memory=self.cuda,
                            collate_fn=partial(_collate, multiple=self.network.multiple, context=context),
                            worker_init_fn=_worker_init if workers else None,
                            prefetch_factor=4 if workers else None, persistent_workers=False)
        rows = self._stain_rows(stain, 1)  # one slide, one stain: the same rows for every batch
        pending = None
        for item in loader:
            if isinstance(item, InputError):
                raise item  # a tile that could not be read: the slide's one-line reason
            indices, rgbs, batch = item
            probs = self._forward(batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2),
                                  rows.expand(len(indices), -1, -1))
            host = probs.to("cpu", non_blocking=self.cuda)
            if self.cuda:
                done = torch.cuda.Event()
                done.record()
            if pending is not None:
                yield from _unpack(*pending, plan)
            if self.cuda:
                done.synchronize()
            pending = (indices, rgbs, host)
        if pending is not None:
            yield from _unpack(*pending, plan)


def _unpack(indices: list[int], rgbs: list[np.ndarray], probs, plan: TilePlan) -> Iterator[StreamedTile]:
    probs = probs.numpy()
    for i, rgb, p in zip(indices, rgbs, probs):
        yield plan.tiles[i], rgb, p


def _pad_stack(rgbs: list[np.ndarray], multiple: int, context: int = 0) -> np.ndarray:
    """Stack tiles of different sizes into one (N, H, W, 3) uint8 batch, padded with glass.

    At least ``context`` px (the network's receptive-field radius) of glass follow every
    tile's right and bottom edges, so its maps are the same whatever tiles share its batch:
    without it, a slide-edge tile's maps changed with the batch size, i.e. with free GPU memory."""
    h = max(r.shape[0] for r in rgbs) + context
    w = max(r.shape[1] for r in rgbs) + context
    h, w = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    out = np.full((len(rgbs), h, w, 3), 255, np.uint8)
    for k, rgb in enumerate(rgbs):
        out[k, : rgb.shape[0], : rgb.shape[1]] = rgb
    return out


def _collate(items: list[tuple[int, np.ndarray | InputError]], multiple: int, context: int):
    import torch

    failed = next((rgb for _, rgb in items if isinstance(rgb, InputError)), None)
    if failed is not None:
        return failed
    indices = [i for i, _ in items]
    rgbs = [rgb for _, rgb in items]
    return indices, rgbs, torch.from_numpy(_pad_stack(rgbs, multiple, context))


def make_segmenter(settings: Settings) -> Segmenter:
    """The segmenter the settings name (``cnn`` loads and checks the weights)."""
    if settings.segmenter == "classical":
        return ClassicalSegmenter(settings)
    return CnnSegmenter(settings)
