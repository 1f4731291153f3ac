"""Beer–Lambert rendering of any rectangle of a synthetic slide, with exact masks.

A region is rendered from the layout alone: every pixel is a function of its global level-0
coordinate (:mod:`her2slide.synth.geometry`: Voronoi labels, shape tests; nuclei) or of a
neighbourhood smaller than the render margin (membrane distance, textures, scanner blur), and every
random number comes from noise chunks seeded by their global position. So a slide can be rendered
block by block, never holding level 0 in memory, and the pixels do not depend on the block size.

Stain amounts are optical densities along unit stain vectors (``her2slide.stain``), the same
convention the measurement side inverts, so the designed membrane OD is what deconvolution reads
back on an unblurred membrane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..stain import StainModel, compose_rgb
from .geometry import NO_KEY, STEP, lerp, region_geometry
from .scene import Look, Scene

__all__ = ["Region", "render_region"]

_CHUNK = 256          # noise chunk (px): random numbers are tied to global chunk positions
_OFFSET = 1 << 24     # keeps chunk indices non-negative for SeedSequence


@dataclass(frozen=True)
class Region:
    """A rendered rectangle and its exact masks (all level-0 pixels of the same rectangle)."""

    rgb: np.ndarray        # uint8 (h, w, 3)
    cells: np.ndarray      # int32 tumour cell id + 1, 0 elsewhere
    membrane: np.ndarray   # float32 designed membrane DAB OD before blur (0: no stained membrane)
    boundary: np.ndarray   # bool, membrane band of every tumour cell, stained or not
    nucleus: np.ndarray    # bool, any nucleus (tumour, stroma, lymphocyte)
    tumour: np.ndarray     # bool, tumour epithelium (pixels of tumour cells)
    nuclei: np.ndarray | None = None  # int32 nucleus instances (asked for): tumour = cell label, 0 = none


# ---------------------------------------------------------------- noise and textures


def _noise(seed: int, field: int, y0: int, x0: int, h: int, w: int, channels: int = 1) -> np.ndarray:
    """Zero-mean, unit-variance float32 noise tied to global pixel positions (chunks seeded by
    position). Triangular (sum of two uniform bytes): near-Gaussian at a tenth of the cost."""
    out = np.empty((h, w, channels), np.float32)
    for cy in range(y0 // _CHUNK, (y0 + h - 1) // _CHUNK + 1):
        for cx in range(x0 // _CHUNK, (x0 + w - 1) // _CHUNK + 1):
            rng = np.random.default_rng([seed, field, cy + _OFFSET, cx + _OFFSET])
            u = rng.integers(0, 256, (2, _CHUNK, _CHUNK, channels), dtype=np.uint8)
            ys, xs = cy * _CHUNK, cx * _CHUNK
            a0, a1 = max(y0, ys), min(y0 + h, ys + _CHUNK)
            b0, b1 = max(x0, xs), min(x0 + w, xs + _CHUNK)
            sl = (slice(a0 - ys, a1 - ys), slice(b0 - xs, b1 - xs))
            out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = u[0][sl].astype(np.float32) + u[1][sl]
    out -= np.float32(255.0)
    out *= np.float32(1.0 / 104.5)  # sd of the sum of two uniform bytes
    return out if channels > 1 else out[..., 0]


def _texture(seed: int, field: int, y0: int, x0: int, h: int, w: int, sigma_px: float) -> np.ndarray:
    """Smooth unit-variance noise (Gaussian-filtered white noise, rescaled)."""
    t = ndi.gaussian_filter(_noise(seed, field, y0, x0, h, w), sigma_px, truncate=_TRUNCATE)
    return t * np.float32(2.0 * np.sqrt(np.pi) * sigma_px)


def _coarse_texture(seed: int, field: int, y0: int, x0: int, h: int, w: int, sigma_px: float) -> np.ndarray:
    """Like :func:`_texture` for wide textures: filtered on the global 4-px grid, then bilinear."""
    gy0, gx0 = y0 // STEP - 1, x0 // STEP - 1
    gh, gw = (y0 + h - 1) // STEP + 2 - gy0 + 1, (x0 + w - 1) // STEP + 2 - gx0 + 1
    coarse = _texture(seed, field, gy0, gx0, gh, gw, sigma_px / STEP)
    return lerp(coarse, (y0 + np.arange(h)) / STEP - gy0, (x0 + np.arange(w)) / STEP - gx0)


_TRUNCATE = 3.0  # Gaussian filters stop at 3 σ (the rest is below 8-bit precision here)


def _radius(sigma_px: float) -> int:
    """Reach of scipy's Gaussian filter."""
    return int(_TRUNCATE * sigma_px + 0.5)


