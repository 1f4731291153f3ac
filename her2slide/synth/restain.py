"""Real images restained in optical-density space: DAB taken out, DAB membranes put in, H&E made IHC-like.

Every operation works on stain amounts along unit stain vectors (her2slide.stain's
convention), so what is added is what colour deconvolution reads back, and what is left
alone (the nuclei, their chromatin, the tissue's texture) is the real image's.

- :func:`remove_dab`: the DAB of an IHC image set to zero (scikit-image's H–E–DAB deconvolution);
- :func:`membrane_dab` then :func:`add_dab`: synthetic membrane DAB drawn on the cell
  outlines around real nuclei, added by Beer–Lambert;
- :func:`he_to_ihc`: an H&E image turned into an unstained IHC counterstain.

Why the counterstain scale (``python3 scripts/measure_counterstain.py``, at 0.5 µm/px; the
median haematoxylin amount over nucleus pixels, nuclei taken as the pixels above the
haematoxylin's Otsu threshold over the tissue, the same rule for both kinds of image):

- the four real HER2 IHC cores (0, 1+, 2+, 2+): 0.120 / 0.143 / 0.138 / 0.124 (with the classical
  segmenter's nuclei: 0.124 / 0.145 / 0.135 / 0.117);
- H&E with the per-image separation below (image medians, range): MoNuSeg 0.61 (0.32–0.95),
  CPM-15 0.69 (0.42–0.99), DSB 0.74 (0.25–0.96); under the annotated nuclei MoNuSeg 0.60
  (0.16–0.94), CPM-15 0.59 (0.31–0.83), DSB 0.39 (0.24–0.64).

So the IHC counterstain is 5.0x paler than the H&E haematoxylin (median ratio; 1.8–8.2x image
by image): ``haematoxylin_scale`` about 0.2 turns a typical H&E image into a typical IHC core.
The H&E levels vary 3x between images, so a caller that knows the nuclei aims at an absolute
level instead: scale = target / :func:`nuclear_haematoxylin` of the image (0.12–0.15 for the
real cores under the annotated-like classical nuclei).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.color import hed2rgb, hed_from_rgb, rgb2hed, rgb_from_hed
from skimage.segmentation import expand_labels, find_boundaries

from her2slide.cells import label_centroids
from her2slide.stain import (DAB_RGB_OD, HAEMATOXYLIN_RGB_OD, StainModel, angle_deg, macenko_directions, od_to_rgb,
                             rgb_to_od, stain_amounts)

#: Eosin reference direction (Macenko et al. 2009, as in staintools/torchstain). The per-image
#: estimates of the 45 MoNuSeg and CPM-15 images lie 2–12° from it (18° for one pale image),
#: and 26–33° from scikit-image's eosin vector, which therefore makes a poor guard.
EOSIN_RGB_OD = np.array([0.2159, 0.8012, 0.5581])
#: Per-image H&E vectors further than this from the references are not trusted. The MoNuSeg and
#: CPM-15 haematoxylin estimates lie 3–16° from the reference; on the haematoxylin-only DSB images
#: the second extreme is the yellowish background, 36–46° from eosin, and is replaced.
HE_MAX_ANGLE_DEG = 20.0
#: Glass of the real oesophageal cores, measured inside the cores (as her2slide.synth's ``Look``).
IHC_GLASS_RGB = (234.0, 233.0, 242.0)
#: Rows deconvolved at once by :func:`remove_dab`.
_STRIP_ROWS = 512
#: Optical densities below this carry no usable stain direction (glass, JPEG noise).
_OD_FLOOR = 0.15
_MIN_FIT_PIXELS = 2000
#: The H&E fit uses every k-th pixel, about this many in all: a colour statistic needs no more.
_FIT_PIXELS = 250_000


def remove_dab(rgb: np.ndarray, literal: bool = False, white: Sequence[float] | None = None) -> np.ndarray:
    """The image with its DAB taken out: colour-deconvolve with scikit-image's haematoxylin /
    eosin / DAB matrix (Ruifrok–Johnston vectors, white 255), set DAB to zero, recompose.
    uint8 RGB in and out.

    ``literal=True`` is issue 14's recipe to the letter, ``hed2rgb(rgb2hed(rgb) with DAB := 0)``.
    But ``rgb2hed`` clips every negative stain amount to zero before anything is zeroed, so the
    recomposed image gains haematoxylin and eosin wherever a pixel lay off the H–E–DAB span
    (most of an IHC slide, which has no eosin): the lavender cast, and a haematoxylin change that
    is no part of removing the DAB. The default does the same deconvolution without that clip
    and sets only the positive DAB amounts to zero (a negative amount is a colour off the stain
    span, not stain), so every pixel without DAB comes back as it was, up to rounding: the same
    tissue, the same nuclei, only the brown gone.

    ``white`` (default 255, scikit-image's) is the light the amounts are taken against: give the
    slide's glass. Against 255 the glass's own tint decomposes into some DAB, and taking it out
    brightens the glass (tests/test_restain.py), which moves the slide's white
    point and so every other optical density: a change that is no part of removing the DAB.
    """
    out = np.empty_like(rgb)
    light = np.full(3, 255.0) if white is None else np.asarray(white, dtype=np.float64)
    log_adjust = np.log(1e-6)  # scikit-image's scale: stain amounts in its units, as rgb2hed
    for top in range(0, rgb.shape[0], _STRIP_ROWS):  # per pixel: strips keep a whole core's float copies small
        part = rgb[top:top + _STRIP_ROWS]
        if literal:
            hed = rgb2hed(part)
            hed[..., 2] = 0.0
            out[top:top + _STRIP_ROWS] = np.clip(np.rint(hed2rgb(hed) * 255.0), 0, 255).astype(np.uint8)
            continue
        stains = (np.log(np.maximum(part / light, 1e-6)) / log_adjust) @ hed_from_rgb
        np.minimum(stains[..., 2], 0.0, out=stains[..., 2])  # the brown goes; a negative amount is no stain
        recomposed = np.exp((stains @ rgb_from_hed) * log_adjust) * light
        out[top:top + _STRIP_ROWS] = np.clip(np.rint(recomposed), 0, 255).astype(np.uint8)
    return out


def add_dab(rgb: np.ndarray, dab_od: np.ndarray, white: Sequence[float] | None = None, *,
            vector: Sequence[float] = DAB_RGB_OD) -> np.ndarray:
    """``rgb`` with ``dab_od`` (H, W) OD units of DAB added along ``vector`` (default the
    reference DAB vector, her2slide.stain.DAB_RGB_OD), by Beer–Lambert.

    ``white`` is the glass the optical densities are taken against. The default, 255, makes the
    addition a pure per-channel attenuation that clips no pixel; a white below some pixels
    (bright JPEG glass) would first clip those to the white point.
    """
    od = rgb_to_od(rgb, white)
    od += dab_od[..., None].astype(np.float32) * _unit(vector).astype(np.float32)
    return od_to_rgb(od, white)


def he_stain_model(rgb_he: np.ndarray) -> StainModel:
    """The H&E image's own haematoxylin and eosin directions (eosin in the ``dab`` slot), white 255.

    Per image, by Macenko's method, rather than scikit-image's fixed H&E vectors. On the 45
    MoNuSeg and CPM-15 images (native resolution, annotated nuclei) the fixed vectors leave a
    median 0.15 OD (0.05–0.24) of the nuclear colour outside the H–E plane, 0.014 (0.009–0.028)
    with the per-image fit, and give the tissue between nuclei 0.44 (0.26–0.67) of the nuclear
    haematoxylin against 0.32 (0.17–0.61): with fixed vectors, dropping the eosin would also drop
    part of every nucleus and leave a purple haze. A fit further than :data:`HE_MAX_ANGLE_DEG`
    from the reference falls back to it (the haematoxylin-only DSB images). White 255: these crops are
    mostly tissue, so no glass is there to measure.
    """
    od = rgb_to_od(rgb_he).reshape(-1, 3)[:: max(1, rgb_he.shape[0] * rgb_he.shape[1] // _FIT_PIXELS)]
    h, e = HAEMATOXYLIN_RGB_OD, EOSIN_RGB_OD
    fitted = macenko_directions(od, (h, e), od_threshold=_OD_FLOOR, min_pixels=_MIN_FIT_PIXELS)
    if fitted is not None:
        h, e = (c if angle_deg(c, ref) <= HE_MAX_ANGLE_DEG else ref for c, ref in zip(fitted, (h, e)))
    return StainModel(_unit(h), _unit(e), np.full(3, 255.0))


def haematoxylin_he(rgb_he: np.ndarray) -> np.ndarray:
    """Haematoxylin amount (H, W) float32 of an H&E image (:func:`he_stain_model`)."""
    return stain_amounts(rgb_he, he_stain_model(rgb_he))[..., 0]


def nuclear_haematoxylin(haematoxylin: np.ndarray, nuclei: np.ndarray) -> float:
    """Median haematoxylin amount over nucleus pixels (``nuclei`` > 0): an image's counterstain level."""
    inside = haematoxylin[nuclei > 0]
    return float(np.median(inside)) if inside.size else 0.0


def he_to_ihc(rgb_he: np.ndarray, haematoxylin_scale: float, *, vector: Sequence[float] = HAEMATOXYLIN_RGB_OD,
              white: Sequence[float] = IHC_GLASS_RGB, haematoxylin: np.ndarray | None = None) -> np.ndarray:
    """An H&E image as an unstained HER2 IHC field: eosin dropped, haematoxylin times
    ``haematoxylin_scale`` (about 0.2 for a typical IHC counterstain: module docstring),
    recomposed along ``vector`` (the IHC haematoxylin direction) over glass of colour ``white``.

    ``haematoxylin``: the amount map if the caller already has it (:func:`haematoxylin_he`).
    """
    amount = haematoxylin_he(rgb_he) if haematoxylin is None else haematoxylin
    od = (haematoxylin_scale * amount)[..., None] * _unit(vector).astype(np.float32)
    return od_to_rgb(od, np.asarray(white, dtype=np.float64))


def _unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class MembraneStyle:
    """How synthetic membrane DAB is drawn around real nuclei (:func:`membrane_dab`).

    Per cell: an intensity class drawn with ``class_weights`` over (none, faint, moderate, strong),
    an OD uniform in that class's range (faint 0.1–0.2 is the 1+ look, strong up to ~1 OD the
    3+ look), the whole circumference with ``complete_probability`` or else one or two arcs
    covering ``partial_completeness`` of it, and, with ``haze_probability``, a cytoplasmic haze of
    ``haze_fraction`` of its membrane OD. Cells are the nuclei's Voronoi regions within a
    per-cell radius of ``cell_radius_um`` of the nucleus centre (never less than the nucleus
    and a ``rim_um`` rim); the membrane is ``width_um`` wide across a shared boundary (each
    cell stains its half) and blurred by ``blur_um`` (Gaussian σ).
    """

    class_weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    class_od: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.1, 0.2), (0.25, 0.5), (0.5, 1.0))
    complete_probability: float = 0.5
    partial_completeness: tuple[float, float] = (0.25, 0.9)
    haze_probability: float = 0.15
    haze_fraction: tuple[float, float] = (0.1, 0.4)
    cell_radius_um: tuple[float, float] = (8.0, 11.0)
    rim_um: float = 1.5
    width_um: tuple[float, float] = (1.0, 1.5)
    blur_um: float = 0.35


