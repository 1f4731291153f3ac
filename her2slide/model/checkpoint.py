"""Weights files: the network, its I/O configuration and training record, checked at load.

A weights file is a ``torch.save`` dict ``{"format", "io", "state_dict", "training"}``
beside a ``<name>.sha256`` file. Loading refuses a file whose checksum does not match
(a truncated copy or a silently swapped model would otherwise score slides), whose I/O
configuration does not fit the run (a model trained at 0.5 µm/px must not see 0.25 µm/px
pixels), or whose outputs are not the maps the cell measurement needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from her2slide.errors import InputError
from her2slide.model.network import UNet
from her2slide.provenance import file_sha256

FORMAT = "her2slide-membrane/1"
#: v1: membrane, nucleus and tumour maps from RGB.
OUTPUTS = ("membrane", "nucleus", "tumour")
INPUTS_V1 = ("rgb",)
#: v2: nucleus and tumour maps and each nucleus's normalised distance to its own edge (``centre``,
#: which splits touching nuclei), from the haematoxylin amount alone. No membrane map: a cell's
#: outline is grown from its nucleus within the epithelium, so neither which cells exist nor where
#: their outlines run can move with the DAB that is then measured on them.
OUTPUTS_V2 = ("nucleus", "tumour", "centre")
INPUTS_V2 = ("haematoxylin",)


class ModelIO(BaseModel):
    """What the network expects and produces; stored with the weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_mpp: float = Field(0.5, gt=0, description="µm per pixel the network was trained at")
    mpp_tolerance: float = Field(0.1, ge=0, description="relative mismatch of the run's work_mpp that is accepted")
    tile_px: int = Field(256, description="training tile edge, px")
    context_px: int = Field(48, description="pixels of context the output needs on each side (receptive field / 2)")
    mean: tuple[float, float, float] = (0.80, 0.74, 0.80)  # RGB / 255, typical IHC tissue
    std: tuple[float, float, float] = (0.15, 0.17, 0.13)
    outputs: tuple[str, ...] = OUTPUTS
    widths: tuple[int, ...] = (8, 16, 32, 64)
    inputs: tuple[str, ...] = Field(INPUTS_V1, description="rgb (v1) or haematoxylin (v2)")
    haematoxylin_scale: float = Field(0.25, gt=0, description="v2: haematoxylin OD that maps to 1.0 at the input")

    @property
    def haematoxylin_only(self) -> bool:
        """A v2 model: it sees the haematoxylin amount, never the RGB (so never the DAB)."""
        return tuple(self.inputs) == INPUTS_V2


#: The v2 model: a wider U-Net (the nuclei of real tissue need it) on the haematoxylin amount.
V2_IO = ModelIO(inputs=INPUTS_V2, outputs=OUTPUTS_V2, widths=(16, 32, 48, 64))


@dataclass(frozen=True)
class LoadedModel:
    network: UNet
    io: ModelIO
    sha256: str
    path: Path
    training: dict[str, Any]

    @property
    def model_id(self) -> str:
        return self.path.stem


def build_network(io: ModelIO) -> UNet:
    return UNet(widths=io.widths, out_channels=len(io.outputs), in_channels=1 if io.haematoxylin_only else 3)


def expected_outputs(io: ModelIO) -> tuple[str, ...]:
    return OUTPUTS_V2 if io.haematoxylin_only else OUTPUTS


def save_weights(path: Path, network: UNet, io: ModelIO, training: dict[str, Any]) -> str:
    """Write weights and their ``.sha256`` atomically; returns the checksum."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    torch.save({"format": FORMAT, "io": io.model_dump(mode="json"), "state_dict": state, "training": training}, tmp)
    digest = file_sha256(tmp)
    os.replace(tmp, path)
    _sha_path(path).write_text(f"{digest}  {path.name}\n")
    return digest


def load_weights(path: str | Path, work_mpp: float | None = None) -> LoadedModel:
    """Load and check a weights file (CPU tensors; the engine moves them)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "model weights not found (train one with `her2slide train`, see models/README.md)")
    expected = _expected_sha256(path)
    actual = file_sha256(path)
    if actual != expected:
        raise InputError(path, f"model checksum mismatch: file is {actual[:12]}…, {_sha_path(path).name} says {expected[:12]}…")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same bad input
        raise InputError(path, f"not a her2slide weights file ({exc.__class__.__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(path, f"not a her2slide weights file (format {blob.get('format') if isinstance(blob, dict) else None!r})")
    try:
        io = ModelIO.model_validate(blob["io"])
    except ValueError as exc:
        raise InputError(path, f"not a her2slide weights file (I/O configuration: {exc.__class__.__name__})") from None
    if tuple(io.inputs) not in (INPUTS_V1, INPUTS_V2):
        raise InputError(path, f"model inputs {list(io.inputs)} are neither {list(INPUTS_V1)} nor {list(INPUTS_V2)}")
    if tuple(io.outputs) != expected_outputs(io):
        raise InputError(path, f"model outputs {list(io.outputs)}, the cell measurement needs {list(expected_outputs(io))}")
    if work_mpp is not None and abs(work_mpp - io.input_mpp) > io.mpp_tolerance * io.input_mpp:
        raise InputError(path, f"model was trained at {io.input_mpp} µm/px; this run works at {work_mpp} µm/px")
    network = build_network(io)
    network.load_state_dict(blob["state_dict"])
    network.eval()
    return LoadedModel(network, io, actual, path, dict(blob.get("training", {})))


def _sha_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _expected_sha256(path: Path) -> str:
    sha_file = _sha_path(path)
    if not sha_file.exists():
        raise InputError(path, f"no checksum file {sha_file.name} beside the weights; refusing an unverified model")
    text = sha_file.read_text().split()
    if not text or len(text[0]) != 64:
        raise InputError(sha_file, "checksum file does not hold a SHA-256")
    return text[0]