_CHROMATIN_UM = 0.35  # grain of the nuclear texture


def required_margin(look: Look, mpp: float) -> int:
    """Margin (px) a block needs so that its interior does not depend on the block size."""
    band = int(np.ceil((look.membrane_width_um / 2 + look.membrane_edge_um) / mpp)) + 2
    fibre = STEP * (_radius(look.fibre_um / mpp / STEP) + 2)
    return max(_radius(_CHROMATIN_UM / mpp), band, fibre) + _radius(look.blur_um / mpp) + 4


# ---------------------------------------------------------------- drawing


def _smooth_step(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _membrane(scene: Scene, lab: np.ndarray, y0: int, x0: int) -> tuple[np.ndarray, np.ndarray]:
    """Designed membrane DAB (pre-blur) and the membrane band of every cell.

    The band is measured from the cell's own boundary (distance to the nearest pixel touching
    another label), so each cell stains its own half of a shared boundary.
    """
    look, m, mpp = scene.look, scene.membranes, scene.mpp
    tumour = lab > 0
    edge = np.zeros(lab.shape, bool)
    dx = lab[:, 1:] != lab[:, :-1]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    dy = lab[1:] != lab[:-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge &= tumour
    rows = np.flatnonzero(tumour.any(1))
    cols = np.flatnonzero(tumour.any(0))
    mem = np.zeros(lab.shape, np.float32)
    band_mask = np.zeros(lab.shape, bool)
    if len(rows) == 0:
        return mem, band_mask
    reach = int(np.ceil((look.membrane_width_um / 2 + look.membrane_edge_um) / mpp)) + 2
    r0, r1 = max(rows[0] - reach, 0), min(rows[-1] + reach + 1, lab.shape[0])
    c0, c1 = max(cols[0] - reach, 0), min(cols[-1] + reach + 1, lab.shape[1])
    sub = (slice(r0, r1), slice(c0, c1))
    dist = (ndi.distance_transform_edt(~edge[sub]) + 0.5) * mpp
    half = look.membrane_width_um / 2
    weight = _smooth_step((half + look.membrane_edge_um / 2 - dist) / max(look.membrane_edge_um, 1e-6))
    sel = (weight > 0) & tumour[sub]
    band_mask[sub] = sel & (dist <= half)
    rr, cc = np.nonzero(sel)
    cell = lab[sub][rr, cc] - 1
    theta = np.mod(np.arctan2(rr + r0 + y0 - m.cy[cell], cc + c0 + x0 - m.cx[cell]), 2 * np.pi)
    stained = np.zeros(len(cell), bool)
    for j in range(m.arc_len.shape[1]):
        stained |= np.mod(theta - m.arc_start[cell, j], 2 * np.pi) < m.arc_len[cell, j]
    vary = 1.0 + sum(m.ring_amp[cell, j] * np.cos(m.ring_k[cell, j] * theta + m.ring_phase[cell, j])
                     for j in range(m.ring_amp.shape[1]))
    mem[sub][rr, cc] = (m.od[cell] * stained * vary * weight[rr, cc]).astype(np.float32)
    return mem, band_mask


def _outline_factor(un: np.ndarray, vn: np.ndarray, rho: np.ndarray, amp: np.ndarray,
                    phase: np.ndarray) -> np.ndarray:
    """``1 + a2 cos(2φ + φ2) + a3 cos(3φ + φ3)`` at the angle φ of the normalised offsets (un, vn)
    of a nucleus' pixels (cos kφ by the double-angle identities: no trigonometry per pixel)."""
    inv = 1.0 / np.maximum(rho, 1e-9)
    c, s = un * inv, vn * inv
    c2, s2 = c * c - s * s, 2 * c * s
    c3, s3 = c * c2 - s * s2, s * c2 + c * s2
    a2, a3 = amp[:, 0, None, None], amp[:, 1, None, None]
    p2, p3 = phase[:, 0, None, None], phase[:, 1, None, None]
    return 1.0 + a2 * (c2 * np.cos(p2) - s2 * np.sin(p2)) + a3 * (c3 * np.cos(p3) - s3 * np.sin(p3))


def _nuclei(scene: Scene, lab: np.ndarray, stroma: np.ndarray, y0: int, x0: int,
            with_ids: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Alpha (0-1) and haematoxylin OD of all nuclei: soft-edged ellipses (irregular where the
    layout says so) with a darker rim; tumour nuclei are clipped to their own cell, stromal nuclei
    and lymphocytes to stroma. With ``with_ids``, also each pixel's nucleus instance (the nucleus
    of highest alpha, where alpha ≥ 0.5): tumour cell ``i``'s nucleus is ``i + 1`` (its cell
    label), the ``j``-th other nucleus ``len(cells) + j + 1``."""
    L, mpp, look = scene.layout, scene.mpp, scene.look
    h, w = lab.shape
    c, o = L.cells, L.nuclei
    x = np.concatenate([c.nx, o.x]) / mpp
    y = np.concatenate([c.ny, o.y]) / mpp
    a = np.concatenate([c.na, o.a]) / mpp
    b = np.concatenate([c.nb, o.b]) / mpp
    ang = np.concatenate([c.nangle, o.angle])
    hod = np.concatenate([c.nh, o.h])
    owner = np.concatenate([np.arange(1, len(c) + 1), np.zeros(len(o), int)])  # label required
    wob_amp = np.concatenate([c.nucleus_wobble_amp, np.zeros((len(o), 2))])
    wob_phase = np.concatenate([c.nucleus_wobble_phase, np.zeros((len(o), 2))])
    irregular = wob_amp.any(1)
    alpha = np.zeros(h * w, np.float32)
    hmap = np.zeros(h * w, np.float32)
    key = np.full(h * w, NO_KEY, np.int64) if with_ids else None
    reach = a * (1.0 + wob_amp.sum(1))  # irregular outlines reach further (equal to a for ellipses)
    near = np.flatnonzero((x + reach + 2 >= x0) & (x - reach - 2 < x0 + w) & (y + reach + 2 >= y0)
                          & (y - reach - 2 < y0 + h))
    if len(near) == 0:
        return alpha.reshape(h, w), hmap.reshape(h, w), (np.zeros((h, w), np.int32) if with_ids else None)
    flat_lab, flat_stroma = lab.ravel(), stroma.ravel()
    edge_px = 0.5 / mpp
    radius = (np.ceil((reach[near] + 2) / 8) * 8).astype(int)
    for r in np.unique(radius):
        group = near[radius == r]
        off = np.arange(-r, r + 1)
        for s in range(0, len(group), 256):
            g = group[s:s + 256]
            rows = np.floor(y[g]).astype(np.int64)[:, None, None] + off[None, :, None]
            cols = np.floor(x[g]).astype(np.int64)[:, None, None] + off[None, None, :]
            dy, dx = rows - y[g][:, None, None], cols - x[g][:, None, None]
            cs, sn = np.cos(ang[g])[:, None, None], np.sin(ang[g])[:, None, None]
            u, v = dx * cs + dy * sn, -dx * sn + dy * cs
            un, vn = u / a[g][:, None, None], v / b[g][:, None, None]
            rho = np.sqrt(un ** 2 + vn ** 2)
            if irregular[g].any():
                rho = rho / _outline_factor(un, vn, rho, wob_amp[g], wob_phase[g])
            al = np.clip(0.5 + (1.0 - rho) * b[g][:, None, None] / edge_px, 0.0, 1.0)
            val = hod[g][:, None, None] * (look.nucleus_centre + look.nucleus_rim * _smooth_step((rho - 0.55) / 0.45))
            rr, cc = rows - y0, cols - x0
            ok = (al > 0) & (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            flat = np.broadcast_to(rr * w + cc, al.shape)[ok]
            own = np.broadcast_to(owner[g][:, None, None], al.shape)[ok]
            keep = np.where(own > 0, flat_lab[flat] == own, flat_stroma[flat])
            np.maximum.at(alpha, flat[keep], al[ok][keep].astype(np.float32))
            np.maximum.at(hmap, flat[keep], np.broadcast_to(val, al.shape)[ok][keep].astype(np.float32))
            if key is not None:  # z-buffer: highest alpha wins, ties to the lower index
                index = np.broadcast_to(g[:, None, None], al.shape)[ok][keep]
                quantised = ((1.0 - al[ok][keep]) * 65535).astype(np.int64)
                np.minimum.at(key, flat[keep], (quantised << 32) | index)
    ids = None
    if key is not None:
        ids = np.where((key != NO_KEY) & (alpha >= 0.5), (key & 0xFFFFFFFF) + 1, 0).astype(np.int32).reshape(h, w)
    return alpha.reshape(h, w), hmap.reshape(h, w), ids


def _glass(scene: Scene, y0: int, x0: int, h: int, w: int, with_ids: bool) -> Region:
    base = compose_rgb(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), scene.look.stain_model())
    noise = _noise(scene.seed, 3, y0, x0, h, w, channels=3)
    rgb = base.astype(np.float32) + np.asarray(scene.look.noise_sd, np.float32) * noise
    z = np.zeros((h, w), bool)
    return Region(rgb=np.clip(np.rint(rgb), 0, 255).astype(np.uint8), cells=np.zeros((h, w), np.int32),
                  membrane=np.zeros((h, w), np.float32), boundary=z, nucleus=z.copy(), tumour=z.copy(),
                  nuclei=np.zeros((h, w), np.int32) if with_ids else None)


def render_region(scene: Scene, y0: int, x0: int, h: int, w: int, *, margin: int | None = None,
                  nuclei: bool = False) -> Region:
    """Render the level-0 rectangle (y0, x0, h, w) with its masks (``nuclei``: also the nucleus
    instance labels, which cost one more z-buffer pass over the nuclei).

    The rectangle is rendered with ``margin`` extra pixels on each side (default: the smallest
    that makes the result independent of the block size) and cropped.
    """
    look, mpp = scene.look, scene.mpp
    need = required_margin(look, mpp)
    m = need if margin is None else margin
    if m < need:
        raise ValueError(f"margin {m} px is smaller than the {need} px the blur and textures reach")
    Y0, X0, H, W = y0 - m, x0 - m, h + 2 * m, w + 2 * m
    g = region_geometry(scene.layout, mpp, Y0, X0, H, W)
    if not g.tissue.any():  # glass only: white point and sensor noise
        return _glass(scene, y0, x0, h, w, nuclei)
    lab = g.labels
    tumour = lab > 0
    stroma = g.tissue & (g.shape_map < 0) & ~g.lumen
    mem, band = _membrane(scene, lab, Y0, X0)
    alpha, hnuc, ids = _nuclei(scene, lab, stroma, Y0, X0, with_ids=nuclei)

    fibre = _coarse_texture(scene.seed, 1, Y0, X0, H, W, look.fibre_um / mpp)  # on the coarse grid
    haem = np.where(g.tissue, np.float32(look.stroma_h_od) + np.float32(look.stroma_texture) * np.abs(fibre), 0)
    haem = haem.astype(np.float32)
    haem[g.lumen & g.tissue] = look.lumen_h_od
    haem[g.shape_map >= 0] = look.cytoplasm_h_od
    chrom = _texture(scene.seed, 2, Y0, X0, H, W, _CHROMATIN_UM / mpp)
    haem = haem * (1 - alpha) + alpha * hnuc * (1 + np.float32(look.chromatin) * chrom)
    np.maximum(haem, 0, out=haem)
    if look.counterstain != 1.0:
        haem *= np.float32(look.counterstain)

    haze = np.concatenate([[0.0], scene.membranes.haze]).astype(np.float32)[lab]
    # granular DAB: the same fine zero-mean texture as chromatin (they never share a pixel's meaning)
    dab = (mem * (1 + np.float32(look.membrane_grain) * chrom)
           + haze * (1 - alpha) * (1 + np.float32(look.haze_grain) * chrom)
           + np.float32(look.tissue_dab_od) * g.tissue)
    np.maximum(dab, 0, out=dab)

    sigma = look.blur_um / mpp
    haem = ndi.gaussian_filter(haem, sigma, truncate=_TRUNCATE)[m:m + h, m:m + w]
    dab = ndi.gaussian_filter(dab, sigma, truncate=_TRUNCATE)[m:m + h, m:m + w]
    base = look.stain_model()  # float32 copy: compose_rgb then works in float32, twice as fast
    model = StainModel(base.haematoxylin.astype(np.float32), base.dab.astype(np.float32), base.white.astype(np.float32))
    rgb = np.empty((h, w, 3), np.uint8)
    noise = _noise(scene.seed, 3, y0, x0, h, w, channels=3)
    for r in range(0, h, 256):
        part = compose_rgb(haem[r:r + 256], dab[r:r + 256], model).astype(np.float32)
        part += np.asarray(look.noise_sd, np.float32) * noise[r:r + 256]
        rgb[r:r + 256] = np.clip(np.rint(part), 0, 255).astype(np.uint8)
    inner = (slice(m, m + h), slice(m, m + w))
    return Region(rgb=rgb, cells=lab[inner].copy(), membrane=mem[inner].copy(), boundary=band[inner].copy(),
                  nucleus=alpha[inner] >= 0.5, tumour=tumour[inner].copy(),
                  nuclei=None if ids is None else ids[inner].copy())
