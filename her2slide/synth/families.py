"""Style families: named, coherent looks of tumour tissue for training tiles and held-out slides.

The v1 network learnt one generator look (medium nuclei, calibrated counterstain, nests, sheets
and glands) and took that look for tumour. Each family here is one coherent kind of tissue and
scanner: its own architecture, cells, nuclei, stroma, counterstain and scanner colour, drawn per
tile (or slide) from the family's ranges. Together the training families span what v1 kept fixed;
one family, :data:`HELD_OUT`, differs from all of them in architecture *and* look (trabecular
cords, pale counterstain, a magenta scanner tint with tilted stain vectors, heavy JPEG) and is never
trained on, so a detector's score on it is a sim-to-real proxy: tissue it has not seen.

A family only sets *style*. What is measured (membrane OD bands and patterns, class mixtures)
stays the generator's, drawn by the caller.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .layout import LayoutParams
from .scene import Look

__all__ = ["Family", "FAMILIES", "HELD_OUT", "TRAINING_FAMILIES", "family_named", "tilted"]

Range = tuple[float, float]


def tilted(v: np.ndarray, rng: np.random.Generator, degrees: Range,
           towards: np.ndarray | None = None) -> tuple[float, float, float]:
    """Unit vector ``v`` tilted by U(``degrees``) in a random direction (stain-vector variation),
    or mostly ``towards`` a direction when one is given."""
    axis = rng.normal(size=3)
    if towards is not None:
        axis = towards / np.linalg.norm(towards) + 0.5 * axis / np.linalg.norm(axis)
    axis -= axis @ v * v
    axis /= np.linalg.norm(axis)
    a = np.radians(rng.uniform(*degrees))
    out = np.cos(a) * v + np.sin(a) * axis
    out = np.abs(out) / np.linalg.norm(out)
    return tuple(float(x) for x in out)


class Family(BaseModel):
    """Ranges of one style family. Scalars are drawn uniformly per tile or slide; sizes are drawn
    as a centre, and the layout then varies cell by cell ±15 % around it (±20 % for nucleus OD)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    code: int = Field(description="Stable seed component: a family's tiles do not depend on the mix they are in.")
    description: str
    held_out: bool = False
    # architecture
    architecture: dict[str, float] = Field(description="Dirichlet concentrations of the shares of tumour kinds.")
    filler: str | None = "nest"
    tumour_fraction: Range
    kind_gap_um: dict[str, Range] = Field(default_factory=dict)
    layout: dict[str, object] = Field(default_factory=dict, description="Fixed LayoutParams fields (shape sizes).")
    # cells and nuclei
    cell_spacing_um: Range = (11.5, 14.5)
    nucleus_major_um: Range
    nucleus_aspect: Range          # minor / major axis
    nucleus_irregularity: Range = (0.0, 0.0)
    nucleus_h_od: Range
    nucleus_centre: Range = (0.88, 0.88)
    nucleus_rim: Range = (0.3, 0.3)
    chromatin: Range
    cytoplasm_h_od: Range
    # stroma
    stroma_nuclei_per_mm2: Range
    lymphocytes_per_mm2: Range
    lymphocyte_aggregate_share: Range = (0.33, 0.33)
    stroma_h_od: Range
    stroma_texture: Range
    fibre_um: Range
    tissue_dab_od: Range
    # stain and scanner
    counterstain: Range
    white_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # glass tint relative to the calibrated white
    white_sd: float = 4.0
    stain_tilt_deg: Range = (0.0, 5.0)
    # Tilts beyond ~5° in a random direction put a slide's stain outside the H-DAB plane on the
    # side eosin lies, and the pipeline's suitability check then calls it H&E (correctly so for
    # that colour). Real IHC stains sit on the other side (the real cores' residual share is
    # +0.08 to +0.10, her2slide.slide.checks), so large tilts go that way.
    stain_tilt_off_plane: bool = False
    blur_um: Range
    noise_scale: Range = (0.6, 1.0)  # × the calibrated sensor noise
    jpeg_quality: tuple[int, int] = (80, 95)

    def draw(self, rng: np.random.Generator) -> tuple[LayoutParams, Look]:
        """One tile's (or slide's) layout and look, one draw per knob in a fixed order (keyword
        arguments evaluate left to right). Membrane width, haze and ring variation are drawn in
        v1's ranges for every family: they belong to the stain, not to the tissue."""
        from ..stain import StainModel

        def u(r: Range) -> float:
            return float(rng.uniform(*r))

        def around(centre: float, spread: float) -> Range:
            return (centre * (1 - spread), centre * (1 + spread))

        kinds = list(self.architecture)
        shares = rng.dirichlet([self.architecture[k] for k in kinds])
        major = u(self.nucleus_major_um)
        layout = LayoutParams(
            architecture=dict(zip(kinds, shares.tolist())), filler=self.filler,
            tumour_fraction=u(self.tumour_fraction),
            kind_gap_um={k: u(r) for k, r in self.kind_gap_um.items()},
            cell_spacing_um=around(u(self.cell_spacing_um), 0.12),
            nucleus_major_um=around(major, 0.15), nucleus_minor_um=around(major * u(self.nucleus_aspect), 0.15),
            nucleus_irregularity=u(self.nucleus_irregularity), nucleus_h_od=around(u(self.nucleus_h_od), 0.2),
            stroma_nuclei_per_mm2=u(self.stroma_nuclei_per_mm2), lymphocytes_per_mm2=u(self.lymphocytes_per_mm2),
            lymphocyte_aggregate_share=u(self.lymphocyte_aggregate_share), placement_patience=_PATIENCE, **self.layout)
        d, default = StainModel.default(), Look()
        white = np.clip(np.array(default.white) + np.array(self.white_shift) + rng.normal(0, self.white_sd, 3), 200, 255)
        towards = d.matrix[2] if self.stain_tilt_off_plane else None  # the residual direction, away from eosin
        look = Look(
            white=tuple(float(x) for x in white), haematoxylin=tilted(d.haematoxylin, rng, self.stain_tilt_deg, towards),
            dab=tilted(d.dab, rng, self.stain_tilt_deg, towards), blur_um=u(self.blur_um),
            noise_sd=tuple(float(x) * u(self.noise_scale) for x in default.noise_sd),
            jpeg_quality=int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)),
            counterstain=u(self.counterstain), cytoplasm_h_od=u(self.cytoplasm_h_od), chromatin=u(self.chromatin),
            nucleus_centre=u(self.nucleus_centre), nucleus_rim=u(self.nucleus_rim), stroma_h_od=u(self.stroma_h_od),
            stroma_texture=u(self.stroma_texture), fibre_um=u(self.fibre_um), tissue_dab_od=u(self.tissue_dab_od),
            membrane_width_um=u((1.0, 1.7)), cytoplasm_dab_fraction=u((0.03, 0.25)), ring_variation=u((0.05, 0.2)))
        return layout, look