def cell_partition(nuclei: np.ndarray, mpp: float, radius_um: np.ndarray, rim_um: float) -> np.ndarray:
    """Cell labels (same ids as ``nuclei``, 0 = no cell): each nucleus's Voronoi region within
    ``radius_um[label]`` of its centre, and never less than the nucleus plus a ``rim_um`` rim."""
    n = int(nuclei.max())
    if n == 0:
        return np.zeros_like(nuclei)
    voronoi = expand_labels(nuclei, distance=int(np.ceil(radius_um.max() / mpp)) + 1)
    _, cy, cx = label_centroids(nuclei, n)
    rows, cols = np.indices(nuclei.shape)
    from_centre_um = np.hypot(rows - cy[voronoi], cols - cx[voronoi]) * mpp
    rim = expand_labels(nuclei, distance=max(1, int(round(rim_um / mpp)))) == voronoi
    return np.where((from_centre_um <= radius_um[voronoi]) | rim, voronoi, 0)


def membrane_dab(nuclei: np.ndarray, mpp: float, rng: np.random.Generator,
                 style: MembraneStyle = MembraneStyle()) -> np.ndarray:
    """Synthetic membrane DAB (H, W) float32 OD around the nucleus instances ``nuclei`` (int
    labels, 0 = background) at ``mpp`` µm/px: on the outlines of the cells between neighbouring
    nuclei, never inside a nucleus except where the nucleus itself reaches the cell outline.
    All randomness (per-cell class, intensity, arcs, haze, width) comes from ``rng``."""
    n = int(nuclei.max())
    if n == 0:
        return np.zeros(nuclei.shape, np.float32)
    radius = rng.uniform(*style.cell_radius_um, n + 1)
    cells = cell_partition(nuclei, mpp, radius, style.rim_um)
    level = _cell_intensity(rng, n, style)
    starts, lengths = _cell_arcs(rng, n, style)
    haze = np.where(rng.random(n + 1) < style.haze_probability, rng.uniform(*style.haze_fraction, n + 1), 0.0) * level

    # Distance of every pixel to the nearest cell outline and the cell that outline belongs to.
    inner = find_boundaries(cells, mode="inner") & (cells > 0)
    distance_px, (near_r, near_c) = ndi.distance_transform_edt(~inner, return_indices=True)
    owner = cells[near_r, near_c]
    # Outlines lie half a pixel outside the inner boundary pixels: inside a cell one pixel
    # further from them, outside (free edges) one pixel nearer.
    to_line_um = (distance_px + np.where(cells > 0, 0.5, -0.5)) * mpp
    on_line = (to_line_um <= rng.uniform(*style.width_um) / 2) & ((cells == 0) | (cells == owner))
    _, cy, cx = label_centroids(nuclei, n)
    rows, cols = np.indices(nuclei.shape)
    angle = np.arctan2(rows - cy[owner], cols - cx[owner])
    in_arc = (np.mod(angle[..., None] - starts[owner], 2 * np.pi) < lengths[owner]).any(axis=-1)
    dab = np.where(on_line & in_arc, level[owner], 0.0)
    dab = ndi.gaussian_filter(dab, style.blur_um / mpp)
    dab += np.where((cells > 0) & (nuclei == 0), haze[cells], 0.0)
    return dab.astype(np.float32)


