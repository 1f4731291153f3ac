"""Tissue architecture of a synthetic slide: tissue outline, tumour nests/sheets/glands, cells, nuclei.

Everything here is geometry in micrometres, drawn once per slide from a seed. It is small (a few
numbers per shape and per cell) whatever the slide size; :mod:`her2slide.synth.render` evaluates
it pixel by pixel, block by block, so no level-0 image is ever needed to build a slide.

Tumour cells are the Voronoi cells of jittered seeds, restricted to their own tumour shape and to
a maximum radius around the seed (so cells at a shape's edge stay cell-sized). Gland cells sit on a
ring around a lumen, one layer thick, with basal nuclei.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["KINDS", "Blobs", "Cells", "Nuclei", "Layout", "LayoutParams", "make_layout"]

#: Tumour architectures; the index is the ``kind`` code stored per shape and per cell.
KINDS: tuple[str, str, str] = ("nest", "sheet", "gland")
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


@dataclass(frozen=True)
class Blobs:
    """Star-shaped outlines ``r(θ) = r0·(1 + Σ_k a_k cos(kθ + φ_k))``, k = 2, 3, …; hollow when
    ``thickness > 0`` (a gland wall from ``r(θ) - thickness`` to ``r(θ)``)."""

    cx: np.ndarray
    cy: np.ndarray
    r0: np.ndarray
    amp: np.ndarray    # (n, K)
    phase: np.ndarray  # (n, K)
    thickness: np.ndarray
    kind: np.ndarray   # int8 index into KINDS (-1: tissue outline)

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
        return self.r0 * (1.0 + np.abs(self.amp).sum(1))

    def rmin(self) -> np.ndarray:
        return self.r0 * (1.0 - np.abs(self.amp).sum(1))

    def polar(self, i: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ρ - r_outer(θ), ρ - r_inner(θ)) of points relative to shape ``i``: inside the wall when
        the first is < 0 and (for hollow shapes) the second is > 0."""
        dx, dy = x - self.cx[i], y - self.cy[i]
        rho = np.hypot(dx, dy)
        inv = 1.0 / np.maximum(rho, 1e-12)
        r = self._radius_cs(i, np.where(rho > 0, dx * inv, 1.0), dy * inv)
        return rho - r, rho - (r - self.thickness[i])

    def area(self) -> np.ndarray:
        """Approximate wall area (µm²)."""
        outer = np.pi * self.r0**2 * (1.0 + 0.5 * (self.amp**2).sum(1))
        r_in = np.maximum(self.r0 - self.thickness, 0.0)
        inner = np.where(self.thickness > 0, np.pi * r_in**2 * (1.0 + 0.5 * (self.amp**2).sum(1)), 0.0)
        return outer - inner


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


