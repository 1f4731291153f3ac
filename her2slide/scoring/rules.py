"""Every threshold and every open choice of the HER2 scoring rules, in one validated model.

The guideline leaves some choices open (does intense complete staining count toward the 2+
total? how much staining makes "ultralow"? where do complete-but-faint cells go?). Each is
decided here once, with a default, so that it is stored with every result and can be changed
from configs/ without touching code. docs/scoring.md explains each default.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CELL_CLASSES", "Criteria", "Intensity", "ScoringRules", "parse_criteria"]

#: Cell / slide score labels; the index is the integer class code used in arrays.
CELL_CLASSES: tuple[str, str, str, str] = ("0", "1+", "2+", "3+")


class Criteria(str, Enum):
    """Which published rule set scores the slide."""

    BREAST = "breast"
    GASTRIC_RESECTION = "gastric-resection"
    GASTRIC_BIOPSY = "gastric-biopsy"


class Intensity(IntEnum):
    """Membrane staining intensity; the guideline's "weak–moderate" is MODERATE."""

    NONE = 0
    FAINT = 1
    MODERATE = 2
    INTENSE = 3


def parse_criteria(criteria: Criteria | str) -> Criteria:
    """Accept a Criteria or its string value; a typo gets one clear line, not a KeyError."""
    if isinstance(criteria, Criteria):
        return criteria
    try:
        return Criteria(criteria)
    except ValueError:
        allowed = ", ".join(c.value for c in Criteria)
        raise ValueError(f"unknown scoring criteria {criteria!r}; expected one of: {allowed}") from None


_PERCENT = {"ge": 0.0, "le": 100.0}
_FRACTION = {"ge": 0.0, "le": 1.0}


class ScoringRules(BaseModel):
    """Thresholds and open choices of the ASCO/CAP (breast) and gastric HER2 IHC rules."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    faint_od: float = Field(
        0.10,
        gt=0.0,
        description="Membrane DAB optical density at which staining is 'faint' (below: none).",
    )
    moderate_od: float = Field(
        0.28,
        gt=0.0,
        description="Membrane DAB optical density at which staining is 'weak-moderate'.",
    )
    intense_od: float = Field(
        0.55,
        gt=0.0,
        description="Membrane DAB optical density at which staining is 'intense'.",
    )
    complete_fraction: float = Field(
        0.90,
        **_FRACTION,
        description="Stained fraction of the circumference at or above which a membrane is 'complete'.",
    )
    min_stained_fraction: float = Field(
        0.10,
        **_FRACTION,
        description="Stained fraction below which a cell is unstained whatever its OD (a speck is not membrane).",
    )
    breast_percent: float = Field(
        10.0,
        **_PERCENT,
        description="Breast: a class needs strictly more than this % of tumour cells (ASCO/CAP '>10%').",
    )
    gastric_percent: float = Field(
        10.0,
        **_PERCENT,
        description="Gastric resection: a class needs at least this % of tumour cells ('>=10%').",
    )
    intense_complete_counts_toward_2plus: bool = Field(
        True,
        description="Breast: 3+ cells also count toward the >10% needed for 2+ (cumulative 'at least 2+' count).",
    )
    faint_complete_class: Literal["1+", "2+"] = Field(
        "1+",
        description="Breast: class given to cells with complete but only faint membrane staining.",
    )
    ultralow_min_percent: float = Field(
        1.0,
        **_PERCENT,
        description="Breast IHC 0: HER2-ultralow needs at least this % of cells with any membrane staining.",
    )
    unusual_min_percent: float = Field(
        1.0,
        **_PERCENT,
        description="Breast: the 'intense complete staining in <=10%' 2+ pattern needs at least this % of 3+ cells.",
    )
    cluster_min_cells: int = Field(
        5,
        ge=1,
        description="Gastric biopsy: a cohesive cluster of at least this many cells of a class decides the score.",
    )
    cluster_link_um: float = Field(
        20.0,
        gt=0.0,
        description="Gastric biopsy: cells are cohesive neighbours when centroids are at most this far apart (um).",
    )

    @model_validator(mode="after")
    def _check_order(self) -> "ScoringRules":
        """Overlapping intensity bands or a stained floor above 'complete' would make classes ambiguous."""
        if not (self.faint_od < self.moderate_od < self.intense_od):
            raise ValueError(
                "intensity thresholds must be strictly increasing: "
                f"faint_od ({self.faint_od}) < moderate_od ({self.moderate_od}) < intense_od ({self.intense_od})"
            )
        if self.min_stained_fraction > self.complete_fraction:
            raise ValueError(
                f"min_stained_fraction ({self.min_stained_fraction}) must not exceed "
                f"complete_fraction ({self.complete_fraction})"
            )
        return self
