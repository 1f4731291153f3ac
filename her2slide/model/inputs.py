"""What a network sees: the one function that turns uint8 images into network inputs.

Training and inference both call :func:`network_input`, so a model can never be trained on
one preprocessing and run on another. A v2 model sees only the haematoxylin amount, computed here from the RGB pixels with the slide's own stain vectors and white point
(the same deconvolution as :func:`her2slide.stain.stain_amounts`, in torch so it runs on the
GPU beside the network).
"""

from __future__ import annotations

import numpy as np
import torch

from her2slide.model.checkpoint import ModelIO
from her2slide.stain import StainModel

#: Smallest intensity before the logarithm, as in her2slide.stain.
_MIN_INTENSITY = 1.0


def normalise(images: torch.Tensor, io: ModelIO) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> the RGB input, standardised with the model's mean and std."""
    mean = torch.tensor(io.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(io.std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def detector_stain(white: np.ndarray) -> StainModel:
    """What the haematoxylin input is deconvolved with: the reference stain vectors and the
    slide's (or training tile's) white point.

    Not the slide's estimated vectors: Macenko's estimate takes the extremes of the
    haematoxylin–DAB plane, so it moves with the DAB itself (3–7° between a real core and the
    same core with its DAB removed), and through it the haematoxylin every nucleus is found in.
    The network is trained on vectors a few degrees off the reference (tilted renders, tile
    estimates), so a lab's own stain is within what it has seen; DAB is measured with the
    slide's own vectors, as before.
    """
    reference = StainModel.default()
    return StainModel(reference.haematoxylin, reference.dab, np.asarray(white, dtype=np.float64))


def stain_rows(stains: list[StainModel]) -> torch.Tensor:
    """(N, 2, 3) float32: per image, the white point and the RGB-OD -> haematoxylin column."""
    return torch.tensor(np.stack([np.stack([s.white, s.unmixing[:, 0]]) for s in stains]), dtype=torch.float32)


def haematoxylin(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Haematoxylin amount (N, 1, H, W), OD units, clipped at 0, of uint8 images (N, 3, H, W)
    under per-image stain ``rows`` (:func:`stain_rows`)."""
    rows = rows.to(images.device)
    intensity = images.float().clamp(min=_MIN_INTENSITY)
    od = (-torch.log10(intensity / rows[:, 0, :, None, None])).clamp(min=0.0)
    return torch.einsum("nchw,nc->nhw", od, rows[:, 1]).clamp(min=0.0)[:, None]


def network_input(images: torch.Tensor, io: ModelIO, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The network's input for uint8 images (N, 3, H, W).

    v1: the standardised RGB. v2: the haematoxylin amount alone, scaled by
    ``io.haematoxylin_scale``; ``rows`` are the images' stain rows (:func:`stain_rows`)."""
    if not io.haematoxylin_only:
        return normalise(images, io)
    if rows is None:
        raise ValueError("a haematoxylin model needs the stain rows of its images")
    return haematoxylin(images, rows) / io.haematoxylin_scale
