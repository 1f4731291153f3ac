"""What a synthetic slide is asked to be: a :class:`SlideSpec` (pattern, target score, fraction,
size, seed, architecture, look), the phenotypes a tumour cell can have — a membrane intensity (none
/ faint / weak–moderate / intense) and a pattern (complete ring, partial arcs, basolateral/lateral
U) — the class mixtures per score, and the membrane design bands.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .artefacts import Artefact
from .families import family_named
from .layout import LayoutParams
from .scene import Look

__all__ = ["PHENOTYPES", "MIXTURES", "MembraneDesign", "SlideSpec"]

Score = Literal["0", "1+", "2+", "3+"]
Pattern = Literal["homogeneous", "focal", "mosaic"]

#: phenotype -> (intensity 0..3, membrane pattern)
PHENOTYPES: dict[str, tuple[int, str]] = {
    "none": (0, "none"),
    "faint_partial": (1, "partial"),
    "faint_complete": (1, "complete"),
    "moderate_partial": (2, "partial"),
    "moderate_lateral": (2, "lateral"),
    "moderate_complete": (2, "complete"),
    "intense_partial": (3, "partial"),
    "intense_lateral": (3, "lateral"),
    "intense_complete": (3, "complete"),
}

#: Homogeneous class mixtures per breast score, chosen far from every 10 % / 1 % boundary and so
#: that the score does not depend on the rule engine's open choices (where faint complete or
#: moderate lateral cells go).
MIXTURES: dict[str, dict[str, float]] = {
    "0": {"none": 0.94, "faint_partial": 0.06},
    "1+": {"none": 0.40, "faint_partial": 0.55, "faint_complete": 0.05},
    "2+": {"none": 0.20, "faint_partial": 0.25, "moderate_lateral": 0.10, "moderate_complete": 0.45},
    "3+": {"none": 0.10, "faint_partial": 0.10, "moderate_complete": 0.15, "intense_lateral": 0.10,
           "intense_complete": 0.55},
}

POSITIVE = {"3+": "intense_complete", "2+": "moderate_complete"}


class MembraneDesign(BaseModel):
    """Membrane OD bands (drawn well inside the rule engine's classes) and pattern geometry."""

    model_config = ConfigDict(extra="forbid")

    od_faint: tuple[float, float] = (0.14, 0.24)
    od_moderate: tuple[float, float] = (0.38, 0.52)
    od_intense: tuple[float, float] = (0.75, 1.10)
    partial_fraction: tuple[float, float] = (0.25, 0.65)  # total of 1-3 arcs
    lateral_fraction: tuple[float, float] = (0.55, 0.75)  # one contiguous U, open to the apex


class SlideSpec(BaseModel):
    """What to generate. ``score``: the target breast score of a homogeneous slide, or the score of
    the negative background of a focal/mosaic slide ("0" or "1+"). ``fraction``: focal cluster
    share of tumour cells, or mosaic positive fraction. ``positive``: class of focal/mosaic
    positive cells."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    pattern: Pattern = "homogeneous"
    score: Score = "2+"
    fraction: float = Field(0.2, ge=0.0, le=1.0)
    positive: Literal["2+", "3+"] = "3+"
    clusters: int = Field(1, ge=1, le=20)
    mixture: dict[str, float] | None = None  # overrides MIXTURES[score] (homogeneous/background)
    size_um: tuple[float, float] = (1000.0, 1000.0)  # width, height
    mpp: float = 0.25
    seed: int = 0
    full_field: bool = False  # tissue covers the whole field, no glass (training tiles)
    layout: LayoutParams = Field(default_factory=LayoutParams)
    membrane: MembraneDesign = Field(default_factory=MembraneDesign)
    look: Look = Field(default_factory=Look)
    artefacts: list[Artefact] = Field(default_factory=list)  # blur / fold / ink painted over the render (QC tests)
    family: str | None = None  # style family the layout and look were drawn from (a label; see families.py)

    @model_validator(mode="after")
    def _check(self) -> "SlideSpec":
        if self.pattern != "homogeneous" and self.score not in ("0", "1+") and self.mixture is None:
            raise ValueError(f"a {self.pattern} slide needs a negative background: score '0' or '1+', "
                             f"got {self.score!r}")
        if self.mixture is not None:
            bad = set(self.mixture) - set(PHENOTYPES)
            if bad or sum(self.mixture.values()) <= 0:
                raise ValueError(f"mixture keys must be among {sorted(PHENOTYPES)} with a positive sum")
        if min(self.size_um) < 20:
            raise ValueError("size_um must be at least 20 µm each way")
        if self.family is not None:
            family_named(self.family)
        return self

    @property
    def slide_name(self) -> str:
        if self.name:
            return self.name
        tag = {"homogeneous": f"hom{self.score}", "focal": f"focal{self.score}-{self.positive}x{self.fraction:g}",
               "mosaic": f"mosaic{self.score}-{self.positive}x{self.fraction:g}"}[self.pattern]
        return f"synth-{tag.replace('+', 'p')}-s{self.seed}"
