"""Scanner variation: what another lab's scanner does to the same glass slide, applied to an RGB image.

Each perturbation is an 8-bit RGB → RGB function. ``expect`` says what a scorer must keep:
``same``: the same score and QC verdict (the change cancels against the slide's own white
point, or only adds noise); ``one class``: the same QC verdict and a score within one class,
because the perturbation really changes optical density (gamma scales every OD; a contrast
change or sharpening changes how dark the membranes are), which a lab absorbs by calibrating
each scanner on its controls (``her2slide calibrate``).

``washout`` is not a scanner variation that should pass: it is the over-exposed scan that QC
must refuse (``expect`` "not scored").
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from her2slide.config import Settings
from her2slide.scoring import CELL_CLASSES


@dataclass(frozen=True)
class Perturbation:
    name: str
    expect: str  # "same", "one class" or "not scored"
    describe: str
    apply: Callable[[np.ndarray], np.ndarray]


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def gains(r: float, g: float, b: float) -> Callable[[np.ndarray], np.ndarray]:
    """White balance / tint: each channel multiplied by its gain (then clipped to 8 bits)."""
    return lambda rgb: _to_uint8(rgb * np.array([r, g, b], dtype=np.float32))


def gamma(value: float) -> Callable[[np.ndarray], np.ndarray]:
    """255 (I / 255) ** gamma: every optical density against white 255 is multiplied by ``value``."""
    lut = _to_uint8(255.0 * (np.arange(256) / 255.0) ** value)
    return lambda rgb: lut[rgb]


def contrast(value: float) -> Callable[[np.ndarray], np.ndarray]:
    """Linear contrast about mid-grey: 128 + value (I - 128)."""
    lut = _to_uint8(128.0 + value * (np.arange(256) - 128.0))
    return lambda rgb: lut[rgb]


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after JPEG compression at ``quality`` (4:2:0 chroma subsampling), as a scanner's or
    a lab's export leaves it."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def jpeg(quality: int) -> Callable[[np.ndarray], np.ndarray]:
    """Re-encoded as JPEG, as scanners write their tiles."""
    return lambda rgb: jpeg_roundtrip(rgb, quality)


def image_filter(make: Callable[[], ImageFilter.Filter]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda rgb: np.asarray(Image.fromarray(rgb).filter(make()))


def washout(share: float) -> Callable[[np.ndarray], np.ndarray]:
    """Blended ``share`` of the way towards white (an over-exposed or flared scan)."""
    return lambda rgb: _to_uint8(rgb * (1.0 - share) + 255.0 * share)


PERTURBATIONS: tuple[Perturbation, ...] = (
    Perturbation("warm", "same", "white balance: gains R 1.00, G 0.94, B 0.80 (yellowish)", gains(1.0, 0.94, 0.80)),
    Perturbation("cool", "same", "white balance: gains R 0.88, G 0.95, B 1.00 (bluish)", gains(0.88, 0.95, 1.0)),
    Perturbation("green tint", "same", "tint: gains R 0.95, G 1.00, B 0.95", gains(0.95, 1.0, 0.95)),
    Perturbation("magenta tint", "same", "tint: gains R 1.00, G 0.93, B 1.00", gains(1.0, 0.93, 1.0)),
    Perturbation("darker exposure", "same", "all gains 0.85", gains(0.85, 0.85, 0.85)),
    Perturbation("jpeg 70", "same", "re-encoded as JPEG, quality 70", jpeg(70)),
    Perturbation("blur", "same", "Gaussian blur, σ 1 level-0 px", image_filter(lambda: ImageFilter.GaussianBlur(1.0))),
    Perturbation("gamma 0.8", "one class", "gamma 0.8 (every OD x 0.8)", gamma(0.8)),
    Perturbation("gamma 1.25", "one class", "gamma 1.25 (every OD x 1.25)", gamma(1.25)),
    Perturbation("contrast 1.2", "one class", "contrast x 1.2 about mid-grey (glass clips to white)", contrast(1.2)),
    Perturbation("contrast 0.85", "one class", "contrast x 0.85 about mid-grey", contrast(0.85)),
    Perturbation("sharpen", "one class", "unsharp mask, radius 2 px, 80%",
                 image_filter(lambda: ImageFilter.UnsharpMask(radius=2, percent=80, threshold=0))),
    Perturbation("washout 50%", "not scored", "blended 50% towards white (over-exposed)", washout(0.5)),
)

BY_NAME = {p.name: p for p in PERTURBATIONS}


def keeps_its_result(original: dict, perturbed: dict, perturbation: Perturbation, settings: Settings) -> bool:
    """Whether a perturbed image's report (``report.json``) meets ``perturbation.expect`` against the original's."""
    if perturbation.expect == "not scored":
        return _washout_handled(original, perturbed, settings)
    if perturbed["qc"]["verdict"] != original["qc"]["verdict"]:
        # An OD-scaling perturbation may take a pale slide below the washed-out limit: refusing it
        # is then what QC is for ("calibrate or rescan"); any other change of verdict is a failure.
        return perturbation.expect == "one class" and perturbed["qc"]["failed"] == ["washed_out"]
    if perturbation.expect == "same" or original["score"] is None:
        return perturbed["score"] == original["score"]
    return abs(CELL_CLASSES.index(perturbed["score"]) - CELL_CLASSES.index(original["score"])) <= 1


def _washout_handled(original: dict, washed: dict, settings: Settings) -> bool:
    """A washout towards white at least halves every optical density (Jensen's inequality), so a
    slide whose counterstain is below the reference comes out below half of it: it must not be
    scored (unless it still reads 3+, which a paler scan cannot have raised). Any washed slide
    that is scored must not score higher than the original."""
    if original["score"] is None:
        return washed["score"] is None
    if original["qc"]["stain"]["counterstain_od"] < settings.qc.reference_counterstain_od and washed["score"] != "3+":
        return washed["score"] is None and "washed_out" in washed["qc"]["flags"]
    return washed["score"] is None or CELL_CLASSES.index(washed["score"]) <= CELL_CLASSES.index(original["score"])
