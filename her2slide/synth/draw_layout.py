"""Drawing a synthetic slide's layout from a seed: tissue outline, tumour shapes (placed by
:mod:`her2slide.synth.shapes`), tumour cells and nuclei, stromal nuclei and lymphocytes.

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

import numpy as np

from .layout import KINDS, LYMPHOCYTE, STROMA, Blobs, Cells, Layout, LayoutParams, Nuclei
from .shapes import Field4, blob_shape, draw_field, field_angle, place_shapes

__all__ = ["make_layout"]


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
    s_ang = field_angle(field or draw_field(rng), sx, sy) + rng.normal(0, 0.2, len(sx))
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
        amp, phase = blob_shape(rng, r0, rough)
        cx = width_um / 2 + rng.uniform(-1, 1) * (half - r0 * (1 + rough))
        cy = height_um / 2 + rng.uniform(-1, 1) * (half - r0 * (1 + rough))
    tissue = Blobs(np.array([cx]), np.array([cy]), np.array([r0]), amp[None], phase[None],
                   np.zeros(1), np.array([-1], np.int8))
    if tissue_everywhere:
        # shapes may run off the field: place them in a disc covering it
        place = Blobs(tissue.cx, tissue.cy, np.array([np.hypot(width_um, height_um) / 2 + 60.0]),
                      tissue.amp, tissue.phase, tissue.thickness, tissue.kind)
        shapes, field = place_shapes(rng, p, place)
    else:
        shapes, field = place_shapes(rng, p, tissue)
    cells = _cells(rng, p, shapes)
    nuclei = _stroma_nuclei(rng, p, tissue, shapes, width_um, height_um, field)
    return Layout(float(width_um), float(height_um), tissue, shapes, cells, nuclei, p)
