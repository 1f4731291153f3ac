"""Tissue architecture of a synthetic slide: tissue outline, tumour shapes, cells, nuclei.

Everything here is geometry in micrometres, drawn once per slide from a seed. It is small (a few
numbers per shape and per cell) whatever the slide size; :mod:`her2slide.synth.render` evaluates
it pixel by pixel, block by block, so no level-0 image is ever needed to build a slide.

Tumour cells are the Voronoi cells of jittered seeds, restricted to their own tumour shape and to
a maximum radius around the seed (so cells at a shape's edge stay cell-sized). Gland cells sit on a
ring around a lumen, one layer thick, with basal nuclei. Trabecular tumour is a blob cut into
wavy parallel cords 1-3 cells wide by thin stroma septa that break here and there (anastomoses);
single files are *strips*, bands one cell wide along a gently bent centreline laid along a smooth
direction field, as real files follow the stroma; discohesive tumour is single cells, each its own
small shape, scattered in the stroma.

Every new architecture and style knob defaults to off and draws its random numbers only when it is
used, so the layouts of existing specs (the evaluation suite, the v1 training tiles) are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["KINDS", "STRIP_KINDS", "Blobs", "Cells", "Nuclei", "Layout", "LayoutParams", "make_layout"]

#: Tumour architectures; the index is the ``kind`` code stored per shape and per cell.
KINDS: tuple[str, ...] = ("nest", "sheet", "gland", "trabecular", "single_file", "discohesive")
#: Architectures drawn as strips (bands along a centreline) rather than star-shaped blobs.
STRIP_KINDS: tuple[str, ...] = ("single_file",)
#: Columns of ``Blobs.cords``: the cord pattern of a trabecular blob (see ``Blobs._cord_distance``).
CORD_FIELDS = ("angle", "period", "gap", "wave", "wave_len", "bridge_len", "phase1", "phase2", "across")
#: Non-tumour nucleus types (``Nuclei.kind``).
STROMA, LYMPHOCYTE = 1, 2

Range = tuple[float, float]


class LayoutParams(BaseModel):
    """Sizes (µm) and densities of the tissue; defaults calibrated on the oesophageal TMA cores."""

    model_config = ConfigDict(extra="forbid")

    architecture: dict[str, float] = Field(
        default_factory=lambda: {"nest": 0.4, "sheet": 0.3, "gland": 0.3},
        description="Share of tumour area per architecture (keys from KINDS).")
    tissue_fill: float = Field(0.86, gt=0.1, le=0.95,
                               description="Tissue diameter / slide side: glass stays around it.")
    tumour_fraction: float = Field(0.5, gt=0.05, le=0.8, description="Target tumour share of tissue area.")
    cell_spacing_um: Range = (11.5, 14.5)       # seed spacing in nests/sheets ~ cell diameter
    cell_wobble: float = 0.1                    # anisotropy of each cell's distance: curved, uneven walls
    gland_cell_width_um: Range = (9.0, 12.0)    # along the ring
    gland_cell_height_um: Range = (15.0, 21.0)  # epithelium thickness
    nest_radius_um: Range = (25.0, 70.0)
    sheet_radius_um: Range = (90.0, 170.0)
    gland_radius_um: Range = (35.0, 75.0)
    shape_gap_um: float = 10.0                  # stroma between tumour shapes
    nucleus_major_um: Range = (6.5, 9.0)
    nucleus_minor_um: Range = (4.0, 5.4)
    nucleus_h_od: Range = (0.15, 0.23)
    stroma_nuclei_per_mm2: float = 1400.0
    stroma_nucleus_major_um: Range = (9.0, 16.0)
    stroma_nucleus_minor_um: Range = (2.4, 3.6)
    stroma_h_od: Range = (0.2, 0.3)
    lymphocytes_per_mm2: float = 500.0
    lymphocyte_diameter_um: Range = (5.0, 6.5)
    lymphocyte_h_od: Range = (0.32, 0.45)
    lymphocyte_aggregate_share: float = Field(1 / 3, ge=0.0, le=1.0)  # share of lymphocytes in aggregates
    lymphocyte_aggregates: tuple[int, int] = (1, 3)  # number of aggregates (inclusive range)
    lymphocyte_aggregate_sd_um: float = 25.0         # spread of an aggregate
    lymphocyte_spacing_um: float = 0.0  # lymphocytes closer than this are thinned out (0: overlap freely)
    # architectures added for the style families (off unless ``architecture`` names them)
    trabecular_radius_um: Range = (50.0, 120.0)      # a trabecular region (a blob cut into cords)
    trabecular_cells_across: tuple[int, int] = (1, 3)  # cord width in cells
    trabecular_gap_um: Range = (3.0, 8.0)            # stroma septum between cords
    single_file_length_um: Range = (50.0, 140.0)
    single_file_cell_um: Range = (7.0, 10.0)         # a file's width, and its cell spacing along it
    discohesive_cell_um: Range = (9.0, 13.0)         # diameter of a scattered single tumour cell
    strip_bend: float = 0.25                         # largest sagitta of a file / its length
    strip_alignment_sd: float = 0.3                  # radians of a file's (or cords') direction around the field
    kind_gap_um: dict[str, float] = Field(default_factory=dict,
                                          description="Stroma around shapes of a kind (default shape_gap_um).")
    filler: str | None = Field("nest", description="Kind of the small shapes that fill the gaps (None: none).")
    placement_patience: int | None = Field(None, ge=1, description="Stop placing shapes after this many in a "
                                           "row found no room (None: try every one).")
    nucleus_irregularity: float = Field(0.0, ge=0.0, le=0.35,
                                        description="Largest cos 2θ / cos 3θ amplitude of tumour nucleus outlines.")

    @model_validator(mode="after")
    def _known_kinds(self) -> "LayoutParams":
        named = set(self.architecture) | set(self.kind_gap_um) | ({self.filler} if self.filler else set())
        if named - set(KINDS):
            raise ValueError(f"architecture kinds must be among {KINDS}, got {sorted(named - set(KINDS))}")
        return self


@dataclass(frozen=True)
class Blobs:
    """Star-shaped outlines ``r(θ) = r0·(1 + Σ_k a_k cos(kθ + φ_k))``, k = 2, 3, …; hollow when
    ``thickness > 0`` (a gland wall from ``r(θ) - thickness`` to ``r(θ)``).

    Shapes with ``half_length > 0`` are strips instead: a band of half-width
    ``r0·(1 + Σ_k a_k cos(kπu/L + φ_k))`` (k = 1, 2, …) around the centreline ``v = bend·u²``,
    ``|u| ≤ L``, in coordinates (u, v) rotated by ``angle``, with round ends. Blobs with a cord
    pattern (``cords[i, 1] > 0``) keep only their cords (trabecular tumour)."""

    cx: np.ndarray
    cy: np.ndarray
    r0: np.ndarray
    amp: np.ndarray    # (n, K)
    phase: np.ndarray  # (n, K)
    thickness: np.ndarray
    kind: np.ndarray   # int8 index into KINDS (-1: tissue outline)
    half_length: np.ndarray | None = None  # strips: half the centreline length (0: a blob)
    angle: np.ndarray | None = None        # strips: direction of the centreline
    bend: np.ndarray | None = None         # strips: curvature term of the centreline (1/µm)
    cords: np.ndarray | None = None        # (n, len(CORD_FIELDS)) cord pattern (period 0: none)

    def is_strip(self, i: int) -> bool:
        return self.half_length is not None and bool(self.half_length[i] > 0)

    def has_cords(self, i: int) -> bool:
        return self.cords is not None and bool(self.cords[i, 1] > 0)

    def __len__(self) -> int:
        return len(self.cx)

    def radius(self, i: int | np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Outer radius of shape(s) ``i`` at angle(s) ``theta`` (broadcast)."""
        theta = np.asarray(theta)
        return self._radius_cs(i, np.cos(theta), np.sin(theta))

    def _radius_cs(self, i: int | np.ndarray, c1: np.ndarray, s1: np.ndarray) -> np.ndarray:
        """Radius from cos θ and sin θ: cos kθ, sin kθ by the angle-addition recurrence (no trig
        per harmonic, which dominates the cost of testing millions of pixels)."""
        amp, ph = np.asarray(self.amp[i]), np.asarray(self.phase[i])
        mod = np.zeros(np.broadcast_shapes(c1.shape, s1.shape, amp.shape[:-1]))
        ck, sk = c1, s1
        for k in range(amp.shape[-1] + 1):
            if k >= 1:  # harmonic k + 1 (k = 1 -> 2θ)
                mod = mod + amp[..., k - 1] * (ck * np.cos(ph[..., k - 1]) - sk * np.sin(ph[..., k - 1]))
            if k < amp.shape[-1]:
                ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        return np.asarray(self.r0[i]) * (1.0 + mod)

    def rmax(self) -> np.ndarray:
        r = self.r0 * (1.0 + np.abs(self.amp).sum(1))
        if self.half_length is None:
            return r
        return r + self.half_length + np.abs(self.bend) * self.half_length**2

    def rmin(self) -> np.ndarray:
        return self.r0 * (1.0 - np.abs(self.amp).sum(1))

    def polar(self, i: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ρ - r_outer(θ), ρ - r_inner(θ)) of points relative to shape ``i``: inside the wall when
        the first is < 0 and (for hollow shapes) the second is > 0. For a strip, both are the
        distance from the centreline minus the local half-width."""
        if self.is_strip(i):
            d = self._strip_distance(i, x, y)
            return d, d
        dx, dy = x - self.cx[i], y - self.cy[i]
        rho = np.hypot(dx, dy)
        inv = 1.0 / np.maximum(rho, 1e-12)
        r = self._radius_cs(i, np.where(rho > 0, dx * inv, 1.0), dy * inv)
        if self.has_cords(i):  # solid: the cords cut out of the blob
            d = np.maximum(rho - r, self._cord_distance(i, x, y))
            return d, d
        return rho - r, rho - (r - self.thickness[i])

    def cord_coordinates(self, i: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s, v): s across the cords (cord m spans ``m·period + gap/2 .. (m + 1)·period - gap/2``),
        v along them; the cords wave: ``s = u + wave·sin(v / wave_len + phase1)``."""
        angle, _, _, wave, wave_len, _, phase1, _, _ = self.cords[i]
        dx, dy = x - self.cx[i], y - self.cy[i]
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        return u + wave * np.sin(v / wave_len + phase1), v

    def _cord_distance(self, i: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance-like value into the nearest septum (> 0 in a septum, < 0 in a cord), µm. A
        septum's width varies along it and drops to nothing in places, where its two cords join;
        the phase shifts from septum to septum so the joins do not line up."""
        _, period, gap, _, _, bridge_len, _, phase2, _ = self.cords[i]
        s, v = self.cord_coordinates(i, x, y)
        septum = np.floor(s / period + 0.5)  # nearest septum, centred at septum·period
        half_gap = 0.5 * gap * np.clip(0.7 + 0.75 * np.sin(v / bridge_len + phase2 + 2.4 * septum), 0.0, None)
        return half_gap - np.abs(s - septum * period)

    def _strip_distance(self, i: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance-like value of points to strip ``i``'s band (< 0 inside), in µm."""
        dx, dy = x - self.cx[i], y - self.cy[i]
        ca, sa = np.cos(self.angle[i]), np.sin(self.angle[i])
        length = self.half_length[i]
        u = dx * ca + dy * sa
        uc = np.clip(u, -length, length)
        v = -dx * sa + dy * ca - self.bend[i] * uc * uc
        k = np.arange(1, self.amp.shape[1] + 1)
        half_width = self.r0[i] * (1.0 + np.sum(self.amp[i] * np.cos(k * np.pi * uc[..., None] / length
                                                                     + self.phase[i]), axis=-1))
        return np.hypot(u - uc, v) - half_width

    def area(self) -> np.ndarray:
        """Approximate wall area (µm²)."""
        outer = np.pi * self.r0**2 * (1.0 + 0.5 * (self.amp**2).sum(1))
        r_in = np.maximum(self.r0 - self.thickness, 0.0)
        inner = np.where(self.thickness > 0, np.pi * r_in**2 * (1.0 + 0.5 * (self.amp**2).sum(1)), 0.0)
        if self.half_length is None:
            return outer - inner
        return np.where(self.half_length > 0, 4 * self.half_length * self.r0 + np.pi * self.r0**2, outer - inner)


@dataclass(frozen=True)
class Cells:
    """Tumour cells: Voronoi seeds and their nuclei (µm, radians)."""

    x: np.ndarray
    y: np.ndarray
    shape: np.ndarray      # index into Layout.shapes
    kind: np.ndarray       # int8 index into KINDS
    rmax: np.ndarray       # max distance of a cell pixel from its seed
    apical: np.ndarray     # direction to the gland lumen (NaN outside glands)
    nx: np.ndarray         # nucleus centre
    ny: np.ndarray
    na: np.ndarray         # nucleus semi-axes
    nb: np.ndarray
    nangle: np.ndarray
    nh: np.ndarray         # nucleus haematoxylin OD
    wobble_amp: np.ndarray    # (n, 2) cos 2θ, cos 3θ weights of the cell's distance: curved walls
    wobble_phase: np.ndarray  # (n, 2)
    nucleus_wobble_amp: np.ndarray    # (n, 2) cos 2θ, cos 3θ terms of the nucleus outline (0: an ellipse)
    nucleus_wobble_phase: np.ndarray  # (n, 2)

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Nuclei:
    """Non-tumour nuclei (stroma spindles and lymphocytes), drawn only outside tumour cells."""

    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    angle: np.ndarray
    h: np.ndarray
    kind: np.ndarray  # STROMA or LYMPHOCYTE

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Layout:
    width_um: float
    height_um: float
    tissue: Blobs
    shapes: Blobs
    cells: Cells
    nuclei: Nuclei
    params: LayoutParams


# ---------------------------------------------------------------- drawing


def _blob(rng: np.random.Generator, r0: float, rough: float, n_harm: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic amplitudes/phases of one outline; ``rough`` bounds Σ|a_k| so r(θ) stays positive."""
    amp = rng.uniform(0.3, 1.0, n_harm) / np.arange(2, 2 + n_harm)
    amp *= rough / amp.sum()
    return amp, rng.uniform(0, 2 * np.pi, n_harm)


Field4 = tuple[float, float, float, float]  # f1, f2, φ1, φ2 of a smooth direction field


def _draw_field(rng: np.random.Generator) -> Field4:
    """A smooth direction field over the slide (wavelengths 120-250 µm): stroma fibres and cords follow it."""
    f1, f2, p1, p2 = rng.uniform(1 / 250, 1 / 120, 2).tolist() + rng.uniform(0, 2 * np.pi, 2).tolist()
    return f1, f2, p1, p2


def _field_angle(field: Field4, x: np.ndarray, y: np.ndarray) -> np.ndarray:
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
    angle = float(_field_angle(field, np.array(cx), np.array(cy))) + rng.normal(0, p.strip_alignment_sd)
    wave_len = rng.uniform(15.0, 40.0)
    values = dict(angle=angle + np.pi / 2, period=across * spacing + gap, gap=gap, wave=rng.uniform(0, 0.3) * wave_len,
                  wave_len=wave_len, bridge_len=rng.uniform(8.0, 20.0), phase1=rng.uniform(0, 2 * np.pi),
                  phase2=rng.uniform(0, 2 * np.pi), across=across)
    return np.array([values[f] for f in CORD_FIELDS], np.float64)


def _place_shapes(rng: np.random.Generator, p: LayoutParams, tissue: Blobs) -> tuple[Blobs, Field4 | None]:
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
            field = field or _draw_field(rng)
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
            direction = _field_angle(field, cx, cy) + rng.normal(0, p.strip_alignment_sd, 60)
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
            amp, phase = _blob(rng, half_width, rough)
            geometry = (cx[j], cy[j], half_width, amp, phase, 0.0, KINDS.index(kind), size[j], direction[j], bend,
                        _NO_CORDS)
            area += 4 * size[j] * half_width + np.pi * half_width**2
        else:
            amp, phase = _blob(rng, size[j], rough)
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


def _hex_seeds(rng: np.random.Generator, shapes: Blobs, i: int, spacing: float) -> np.ndarray:
    """Jittered hexagonal seeds inside solid shape ``i``, inset so edge cells keep some size."""
    rmax = float(shapes.rmax()[i])
    rot = rng.uniform(0, np.pi / 3)
    n = int(np.ceil(rmax / spacing)) + 1
    a, b = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    u = (a + 0.5 * (b % 2)).ravel() * spacing
    v = b.ravel() * spacing * np.sqrt(3) / 2
    x = u * np.cos(rot) - v * np.sin(rot)
    y = u * np.sin(rot) + v * np.cos(rot)
    r = 0.22 * spacing * np.sqrt(rng.uniform(0, 1, x.size))
    t = rng.uniform(0, 2 * np.pi, x.size)
    x, y = x + r * np.cos(t) + shapes.cx[i], y + r * np.sin(t) + shapes.cy[i]
    outer, _ = shapes.polar(i, x, y)
    keep = outer < -0.3 * spacing
    return np.stack([x[keep], y[keep]], 1)


CellDraw = tuple[np.ndarray, ...]  # x, y, rmax, apical, nucleus major, minor, angle, offset (n, 2)


def _row_cells(rng: np.random.Generator, p: LayoutParams, shapes: Blobs, i: int, x: np.ndarray, y: np.ndarray,
               spacing: float, reach: float, along: np.ndarray | None) -> CellDraw:
    """Cells from seeds laid in rows (files, cords): seeds that fall in the shape with room to
    spare are kept; nuclei lie along the row where ``along`` gives its direction, else anyhow."""
    keep = shapes.polar(i, x, y)[0] < -0.25 * spacing
    x, y = x[keep], y[keep]
    n = len(x)
    major = rng.uniform(*p.nucleus_major_um, n)
    minor = np.minimum(rng.uniform(*p.nucleus_minor_um, n), 0.8 * spacing)
    angle = along[keep] + rng.normal(0, 0.2, n) if along is not None else rng.uniform(0, np.pi, n)
    t = rng.uniform(0, 2 * np.pi, n)
    off = np.stack([np.cos(t), np.sin(t)], 1) * rng.uniform(0, 0.8, (n, 1))
    return x, y, np.full(n, reach), np.full(n, np.nan), major, minor, angle, off


def _file_cells(rng: np.random.Generator, p: LayoutParams, shapes: Blobs, i: int) -> CellDraw:
    """A single file: one row of seeds along the bent centreline from end to end (so the round
    ends are covered), nuclei along the file."""
    length, spacing = float(shapes.half_length[i]), 2 * float(shapes.r0[i])
    step = spacing * rng.uniform(0.9, 1.15)
    u = np.linspace(-length, length, max(2, int(round(2 * length / step)) + 1))
    u = u + rng.uniform(-0.12, 0.12, len(u)) * step
    v = rng.uniform(-0.08, 0.08, len(u)) * spacing + shapes.bend[i] * u * u
    ca, sa = np.cos(shapes.angle[i]), np.sin(shapes.angle[i])
    x, y = shapes.cx[i] + u * ca - v * sa, shapes.cy[i] + u * sa + v * ca
    tangent = shapes.angle[i] + np.arctan(2 * shapes.bend[i] * u)
    return _row_cells(rng, p, shapes, i, x, y, spacing, 1.5 * max(step, spacing), tangent)


def _cord_cells(rng: np.random.Generator, p: LayoutParams, shapes: Blobs, i: int) -> CellDraw:
    """A trabecular blob: ``across`` rows of seeds along every cord (brick-offset), laid in the
    cords' own coordinates and mapped back, so each cord is filled across its width."""
    angle, period, gap, wave, wave_len, _, phase1, _, across = shapes.cords[i]
    rows = int(across)
    spacing = (period - gap) / rows
    step = spacing * rng.uniform(0.9, 1.1)
    reach = float(shapes.rmax()[i]) + wave
    cords = np.arange(np.floor(-reach / period) - 1, np.ceil(reach / period) + 1)
    row_s = (cords[:, None] * period + gap / 2 + (np.arange(rows)[None, :] + 0.5) * spacing).ravel()
    row_v = np.arange(-reach, reach + step, step)
    brick = np.tile(np.arange(rows) % 2, len(cords)) * step / 2
    s_ = np.repeat(row_s, len(row_v))
    v = (row_v[None, :] + brick[:, None]).ravel()
    n = len(v)
    s_ = s_ + rng.uniform(-0.08, 0.08, n) * spacing
    v = v + rng.uniform(-0.12, 0.12, n) * step
    u = s_ - wave * np.sin(v / wave_len + phase1)
    ca, sa = np.cos(angle), np.sin(angle)
    x, y = shapes.cx[i] + u * ca - v * sa, shapes.cy[i] + u * sa + v * ca
    return _row_cells(rng, p, shapes, i, x, y, spacing, 1.3 * max(step, spacing), None)


def _single_cell(rng: np.random.Generator, p: LayoutParams, shapes: Blobs, i: int) -> CellDraw:
    """A discohesive tumour cell: its shape is the cell; the nucleus sits off-centre and fits in it."""
    r = float(shapes.r0[i])
    major = min(rng.uniform(*p.nucleus_major_um), 1.6 * r)
    minor = min(rng.uniform(*p.nucleus_minor_um), 1.3 * r, major)
    t = rng.uniform(0, 2 * np.pi)
    off = np.array([[np.cos(t), np.sin(t)]]) * rng.uniform(0, 0.3) * r
    one = np.ones(1)
    return (shapes.cx[i] * one, shapes.cy[i] * one, 1.05 * shapes.rmax()[i] * one, np.full(1, np.nan),
            major * one, minor * one, rng.uniform(0, np.pi) * one, off)


def _cells(rng: np.random.Generator, p: LayoutParams, shapes: Blobs) -> Cells:
    xs, ys, sid, rmax, apical, major, minor, nang, noff = [], [], [], [], [], [], [], [], []
    for i in range(len(shapes)):
        special = _file_cells if shapes.is_strip(i) else _cord_cells if shapes.has_cords(i) else \
            _single_cell if shapes.kind[i] == KINDS.index("discohesive") else None
        if special is not None:
            x, y, rm, ap, mj, mn, ang, off = special(rng, p, shapes, i)
            n = len(x)
        elif shapes.kind[i] == KINDS.index("gland"):
            t = float(shapes.thickness[i])
            width = rng.uniform(*p.gland_cell_width_um)
            r_mid = float(shapes.r0[i]) - t / 2
            n = max(6, int(round(2 * np.pi * r_mid / width)))
            theta = (np.arange(n) + rng.uniform(-0.15, 0.15, n)) * 2 * np.pi / n + rng.uniform(0, 2 * np.pi)
            r = shapes.radius(i, theta) - t / 2 + rng.uniform(-0.6, 0.6, n)
            x, y = shapes.cx[i] + r * np.cos(theta), shapes.cy[i] + r * np.sin(theta)
            outer_w = width * float(shapes.rmax()[i]) / max(r_mid, 1.0)
            rm = np.full(n, 1.05 * np.hypot(t / 2 + 0.6, outer_w))
            ap = np.mod(theta + np.pi, 2 * np.pi)                          # towards the lumen
            mj = rng.uniform(*p.nucleus_major_um, n)
            mn = np.minimum(rng.uniform(*p.nucleus_minor_um, n), 0.8 * width)
            ang = theta + rng.normal(0, 0.12, n)                            # columnar: radial nuclei
            off = np.stack([np.cos(theta), np.sin(theta)], 1) * 0.16 * t    # basal nuclei
        else:
            spacing = rng.uniform(*p.cell_spacing_um)
            seeds = _hex_seeds(rng, shapes, i, spacing)
            n = len(seeds)
            if n == 0:
                continue
            x, y = seeds[:, 0], seeds[:, 1]
            rm = np.full(n, 0.8 * spacing)
            ap = np.full(n, np.nan)
            mj = rng.uniform(*p.nucleus_major_um, n)
            mn = rng.uniform(*p.nucleus_minor_um, n)
            ang = rng.uniform(0, np.pi, n)
            t = rng.uniform(0, 2 * np.pi, n)
            off = np.stack([np.cos(t), np.sin(t)], 1) * rng.uniform(0, 1.0, (n, 1))
        xs.append(x), ys.append(y), sid.append(np.full(n, i)), rmax.append(rm), apical.append(ap)
        major.append(mj), minor.append(mn), nang.append(ang), noff.append(off)
    cat = np.concatenate
    x, y, s = cat(xs), cat(ys), cat(sid)
    off = cat(noff)
    n = len(x)
    nh = rng.uniform(*p.nucleus_h_od, n)
    wobble_amp, wobble_phase = rng.uniform(0.0, p.cell_wobble, (n, 2)), rng.uniform(0, 2 * np.pi, (n, 2))
    if p.nucleus_irregularity > 0:  # drawn only when asked: layouts without it keep their random stream
        nuc_amp, nuc_phase = rng.uniform(0.0, p.nucleus_irregularity, (n, 2)), rng.uniform(0, 2 * np.pi, (n, 2))
    else:
        nuc_amp, nuc_phase = np.zeros((n, 2)), np.zeros((n, 2))
    return Cells(x=x, y=y, shape=s, kind=shapes.kind[s], rmax=cat(rmax), apical=cat(apical),
                 nx=x + off[:, 0], ny=y + off[:, 1], na=cat(major) / 2, nb=np.minimum(cat(minor), cat(major)) / 2,
                 nangle=cat(nang), nh=nh, wobble_amp=wobble_amp, wobble_phase=wobble_phase,
                 nucleus_wobble_amp=nuc_amp, nucleus_wobble_phase=nuc_phase)


def _outside_shapes(shapes: Blobs, x: np.ndarray, y: np.ndarray, buffer: float) -> np.ndarray:
    """Points not inside any tumour shape's outline (lumens count as inside) by ``buffer`` µm."""
    free = np.ones(len(x), dtype=bool)
    for i in range(len(shapes)):
        near = np.hypot(x - shapes.cx[i], y - shapes.cy[i]) < shapes.rmax()[i] + buffer
        if near.any():
            outer, _ = shapes.polar(i, x[near], y[near])
            free[np.flatnonzero(near)[outer < buffer]] = False
    return free


def _thin(x: np.ndarray, y: np.ndarray, spacing: float) -> np.ndarray:
    """Mask keeping points in order, dropping each one closer than ``spacing`` to a kept one."""
    from scipy.spatial import cKDTree

    keep = np.ones(len(x), bool)
    pairs = cKDTree(np.stack([x, y], 1)).query_pairs(spacing, output_type="ndarray")
    for i, j in pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]:
        if keep[i]:
            keep[j] = False
    return keep


def _stroma_nuclei(rng: np.random.Generator, p: LayoutParams, tissue: Blobs, shapes: Blobs,
                   width: float, height: float, field: Field4 | None = None) -> Nuclei:
    """Spindle stromal nuclei following a smooth fibre direction field (the strips' field when
    there are strips, so cords and fibres run together), and lymphocytes, some in aggregates; all
    outside tumour shapes."""
    R = float(tissue.rmax()[0])
    x0, x1 = max(0.0, tissue.cx[0] - R), min(width, tissue.cx[0] + R)
    y0, y1 = max(0.0, tissue.cy[0] - R), min(height, tissue.cy[0] + R)
    box_mm2 = (x1 - x0) * (y1 - y0) * 1e-6

    def in_tissue(density_per_mm2: float) -> tuple[np.ndarray, np.ndarray]:
        """Poisson points in the tissue's box (clipped to the field), kept in stroma."""
        n = rng.poisson(density_per_mm2 * box_mm2)
        x, y = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
        outer, _ = tissue.polar(0, x, y)
        keep = (outer < -4.0) & _outside_shapes(shapes, x, y, 2.0)
        return x[keep], y[keep]

    sx, sy = in_tissue(p.stroma_nuclei_per_mm2)
    s_ang = _field_angle(field or _draw_field(rng), sx, sy) + rng.normal(0, 0.2, len(sx))
    s_a = rng.uniform(*p.stroma_nucleus_major_um, len(sx)) / 2
    s_b = rng.uniform(*p.stroma_nucleus_minor_um, len(sx)) / 2

    lx, ly = in_tissue(p.lymphocytes_per_mm2)
    # a share of them (default a third) gathered into aggregates around stromal points
    if len(lx) > 10 and len(sx) > 0:
        k = int(rng.integers(p.lymphocyte_aggregates[0], p.lymphocyte_aggregates[1] + 1))
        centre = rng.choice(len(sx), k)
        m = int(len(lx) * p.lymphocyte_aggregate_share + 1e-9)  # + 1e-9: n // 3 exactly for the default 1/3
        which = rng.integers(0, k, m)
        lx2 = sx[centre][which] + rng.normal(0, p.lymphocyte_aggregate_sd_um, m)
        ly2 = sy[centre][which] + rng.normal(0, p.lymphocyte_aggregate_sd_um, m)
        outer, _ = tissue.polar(0, lx2, ly2)
        ok = (outer < -4.0) & _outside_shapes(shapes, lx2, ly2, 2.0)
        lx = np.concatenate([lx[m:], lx2[ok]])
        ly = np.concatenate([ly[m:], ly2[ok]])
    if p.lymphocyte_spacing_um > 0 and len(lx) > 1:
        keep = _thin(lx, ly, p.lymphocyte_spacing_um)
        lx, ly = lx[keep], ly[keep]
    l_a = rng.uniform(*p.lymphocyte_diameter_um, len(lx)) / 2
    l_b = l_a * rng.uniform(0.85, 1.0, len(lx))
    cat = np.concatenate
    return Nuclei(x=cat([sx, lx]), y=cat([sy, ly]), a=cat([s_a, l_a]), b=cat([s_b, l_b]),
                  angle=cat([s_ang, rng.uniform(0, np.pi, len(lx))]),
                  h=cat([rng.uniform(*p.stroma_h_od, len(sx)), rng.uniform(*p.lymphocyte_h_od, len(lx))]),
                  kind=cat([np.full(len(sx), STROMA, np.int8), np.full(len(lx), LYMPHOCYTE, np.int8)]))


def make_layout(width_um: float, height_um: float, seed: int | np.random.SeedSequence,
                params: LayoutParams | None = None, *, tissue_everywhere: bool = False) -> Layout:
    """Draw the full geometry of a ``width_um`` × ``height_um`` slide (deterministic for ``seed``).

    ``tissue_everywhere`` makes the tissue cover the whole field (training tiles, no glass).
    """
    p = params or LayoutParams()
    rng = np.random.default_rng(seed)
    half = 0.5 * min(width_um, height_um)
    if tissue_everywhere:
        r0 = 2.0 * np.hypot(width_um, height_um)
        amp, phase = np.zeros(4), np.zeros(4)
        cx, cy = width_um / 2, height_um / 2
    else:
        rough = rng.uniform(0.04, 0.09)
        r0 = half * p.tissue_fill / (1 + rough)
        amp, phase = _blob(rng, r0, rough)
        cx = width_um / 2 + rng.uniform(-1, 1) * (half - r0 * (1 + rough))
        cy = height_um / 2 + rng.uniform(-1, 1) * (half - r0 * (1 + rough))
    tissue = Blobs(np.array([cx]), np.array([cy]), np.array([r0]), amp[None], phase[None],
                   np.zeros(1), np.array([-1], np.int8))
    if tissue_everywhere:
        # shapes may run off the field: place them in a disc covering it
        place = Blobs(tissue.cx, tissue.cy, np.array([np.hypot(width_um, height_um) / 2 + 60.0]),
                      tissue.amp, tissue.phase, tissue.thickness, tissue.kind)
        shapes, field = _place_shapes(rng, p, place)
    else:
        shapes, field = _place_shapes(rng, p, tissue)
    cells = _cells(rng, p, shapes)
    nuclei = _stroma_nuclei(rng, p, tissue, shapes, width_um, height_um, field)
    return Layout(float(width_um), float(height_um), tissue, shapes, cells, nuclei, p)