#: Shapes in a row that may find no room before placement stops: a family's tumour share can be
#: more than its shapes can pack to, and trying all 400 fillers then dominates a tile's cost.
_PATIENCE = 50
_TILE_SHAPES = {"nest_radius_um": (20.0, 55.0), "sheet_radius_um": (55.0, 100.0), "gland_radius_um": (30.0, 65.0)}

#: The style families, by name. Codes are fixed forever (they seed the tiles).
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(
        name="cohesive", code=1,
        description="v1's tissue widened: nests, sheets and glands of medium cells, the calibrated look with "
                    "more spread in counterstain, chromatin, cytoplasm and scanner",
        architecture={"nest": 2.0, "sheet": 2.0, "gland": 2.0}, tumour_fraction=(0.4, 0.7), layout=_TILE_SHAPES,
        nucleus_major_um=(6.5, 9.0), nucleus_aspect=(0.55, 0.75), nucleus_irregularity=(0.0, 0.08),
        nucleus_h_od=(0.14, 0.24), chromatin=(0.12, 0.3), cytoplasm_h_od=(0.04, 0.1),
        stroma_nuclei_per_mm2=(1000, 1800), lymphocytes_per_mm2=(300, 800), stroma_h_od=(0.03, 0.05),
        stroma_texture=(0.02, 0.03), fibre_um=(0.6, 0.8), tissue_dab_od=(0.02, 0.04),
        counterstain=(0.75, 1.3), blur_um=(0.3, 0.6)),
    Family(
        name="pleomorphic", code=2,
        description="solid sheets and nests of large cells with big irregular vesicular nuclei, visible "
                    "cytoplasm, heavy counterstain, lymphocyte-rich stroma, a warm scanner",
        architecture={"sheet": 3.0, "nest": 2.0}, tumour_fraction=(0.45, 0.7), layout=_TILE_SHAPES,
        cell_spacing_um=(15.0, 20.0), nucleus_major_um=(10.0, 15.0), nucleus_aspect=(0.6, 0.85),
        nucleus_irregularity=(0.06, 0.18), nucleus_h_od=(0.18, 0.26), nucleus_centre=(0.6, 0.75),
        nucleus_rim=(0.45, 0.65), chromatin=(0.2, 0.32), cytoplasm_h_od=(0.06, 0.1),
        stroma_nuclei_per_mm2=(600, 1200), lymphocytes_per_mm2=(2500, 6000), lymphocyte_aggregate_share=(0.5, 0.75),
        stroma_h_od=(0.03, 0.05), stroma_texture=(0.02, 0.035), fibre_um=(0.6, 0.9), tissue_dab_od=(0.02, 0.05),
        counterstain=(1.0, 1.5), white_shift=(5.0, 0.0, -12.0), white_sd=3.0, blur_um=(0.35, 0.55),
        noise_scale=(0.8, 1.2), jpeg_quality=(75, 90)),
    Family(
        name="discohesive", code=3,
        description="scattered single tumour cells and single files in loose, pale stroma (a poorly cohesive, "
                    "diffuse carcinoma): small round dense nuclei, no visible cytoplasm, few fibroblasts",
        architecture={"discohesive": 3.0, "single_file": 2.0}, filler=None, tumour_fraction=(0.15, 0.35),
        kind_gap_um={"discohesive": (3.0, 10.0), "single_file": (8.0, 16.0)},
        nucleus_major_um=(5.0, 7.0), nucleus_aspect=(0.75, 0.95), nucleus_irregularity=(0.0, 0.1),
        nucleus_h_od=(0.22, 0.32), nucleus_centre=(0.9, 1.0), nucleus_rim=(0.1, 0.25), chromatin=(0.08, 0.18),
        cytoplasm_h_od=(0.0, 0.03), stroma_nuclei_per_mm2=(400, 900), lymphocytes_per_mm2=(300, 1500),
        lymphocyte_aggregate_share=(0.2, 0.5), stroma_h_od=(0.012, 0.03), stroma_texture=(0.03, 0.05),
        fibre_um=(1.0, 1.6), tissue_dab_od=(0.01, 0.03), counterstain=(0.6, 1.0), white_shift=(-2.0, -1.0, 3.0),
        white_sd=3.0, blur_um=(0.28, 0.42), jpeg_quality=(85, 95)),
    Family(
        name="glandular", code=4,
        description="intestinal-type glands with tall columnar cells and elongated nuclei, some nests, dense "
                    "desmoplastic stroma rich in fibroblasts, a cool older scanner (more blur, noise and JPEG)",
        architecture={"gland": 4.0, "nest": 1.0, "sheet": 1.0}, tumour_fraction=(0.4, 0.65),
        layout={**_TILE_SHAPES, "gland_cell_height_um": (18.0, 26.0), "gland_cell_width_um": (7.0, 10.0)},
        cell_spacing_um=(10.0, 13.0), nucleus_major_um=(8.5, 12.0), nucleus_aspect=(0.35, 0.5),
        nucleus_irregularity=(0.0, 0.06), nucleus_h_od=(0.2, 0.3), nucleus_rim=(0.2, 0.3), chromatin=(0.15, 0.3),
        cytoplasm_h_od=(0.05, 0.1), stroma_nuclei_per_mm2=(2200, 3500), lymphocytes_per_mm2=(400, 1200),
        stroma_h_od=(0.05, 0.08), stroma_texture=(0.015, 0.03), fibre_um=(0.45, 0.7), tissue_dab_od=(0.03, 0.06),
        counterstain=(0.8, 1.4), white_shift=(-6.0, -2.0, 6.0), white_sd=3.0, blur_um=(0.5, 0.8),
        noise_scale=(1.0, 1.4), jpeg_quality=(70, 85)),
    Family(
        name="trabecular", code=5, held_out=True,
        description="HELD OUT: anastomosing trabecular cords 1-3 cells wide between thin stroma septa, medium round "
                    "nuclei, cytoplasm barely visible, pale counterstain, a magenta-tinted scanner with tilted stain "
                    "vectors and heavy JPEG",
        architecture={"trabecular": 5.0, "nest": 1.0}, filler="trabecular", tumour_fraction=(0.45, 0.65),
        layout={**_TILE_SHAPES, "trabecular_radius_um": (45.0, 100.0), "trabecular_gap_um": (3.0, 7.0)},
        cell_spacing_um=(11.0, 15.0), nucleus_major_um=(7.0, 10.0), nucleus_aspect=(0.65, 0.85),
        nucleus_irregularity=(0.05, 0.15), nucleus_h_od=(0.15, 0.24), nucleus_centre=(0.8, 0.9),
        nucleus_rim=(0.3, 0.4), chromatin=(0.15, 0.3), cytoplasm_h_od=(0.0, 0.03),
        stroma_nuclei_per_mm2=(800, 1500), lymphocytes_per_mm2=(200, 600), stroma_h_od=(0.03, 0.05),
        stroma_texture=(0.02, 0.03), fibre_um=(0.7, 1.0), tissue_dab_od=(0.02, 0.04), counterstain=(0.45, 0.7),
        white_shift=(5.0, -8.0, 4.0), white_sd=2.0, stain_tilt_deg=(6.0, 10.0), stain_tilt_off_plane=True,
        blur_um=(0.4, 0.6),
        noise_scale=(0.8, 1.2), jpeg_quality=(60, 75)),
)}

#: The family kept out of training: evaluate on it (``suite_specs(..., family=HELD_OUT)``).
HELD_OUT = next(name for name, f in FAMILIES.items() if f.held_out)
#: The families to train on.
TRAINING_FAMILIES: tuple[str, ...] = tuple(name for name, f in FAMILIES.items() if not f.held_out)


def family_named(name: str) -> Family:
    """The family called ``name``; a ValueError that lists the names otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown style family {name!r}; families: {', '.join(FAMILIES)}")
    return FAMILIES[name]
