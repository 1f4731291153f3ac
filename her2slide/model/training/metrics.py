"""Pixel accuracy of segmentation maps against exact synthetic masks.

Membranes are 1–3 px wide, so an exact-pixel F1 would punish a one-pixel shift as a miss
and a false alarm at once; the tolerance (1 px, as in boundary-F1 measures) counts a
predicted pixel as right when a true one lies within it, and vice versa.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from her2slide.model.checkpoint import OUTPUTS
from her2slide.model.training.data import load_npz_sample

#: image (H, W, 3) uint8 -> {"membrane": bool, "nucleus": bool, "tumour": bool} at the same size
Predictor = Callable[[np.ndarray], dict[str, np.ndarray]]


def pixel_f1(predicted: np.ndarray, truth: np.ndarray, tolerance_px: int = 1) -> dict[str, float | int]:
    """Counts behind precision (predicted pixels near a true one) and recall (true pixels near a
    predicted one) with a square tolerance of ``tolerance_px``; pooled by :func:`summarise`."""
    size = 2 * tolerance_px + 1
    near_truth = ndi.maximum_filter(truth, size=size) if tolerance_px else truth
    near_pred = ndi.maximum_filter(predicted, size=size) if tolerance_px else predicted
    tp_pred = int((predicted & near_truth).sum())
    tp_true = int((truth & near_pred).sum())
    return {"tp_pred": tp_pred, "n_pred": int(predicted.sum()), "tp_true": tp_true, "n_true": int(truth.sum())}


def summarise(counts: list[dict[str, int]]) -> dict[str, float]:
    """Pool counts over tiles (micro-average), then precision/recall/F1."""
    total = {k: sum(c[k] for c in counts) for k in counts[0]}
    precision = total["tp_pred"] / max(total["n_pred"], 1)
    recall = total["tp_true"] / max(total["n_true"], 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def evaluate_maps(predict: Predictor, tiles: list[Path], tolerance_px: int = 1) -> dict[str, dict[str, float]]:
    """Membrane (every tumour-cell membrane), nucleus and tumour F1 over held-out tiles, for the
    maps the model makes (a v2 model has no membrane map).

    ``tumour`` is scored without tolerance: it is an area, not a line.
    """
    counts: dict[str, list] = {}
    for path in tiles:
        sample = load_npz_sample(path)
        predicted = predict(sample.image)
        for i, channel in enumerate(OUTPUTS):
            if channel not in predicted:
                continue
            truth = sample.target[i] >= 0.5
            tol = 0 if channel == "tumour" else tolerance_px
            counts.setdefault(channel, []).append(pixel_f1(predicted[channel], truth, tol))
    return {channel: summarise(c) for channel, c in counts.items()}


def network_predictor(model, device) -> Predictor:
    """Predictor running a loaded model on one image (padded to the network's multiple); a v2
    model's haematoxylin input uses the image's own white point, as a slide's would."""
    import torch

    from her2slide.model.inputs import detector_stain, network_input, stain_rows
    from her2slide.stain import estimate_white_point

    network = model.network.to(device).eval()

    def predict(image: np.ndarray) -> dict[str, np.ndarray]:
        h, w = image.shape[:2]
        m = network.multiple
        padded = np.pad(image, ((0, -h % m), (0, -w % m), (0, 0)), mode="reflect")
        x = torch.from_numpy(padded).permute(2, 0, 1)[None].to(device)
        rows = stain_rows([detector_stain(estimate_white_point(image))]).to(device)
        with torch.inference_mode():
            prob = torch.sigmoid(network(network_input(x, model.io, rows)))[0, :, :h, :w].cpu().numpy()
        return {c: prob[i] >= 0.5 for i, c in enumerate(model.io.outputs)}

    return predict