def _place_shapes(rng: np.random.Generator, p: LayoutParams, tissue: Blobs) -> Blobs:
    """Non-overlapping tumour shapes inside the tissue (random sequential placement, largest
    first, which packs far denser than random order); each kind gets its share of the tumour
    area target, shapes that find no room shrink, then the gaps are filled with small nests."""
    weights = {k: float(p.architecture.get(k, 0.0)) for k in KINDS}
    unknown = set(p.architecture) - set(KINDS)
    if unknown or sum(weights.values()) <= 0:
        raise ValueError(f"architecture keys must be among {KINDS} with a positive sum, got {p.architecture}")
    tissue_area = float(tissue.area()[0])
    total = p.tumour_fraction * tissue_area
    radius_range = {"nest": p.nest_radius_um, "sheet": p.sheet_radius_um, "gland": p.gland_radius_um}
    wanted: list[tuple[float, str]] = []  # (r0, kind)
    for kind in KINDS:
        area, target = 0.0, total * weights[kind] / sum(weights.values())
        while area < target:
            r0 = rng.uniform(*radius_range[kind])
            wanted.append((r0, kind))
            area += np.pi * r0**2 * (1.0 if kind != "gland" else 0.5)
    wanted.sort(key=lambda t: -t[0])
    lo_nest = p.nest_radius_um[0]
    wanted += [(rng.uniform(0.8, 1.0) * lo_nest, "nest") for _ in range(400)]  # fillers

    fields = ("cx", "cy", "r0", "amp", "phase", "thickness", "kind", "rout")
    placed: dict[str, list] = {f: [] for f in fields}
    tcx, tcy = float(tissue.cx[0]), float(tissue.cy[0])
    area = 0.0
    for r_wanted, kind in wanted:
        if area >= total:
            break
        rough = rng.uniform(0.08, 0.22) if kind != "gland" else rng.uniform(0.05, 0.15)
        # 60 candidate positions at once, in three rounds of shrinking radius; the first that fits wins
        r0 = r_wanted * 0.85 ** (np.arange(60) // 20)
        rout = r0 * (1 + rough)
        ang = rng.uniform(0, 2 * np.pi, 60)
        room = tissue.radius(0, ang) * 0.95 - rout - 0.5 * p.shape_gap_um
        dist = np.sqrt(rng.uniform(0, 1, 60)) * np.maximum(room, 0)
        cx, cy = tcx + dist * np.cos(ang), tcy + dist * np.sin(ang)
        ok = room > 0
        if placed["cx"]:
            d = np.hypot(np.array(placed["cx"])[None] - cx[:, None], np.array(placed["cy"])[None] - cy[:, None])
            ok &= np.all(d >= np.array(placed["rout"])[None] + rout[:, None] + p.shape_gap_um, axis=1)
        if not ok.any():
            continue
        j = int(np.argmax(ok))
        amp, phase = _blob(rng, r0[j], rough)
        thickness = min(rng.uniform(*p.gland_cell_height_um), 0.6 * r0[j]) if kind == "gland" else 0.0
        for f, v in zip(fields, (cx[j], cy[j], r0[j], amp, phase, thickness, KINDS.index(kind), rout[j])):
            placed[f].append(v)
        area += np.pi * (r0[j] ** 2 - (r0[j] - thickness) ** 2) if thickness else np.pi * r0[j] ** 2
    if not placed["cx"]:
        raise ValueError("no tumour shape fits in the tissue: make the slide larger or the shapes smaller")
    return Blobs(*(np.array(placed[f], dtype=np.int8 if f == "kind" else np.float64) for f in fields[:-1]))


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


def _cells(rng: np.random.Generator, p: LayoutParams, shapes: Blobs) -> Cells:
    xs, ys, sid, rmax, apical, major, minor, nang, noff = [], [], [], [], [], [], [], [], []
    for i in range(len(shapes)):
        if shapes.kind[i] == KINDS.index("gland"):
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
    return Cells(x=x, y=y, shape=s, kind=shapes.kind[s], rmax=cat(rmax), apical=cat(apical),
                 nx=x + off[:, 0], ny=y + off[:, 1], na=cat(major) / 2, nb=np.minimum(cat(minor), cat(major)) / 2,
                 nangle=cat(nang), nh=rng.uniform(*p.nucleus_h_od, n),
                 wobble_amp=rng.uniform(0.0, p.cell_wobble, (n, 2)), wobble_phase=rng.uniform(0, 2 * np.pi, (n, 2)))


def _outside_shapes(shapes: Blobs, x: np.ndarray, y: np.ndarray, buffer: float) -> np.ndarray:
    """Points not inside any tumour shape's outline (lumens count as inside) by ``buffer`` µm."""
    free = np.ones(len(x), dtype=bool)
    for i in range(len(shapes)):
        near = np.hypot(x - shapes.cx[i], y - shapes.cy[i]) < shapes.rmax()[i] + buffer
        if near.any():
            outer, _ = shapes.polar(i, x[near], y[near])
            free[np.flatnonzero(near)[outer < buffer]] = False
    return free


def _stroma_nuclei(rng: np.random.Generator, p: LayoutParams, tissue: Blobs, shapes: Blobs,
                   width: float, height: float) -> Nuclei:
    """Spindle stromal nuclei following a smooth fibre direction field, and lymphocytes, some in
    small aggregates; all outside tumour shapes."""
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
    f1, f2, p1, p2 = rng.uniform(1 / 250, 1 / 120, 2).tolist() + rng.uniform(0, 2 * np.pi, 2).tolist()
    s_ang = np.pi * (0.6 * np.sin(sx * f1 + p1) + 0.6 * np.cos(sy * f2 + p2)) + rng.normal(0, 0.2, len(sx))
    s_a = rng.uniform(*p.stroma_nucleus_major_um, len(sx)) / 2
    s_b = rng.uniform(*p.stroma_nucleus_minor_um, len(sx)) / 2

    lx, ly = in_tissue(p.lymphocytes_per_mm2)
    # a third of them gathered into 1-3 aggregates around stromal points
    if len(lx) > 10 and len(sx) > 0:
        k = int(rng.integers(1, 4))
        centre = rng.choice(len(sx), k)
        m = len(lx) // 3
        which = rng.integers(0, k, m)
        lx2 = sx[centre][which] + rng.normal(0, 25.0, m)
        ly2 = sy[centre][which] + rng.normal(0, 25.0, m)
        outer, _ = tissue.polar(0, lx2, ly2)
        ok = (outer < -4.0) & _outside_shapes(shapes, lx2, ly2, 2.0)
        lx = np.concatenate([lx[m:], lx2[ok]])
        ly = np.concatenate([ly[m:], ly2[ok]])
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
        shapes = _place_shapes(rng, p, place)
    else:
        shapes = _place_shapes(rng, p, tissue)
    cells = _cells(rng, p, shapes)
    nuclei = _stroma_nuclei(rng, p, tissue, shapes, width_um, height_um)
    return Layout(float(width_um), float(height_um), tissue, shapes, cells, nuclei, p)
