"""Where the tumour shapes of a synthetic slide go: outline harmonics, the smooth direction field
that stroma fibres, single files and trabecular cords follow, and the placement of non-overlapping
shapes, largest first, inside the tissue (:func:`place_shapes`).

Random numbers are drawn in a fixed order from the layout's generator (see
:mod:`her2slide.synth.draw_layout`), and a knob that is off draws none, so existing layouts stay
unchanged.
"""

from __future__ import annotations

import numpy as np

from .layout import CORD_FIELDS, KINDS, STRIP_KINDS, Blobs, LayoutParams, Range


def blob_shape(rng: np.random.Generator, r0: float, rough: float, n_harm: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic amplitudes/phases of one outline; ``rough`` bounds Σ|a_k| so r(θ) stays positive."""
    amp = rng.uniform(0.3, 1.0, n_harm) / np.arange(2, 2 + n_harm)
    amp *= rough / amp.sum()
    return amp, rng.uniform(0, 2 * np.pi, n_harm)


Field4 = tuple[float, float, float, float]  # f1, f2, φ1, φ2 of a smooth direction field


def draw_field(rng: np.random.Generator) -> Field4:
    """A smooth direction field over the slide (wavelengths 120-250 µm): stroma fibres and cords follow it."""
    f1, f2, p1, p2 = rng.uniform(1 / 250, 1 / 120, 2).tolist() + rng.uniform(0, 2 * np.pi, 2).tolist()
    return f1, f2, p1, p2


def field_angle(field: Field4, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    f1, f2, p1, p2 = field
    return np.pi * (0.6 * np.sin(x * f1 + p1) + 0.6 * np.cos(y * f2 + p2))


def _size_range(p: LayoutParams, kind: str) -> tuple[float, Range]:
    """(factor, range) of a shape's characteristic size: ``factor · U(range)`` is a blob's r0, or
    half a strip's centreline, or half a single cell's diameter (µm)."""
    halves = {"single_file": p.single_file_length_um, "discohesive": p.discohesive_cell_um}
    if kind in halves:
        return 0.5, halves[kind]
    return 1.0, {"nest": p.nest_radius_um, "sheet": p.sheet_radius_um, "gland": p.gland_radius_um,
                 "trabecular": p.trabecular_radius_um}[kind]


def _nominal_area(p: LayoutParams, kind: str, size: float) -> float:
    """Area (µm²) a shape of ``size`` is expected to cover, for the architecture shares."""
    if kind == "single_file":
        return 2 * size * float(np.mean(p.single_file_cell_um))
    return np.pi * size**2 * (1.0 if kind != "gland" else 0.5)


def _strip_discs(cx: np.ndarray, cy: np.ndarray, angle: np.ndarray, length: np.ndarray, bend: float,
                 half_width: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Discs covering strips (one row per candidate): centres along the centreline, one radius."""
    n = int(np.ceil(2 * length.max() / half_width)) + 1
    u = np.linspace(-1.0, 1.0, n)[None, :] * length[:, None]
    v = bend * u * u
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return cx[:, None] + u * ca - v * sa, cy[:, None] + u * sa + v * ca, 1.12 * half_width


_NO_CORDS = np.zeros(len(CORD_FIELDS))


def _draw_cords(rng: np.random.Generator, p: LayoutParams, field: Field4, cx: float, cy: float) -> np.ndarray:
    """Cord pattern of a trabecular blob: cords along the direction field, 1-3 cells wide, wavy,
    with septa that break every few tens of µm (see ``Blobs._cord_distance``)."""
    across = int(rng.integers(p.trabecular_cells_across[0], p.trabecular_cells_across[1] + 1))
    spacing, gap = rng.uniform(*p.cell_spacing_um), rng.uniform(*p.trabecular_gap_um)
    angle = float(field_angle(field, np.array(cx), np.array(cy))) + rng.normal(0, p.strip_alignment_sd)
    wave_len = rng.uniform(15.0, 40.0)
    values = dict(angle=angle + np.pi / 2, period=across * spacing + gap, gap=gap, wave=rng.uniform(0, 0.3) * wave_len,
                  wave_len=wave_len, bridge_len=rng.uniform(8.0, 20.0), phase1=rng.uniform(0, 2 * np.pi),
                  phase2=rng.uniform(0, 2 * np.pi), across=across)
    return np.array([values[f] for f in CORD_FIELDS], np.float64)


def place_shapes(rng: np.random.Generator, p: LayoutParams, tissue: Blobs) -> tuple[Blobs, Field4 | None]:
    """Non-overlapping tumour shapes inside the tissue (random sequential placement, largest
    first, which packs far denser than random order); each kind gets its share of the tumour
    area target, shapes that find no room shrink, then the gaps are filled with small shapes of
    the filler kind. Strips and trabecular cords follow a smooth direction field (returned; None
    without them). Shapes are kept apart as sets of discs: one per blob, a row along each strip."""
    weights = {k: float(p.architecture.get(k, 0.0)) for k in KINDS}
    if sum(weights.values()) <= 0:
        raise ValueError(f"architecture needs a positive share for one of {KINDS}, got {p.architecture}")
    tissue_area = float(tissue.area()[0])
    total = p.tumour_fraction * tissue_area
    wanted: list[tuple[float, str]] = []  # (size, kind)
    for kind in KINDS:
        area, target = 0.0, total * weights[kind] / sum(weights.values())
        factor, sizes = _size_range(p, kind)
        while area < target:
            size = factor * rng.uniform(*sizes)
            wanted.append((size, kind))
            area += _nominal_area(p, kind, size)
    wanted.sort(key=lambda t: -t[0])
    if p.filler:
        factor, sizes = _size_range(p, p.filler)
        wanted += [(rng.uniform(0.8, 1.0) * factor * sizes[0], p.filler) for _ in range(400)]

    fields = ("cx", "cy", "r0", "amp", "phase", "thickness", "kind", "half_length", "angle", "bend", "cords")
    placed: dict[str, list] = {f: [] for f in fields}
    px, py, pr = np.zeros(0), np.zeros(0), np.zeros(0)  # discs of the placed shapes
    tcx, tcy = float(tissue.cx[0]), float(tissue.cy[0])
    field: Field4 | None = None
    area, misses = 0.0, 0
    for size_wanted, kind in wanted:
        if area >= total:
            break
        strip = kind in STRIP_KINDS
        gap = p.kind_gap_um.get(kind, p.shape_gap_um)
        rough = rng.uniform(0.08, 0.22) if kind != "gland" else rng.uniform(0.05, 0.15)
        # 60 candidate positions at once, in three rounds of shrinking size; the first that fits wins
        size = size_wanted * 0.85 ** (np.arange(60) // 20)
        if strip or kind == "trabecular":
            field = field or draw_field(rng)
        if strip:
            half_width = 0.5 * rng.uniform(*p.single_file_cell_um)
            bend = rng.uniform(-1, 1) * 2 * p.strip_bend / size_wanted
            rout = size + abs(bend) * size**2 + half_width * (1 + rough)
        else:
            rout = size * (1 + rough)
        ang = rng.uniform(0, 2 * np.pi, 60)
        room = tissue.radius(0, ang) * 0.95 - rout - 0.5 * gap
        dist = np.sqrt(rng.uniform(0, 1, 60)) * np.maximum(room, 0)
        cx, cy = tcx + dist * np.cos(ang), tcy + dist * np.sin(ang)
        if strip:
            direction = field_angle(field, cx, cy) + rng.normal(0, p.strip_alignment_sd, 60)
        # placed discs within reach of a candidate's bounding circle (a blob is its bounding circle);
        # a strip candidate with discs near it is tested disc by disc against those
        near = np.hypot(px[None] - cx[:, None], py[None] - cy[:, None]) < pr[None] + rout[:, None] + gap
        ok = (room > 0) & ~near.any(1)
        test = np.flatnonzero((room > 0) & near.any(1))
        if strip and test.size:
            some = near[test].any(0)
            dx, dy, dr = _strip_discs(cx[test], cy[test], direction[test], size[test], bend, half_width * (1 + rough))
            d = np.hypot(px[some][None, None] - dx[..., None], py[some][None, None] - dy[..., None])
            ok[test] = np.all(d >= pr[some][None, None] + dr + gap, axis=(1, 2))
        if not ok.any():
            misses += 1
            if p.placement_patience is not None and misses >= p.placement_patience:
                break
            continue
        misses = 0
        j = int(np.argmax(ok))
        if strip:
            amp, phase = blob_shape(rng, half_width, rough)
            geometry = (cx[j], cy[j], half_width, amp, phase, 0.0, KINDS.index(kind), size[j], direction[j], bend,
                        _NO_CORDS)
            area += 4 * size[j] * half_width + np.pi * half_width**2
        else:
            amp, phase = blob_shape(rng, size[j], rough)
            thickness = min(rng.uniform(*p.gland_cell_height_um), 0.6 * size[j]) if kind == "gland" else 0.0
            cords = _draw_cords(rng, p, field, cx[j], cy[j]) if kind == "trabecular" else _NO_CORDS
            geometry = (cx[j], cy[j], size[j], amp, phase, thickness, KINDS.index(kind), 0.0, 0.0, 0.0, cords)
            r0 = size[j]
            cord_share = 1.0 - cords[2] / cords[1] if cords[1] > 0 else 1.0
            area += np.pi * (r0**2 - (r0 - thickness) ** 2) if thickness else np.pi * r0**2 * cord_share
        for f, v in zip(fields, geometry):
            placed[f].append(v)
        if strip:
            dx, dy, dr = _strip_discs(cx[j:j + 1], cy[j:j + 1], direction[j:j + 1], size[j:j + 1], bend,
                                      half_width * (1 + rough))
            dx, dy, dr = dx[0], dy[0], np.full(dx.shape[1], dr)
        else:
            dx, dy, dr = cx[j:j + 1], cy[j:j + 1], rout[j:j + 1]
        px, py, pr = np.concatenate([px, dx]), np.concatenate([py, dy]), np.concatenate([pr, dr])
    if not placed["cx"]:
        raise ValueError("no tumour shape fits in the tissue: make the slide larger or the shapes smaller")
    return Blobs(*(np.array(placed[f], dtype=np.int8 if f == "kind" else np.float64) for f in fields)), field
