"""Which torch device a run uses: the same choice for scoring and for training."""

from __future__ import annotations

import torch

from her2slide.errors import InputError


def pick_device(name: str) -> torch.device:
    """The torch device for ``auto``, ``cpu`` or ``cuda``; asking for CUDA where there is none is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        # an InputError, so `her2slide score --device cuda` on a CPU-only machine is one line, not a traceback
        raise InputError("settings", "device cuda asked for, but torch sees no CUDA device (use --device auto or cpu)")
    return torch.device(name)
