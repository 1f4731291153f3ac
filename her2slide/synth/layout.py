"""Tissue architecture of a synthetic slide: what a layout holds (tissue outline, tumour shapes,
cells, nuclei) and the parameters it is drawn from.

Everything here is geometry in micrometres, drawn once per slide from a seed
(:func:`her2slide.synth.draw_layout.make_layout`). It is small (a few numbers per shape and per
cell) whatever the slide size; :mod:`her2slide.synth.render` evaluates it pixel by pixel, block by
block, so no level-0 image is ever needed to build a slide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["KINDS", "STRIP_KINDS", "Blobs", "Cells", "Nuclei", "Layout", "LayoutParams"]

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