def ihc_like(rgb_he: np.ndarray, nuclei: np.ndarray, mpp: float, rng: np.random.Generator, *,
             counterstain_od: float, membranes: MembraneStyle | None = None, white: Sequence[float] = IHC_GLASS_RGB,
             haematoxylin_vector: Sequence[float] = HAEMATOXYLIN_RGB_OD,
             dab_vector: Sequence[float] = DAB_RGB_OD) -> np.ndarray:
    """An annotated H&E image (nucleus instances ``nuclei``, ``mpp`` µm/px) as a HER2 IHC field at
    the same resolution: the nuclei's median haematoxylin brought to ``counterstain_od`` (the real
    cores: 0.12–0.14), membrane DAB drawn with ``membranes`` around the real nuclei (none when
    None), on glass of colour ``white``."""
    haem = haematoxylin_he(rgb_he)
    scale = counterstain_od / max(nuclear_haematoxylin(haem, nuclei), 1e-3)
    ihc = he_to_ihc(rgb_he, scale, vector=haematoxylin_vector, white=white, haematoxylin=haem)
    if membranes is None:
        return ihc
    return add_dab(ihc, membrane_dab(nuclei, mpp, rng, membranes), vector=dab_vector)


def _cell_intensity(rng: np.random.Generator, n: int, style: MembraneStyle) -> np.ndarray:
    """Membrane OD per label 0..n (label 0 unused): a class, then a value in its range."""
    weights = np.asarray(style.class_weights, dtype=np.float64)
    classes = rng.choice(len(weights), size=n + 1, p=weights / weights.sum())
    low, high = np.asarray(style.class_od, dtype=np.float64).T
    return rng.uniform(low[classes], high[classes])


def _cell_arcs(rng: np.random.Generator, n: int, style: MembraneStyle) -> tuple[np.ndarray, np.ndarray]:
    """Start angle and length (radians) of up to two stained arcs per label 0..n, shape (n + 1, 2).

    A complete cell has one arc of 2π; a partial one covers its completeness in one arc or in
    two opposite ones (basolateral/lateral staining)."""
    complete = rng.random(n + 1) < style.complete_probability
    share = np.where(complete, 1.0, rng.uniform(*style.partial_completeness, n + 1))
    split = np.where(complete | (rng.random(n + 1) < 0.5), 1.0, rng.uniform(0.3, 0.7, n + 1))
    first = rng.uniform(0, 2 * np.pi, n + 1)
    starts = np.column_stack([first, first + np.pi])
    lengths = 2 * np.pi * share[:, None] * np.column_stack([split, 1.0 - split])
    return starts, lengths
