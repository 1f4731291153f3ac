"""Train (or fine-tune) the membrane network; seeded, checkpointed, with a validation report.

Data: a pool of synthetic tiles from the generator (cached on disk, made once), optionally
mixed with a lab's own tiles and QuPath cell exports, all strongly augmented on the fly.
The run folder holds ``checkpoint.pt`` (resumable), ``model.pt`` + ``model.pt.sha256``
(the weights), ``validation.json`` and ``train_log.jsonl``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from her2slide.errors import InputError
from her2slide.model.checkpoint import OUTPUTS, V2_IO, ModelIO, build_network, load_weights, save_weights
from her2slide.model.device import pick_device
from her2slide.model.inputs import network_input, stain_rows
from her2slide.model.training.dab import paint_dab
from her2slide.model.training.data import Augment, lab_samples, qupath_samples
from her2slide.model.training.metrics import evaluate_maps, network_predictor
from her2slide.model.training.real_nuclei import real_nuclei_source
from her2slide.model.training.sources import Source, input_stain, pick, sample_source, tile_source
from her2slide.model.training.targets import v2_targets
from her2slide.outputs.atomic import write_json_atomic


@dataclass
class TrainConfig:
    out: Path
    architecture: str = "v2"  # v2: nucleus/tumour/centre maps from haematoxylin alone; v1: membrane/nucleus/tumour from RGB
    steps: int = 800
    batch: int = 8
    lr: float = 3e-3
    seed: int = 0
    synthetic_tiles: int = 400
    validation_tiles: int = 120
    tile_cache: Path = Path("runs/tiles")
    families: tuple[str, ...] = ()  # synthetic style families to train on; () = the generator's default look
    synthetic_weight: float = 0.5  # share of each batch from synthetic tiles when other sources exist
    real_nuclei: Path | None = None  # v2: folder of the real nucleus sets (../shared/data/nuclei)
    real_weight: float = 0.5  # share of each batch from real nuclei
    lab_tiles: list[Path] = field(default_factory=list)
    qupath: list[tuple[Path, Path]] = field(default_factory=list)  # (slide, cells.geojson)
    lab_weight: float = 0.5  # share of each batch drawn from lab data when there is any
    init: Path | None = None  # fine-tune from these weights
    dab_probability: float = 0.5  # v2: share of samples given extra synthetic DAB
    device: str = "auto"
    workers: int = 1
    checkpoint_every: int = 100
    membrane_pos_weight: float = 3.0


class _Samples(Dataset):
    """Endless index space: item k is drawn and augmented with its own seed, so a run is
    reproducible and never repeats an augmented sample. Items: uint8 image (3, H, W), stain
    rows (2, 3) for the haematoxylin input (zeros for v1), target (C, H, W), validity (C,)."""

    def __init__(self, sources: list[Source], seed: int, augment: Augment, io: ModelIO, dab_probability: float,
                 length: int) -> None:
        self.sources, self.seed, self.augment, self.io = sources, seed, augment, io
        self.dab_probability, self.length = dab_probability, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, k])
        out = self.augment(pick(self.sources, rng).draw(rng), rng)
        if not self.io.haematoxylin_only:
            return (torch.from_numpy(out.image).permute(2, 0, 1), torch.zeros(2, 3), torch.from_numpy(out.target),
                    torch.from_numpy(out.valid))
        image = out.image
        if out.nuclei is not None and rng.random() < self.dab_probability:
            image = paint_dab(image, out.nuclei, self.io.input_mpp, rng)
        target, valid = v2_targets(out.target, out.valid, out.nuclei)
        return (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
                stain_rows([input_stain(image, rng)])[0], torch.from_numpy(target), torch.from_numpy(valid))


def loss_fn(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, pos_weight: torch.Tensor,
            dice_channels: int = len(OUTPUTS)) -> torch.Tensor:
    """BCE plus soft Dice per channel, counting only the channels each sample has annotated.
    Dice keeps the thin membrane class from being drowned by background. Only the first
    ``dice_channels`` are binary masks: v2's ``centre`` (a soft 0–1 target, last) is fitted by
    the BCE alone, a Dice on it means nothing."""
    weight = valid[:, :, None, None].float()
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight.view(1, -1, 1, 1),
                                             reduction="none")
    bce = (bce * weight).sum() / (weight.sum() * logits.shape[-1] * logits.shape[-2]).clamp(min=1)
    prob = torch.sigmoid(logits) * weight
    target = target * weight
    inter = (prob * target).sum(dim=(0, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3)) + 1)
    has = valid.any(dim=0).float()
    has[dice_channels:] = 0.0
    return bce + (dice * has).sum() / has.sum().clamp(min=1)


def train(config: TrainConfig, log=print) -> dict:
    """Run training; returns the validation report (also written to the run folder)."""
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    network, io = _initial_network(config)
    sources, val_tiles = _sources(config, io, log)
    network = network.to(device).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=0.1)
    start_step = _resume(out / "checkpoint.pt", network, optimiser, schedule)
    dataset = _Samples(sources, config.seed, Augment(out_px=io.tile_px), io, config.dab_probability,
                       length=config.steps * config.batch)
    indices = list(range(start_step * config.batch, config.steps * config.batch))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=config.batch, shuffle=False,
                        num_workers=config.workers, pin_memory=device.type == "cuda",
                        persistent_workers=config.workers > 0)
    pos_weight = torch.tensor([config.membrane_pos_weight if c == "membrane" else 1.0 for c in io.outputs], device=device)
    dice_channels = sum(c != "centre" for c in io.outputs)
    network.train()
    started = time.perf_counter()
    with open(out / "train_log.jsonl", "a") as log_file:
        for step, (images, rows, target, valid) in enumerate(loader, start=start_step + 1):
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            logits = network(network_input(images, io, rows.to(device)))
            loss = loss_fn(logits, target.to(device), valid.to(device), pos_weight, dice_channels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            record = {"step": step, "loss": round(float(loss.detach()), 5), "lr": schedule.get_last_lr()[0],
                      "seconds": round(time.perf_counter() - started, 1)}
            log_file.write(json.dumps(record) + "\n")
            if step % 20 == 0 or step == config.steps:
                log(f"step {step}/{config.steps} loss {record['loss']:.4f} ({record['seconds']} s)")
            if step % config.checkpoint_every == 0 or step == config.steps:
                _checkpoint(out / "checkpoint.pt", network, optimiser, schedule, step)
    training = {"config": _jsonable(config), "steps": config.steps, "device": str(device),
                "seconds": round(time.perf_counter() - started, 1), "torch": str(torch.__version__),
                "synthetic_seed": 0, "validation_seed": 1}
    network.eval()
    digest = save_weights(out / "model.pt", network.cpu(), io, training)
    report = {"weights": str(out / "model.pt"), "sha256": digest, "training": training,
              "validation": evaluate_maps(network_predictor(load_weights(out / "model.pt"), device), val_tiles)}
    write_json_atomic(out / "validation.json", report)
    log(json.dumps(report["validation"], indent=1))
    return report


def _initial_network(config: TrainConfig):
    """The network to start from and its I/O configuration: a fine-tuned model keeps its own."""
    if config.init is not None:
        model = load_weights(config.init)
        return model.network, model.io
    io = V2_IO if config.architecture == "v2" else ModelIO()
    return build_network(io), io


def _sources(config: TrainConfig, io: ModelIO, log) -> tuple[list[Source], list[Path]]:
    """The weighted sample sources of a run, and the synthetic validation tiles."""
    from her2slide.synth.tiles import make_training_tiles

    cache = Path(config.tile_cache)
    size = io.tile_px + 64  # room for the scale augmentation's crop
    family = list(config.families) or None  # None: the generator's calibrated (v1) look
    log(f"synthetic tiles: {config.synthetic_tiles} train + {config.validation_tiles} validation in {cache}"
        f" ({', '.join(config.families) or 'calibrated look'})")
    val_tiles = make_training_tiles(config.validation_tiles, cache / f"val-s1-{size}", tile_px=size, seed=1,
                                    family=family)
    sources = []
    if config.synthetic_tiles:
        train_tiles = make_training_tiles(config.synthetic_tiles, cache / f"train-s0-{size}", tile_px=size, seed=0,
                                          family=family)
        sources.append(tile_source("synthetic", train_tiles, config.synthetic_weight))
    lab = [s for folder in config.lab_tiles for s in lab_samples(folder)]
    lab += [s for slide, geojson in config.qupath for s in qupath_samples(slide, geojson, io.input_mpp, io.tile_px)]
    if lab:
        sources.append(sample_source("lab", lab, config.lab_weight))
    if config.real_nuclei is not None:
        if not io.haematoxylin_only:
            raise InputError(config.real_nuclei, "real nucleus sets train a v2 network only")
        sources.append(real_nuclei_source(config.real_nuclei, io.input_mpp, config.real_weight, cache))
    if not sources:
        raise InputError(config.out, "nothing to train on: no synthetic tiles, lab tiles, QuPath cells or real nuclei")
    return sources, val_tiles


def _checkpoint(path: Path, network, optimiser, schedule, step: int) -> None:
    tmp = path.with_name(path.name + ".partial")
    torch.save({"step": step, "network": network.state_dict(), "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict()}, tmp)
    os.replace(tmp, path)


def _resume(path: Path, network, optimiser, schedule) -> int:
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(state["network"])
    optimiser.load_state_dict(state["optimiser"])
    schedule.load_state_dict(state["schedule"])
    return int(state["step"])


def _jsonable(config: TrainConfig) -> dict:
    return {k: (str(v) if isinstance(v, Path) else [list(map(str, x)) if isinstance(x, tuple) else str(x) for x in v]
                if isinstance(v, list) else v) for k, v in vars(config).items()}

