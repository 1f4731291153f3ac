"""Where training samples come from, and how the v2 network's inputs and targets are made.

A *source* draws one raw :class:`Sample` from a random generator: synthetic tiles from the
generator's cache, a lab's own tiles, or real nucleus annotations rendered IHC-like. Training
mixes sources by weight; every sample is then augmented (her2slide.model.training.data.Augment) and,
for the v2 network, given extra DAB and the stain model its haematoxylin input is computed with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from her2slide.model.inputs import detector_stain
from her2slide.model.training.data import Sample, load_npz_sample
from her2slide.stain import StainModel, estimate_stain_model, estimate_white_point

Draw = Callable[[np.random.Generator], Sample]


@dataclass(frozen=True)
class Source:
    name: str
    weight: float
    draw: Draw


def tile_source(name: str, paths: Sequence[Path], weight: float) -> Source:
    """Synthetic (or lab) tiles saved as .npz, one drawn at random."""
    paths = list(paths)
    return Source(name, weight, lambda rng: load_npz_sample(paths[int(rng.integers(len(paths)))]))


def sample_source(name: str, samples: Sequence[Sample], weight: float) -> Source:
    """Samples already in memory (a lab's PNG tiles, QuPath exports), one drawn at random."""
    samples = list(samples)
    return Source(name, weight, lambda rng: samples[int(rng.integers(len(samples)))])


def pick(sources: Sequence[Source], rng: np.random.Generator) -> Source:
    weights = np.array([s.weight for s in sources], float)
    return sources[int(rng.choice(len(sources), p=weights / weights.sum()))]


def input_stain(image: np.ndarray, rng: np.random.Generator) -> StainModel:
    """The stain model a training tile's haematoxylin input is computed with.

    Half the time the tile's own Macenko estimate (as the pipeline estimates a slide's), half the
    time the reference vectors with the tile's white point: the network learns to work with
    vectors that are a few degrees off, as a per-slide estimate always is somewhere."""
    if rng.random() < 0.5:
        return estimate_stain_model(image)
    return detector_stain(estimate_white_point(image))
