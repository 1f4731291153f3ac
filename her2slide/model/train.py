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
from her2slide.model.checkpoint import ModelIO, build_network, load_weights, save_weights
from her2slide.model.data import Augment, Sample, lab_samples, load_npz_sample, qupath_samples
from her2slide.model.metrics import evaluate_maps, network_predictor
from her2slide.outputs.atomic import write_json_atomic


@dataclass
class TrainConfig:
    out: Path
    steps: int = 800
    batch: int = 8
    lr: float = 3e-3
    seed: int = 0
    synthetic_tiles: int = 400
    validation_tiles: int = 120
    tile_cache: Path = Path("runs/tiles")
    lab_tiles: list[Path] = field(default_factory=list)
    qupath: list[tuple[Path, Path]] = field(default_factory=list)  # (slide, cells.geojson)
    lab_weight: float = 0.5  # share of each batch drawn from lab data when there is any
    init: Path | None = None  # fine-tune from these weights
    device: str = "auto"
    workers: int = 1
    checkpoint_every: int = 100
    membrane_pos_weight: float = 3.0


class _Samples(Dataset):
    """Endless index space: item k is sample ``k mod len`` augmented with its own seed, so a
    run is reproducible and never repeats an augmented sample."""

    def __init__(self, synthetic: list[Path], lab: list[Sample], lab_weight: float, seed: int,
                 augment: Augment, length: int) -> None:
        self.synthetic, self.lab, self.lab_weight = synthetic, lab, lab_weight
        self.seed, self.augment, self.length = seed, augment, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, k])
        if self.lab and (not self.synthetic or rng.random() < self.lab_weight):
            sample = self.lab[int(rng.integers(len(self.lab)))]
        else:
            sample = load_npz_sample(self.synthetic[int(rng.integers(len(self.synthetic)))])
        out = self.augment(sample, rng)
        return (torch.from_numpy(out.image).permute(2, 0, 1), torch.from_numpy(out.target),
                torch.from_numpy(out.valid))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        # an InputError, so `her2slide score --device cuda` on a CPU-only machine is one line, not a traceback
        raise InputError("settings", "device cuda asked for, but torch sees no CUDA device (use --device auto or cpu)")
    return torch.device(name)


def normalise(images: torch.Tensor, io: ModelIO) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float network input; the same function serves training and inference."""
    mean = torch.tensor(io.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(io.std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def loss_fn(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """BCE plus soft Dice per channel, counting only the channels each sample has annotated.
    Dice keeps the thin membrane class from being drowned by background."""
    weight = valid[:, :, None, None].float()
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight.view(1, -1, 1, 1),
                                             reduction="none")
    bce = (bce * weight).sum() / (weight.sum() * logits.shape[-1] * logits.shape[-2]).clamp(min=1)
    prob = torch.sigmoid(logits) * weight
    target = target * weight
    inter = (prob * target).sum(dim=(0, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3)) + 1)
    has = valid.any(dim=0).float()
    return bce + (dice * has).sum() / has.sum().clamp(min=1)


def train(config: TrainConfig, log=print) -> dict:
    """Run training; returns the validation report (also written to the run folder)."""
    from her2slide.synth.tiles import make_training_tiles

    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    io = ModelIO()
    cache = Path(config.tile_cache)
    size = io.tile_px + 64  # room for the scale augmentation's crop
    log(f"synthetic tiles: {config.synthetic_tiles} train + {config.validation_tiles} validation in {cache}")
    train_tiles = make_training_tiles(config.synthetic_tiles, cache / f"train-s0-{size}", tile_px=size, seed=0)
    val_tiles = make_training_tiles(config.validation_tiles, cache / f"val-s1-{size}", tile_px=size, seed=1)
    lab = [s for folder in config.lab_tiles for s in lab_samples(folder)]
    lab += [s for slide, geojson in config.qupath for s in qupath_samples(slide, geojson, io.input_mpp, io.tile_px)]

    network = build_network(io) if config.init is None else load_weights(config.init).network
    network = network.to(device).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=0.1)
    start_step = _resume(out / "checkpoint.pt", network, optimiser, schedule)
    dataset = _Samples(train_tiles, lab, config.lab_weight, config.seed, Augment(out_px=io.tile_px),
                       length=config.steps * config.batch)
    indices = list(range(start_step * config.batch, config.steps * config.batch))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=config.batch, shuffle=False,
                        num_workers=config.workers, pin_memory=device.type == "cuda",
                        persistent_workers=config.workers > 0)
    pos_weight = torch.tensor([config.membrane_pos_weight, 1.0, 1.0], device=device)
    network.train()
    started = time.perf_counter()
    with open(out / "train_log.jsonl", "a") as log_file:
        for step, (images, target, valid) in enumerate(loader, start=start_step + 1):
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            logits = network(normalise(images, io))
            loss = loss_fn(logits, target.to(device), valid.to(device), pos_weight)
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

