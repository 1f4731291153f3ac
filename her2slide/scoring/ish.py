"""Dual-probe ISH groups 1-5 and the concurrent-IHC work-up (breast, ASCO/CAP 2018).

Groups 1 and 5 decide the status alone. Groups 2-4 are the less common patterns whose
status the guideline resolves with concurrent IHC on the same tissue, and for IHC 2+ a
blinded recount by an additional observer. Where a step is still missing the result is
"pending" with what is needed, never a guess.

Copy number and ratio are compared exactly as given (no rounding): the lab reports them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .rules import CELL_CLASSES

__all__ = ["IshResult", "ish_group", "ish_result", "GROUP_DEFINITIONS", "GROUP_COMMENTS"]

RATIO_CUTOFF = 2.0
COPIES_LOW = 4.0
COPIES_HIGH = 6.0

GROUP_DEFINITIONS: dict[int, str] = {
    1: "HER2/CEP17 ratio ≥2.0 and average HER2 copy number ≥4.0 signals/cell",
    2: "HER2/CEP17 ratio ≥2.0 and average HER2 copy number <4.0 signals/cell",
    3: "HER2/CEP17 ratio <2.0 and average HER2 copy number ≥6.0 signals/cell",
    4: "HER2/CEP17 ratio <2.0 and average HER2 copy number ≥4.0 and <6.0 signals/cell",
    5: "HER2/CEP17 ratio <2.0 and average HER2 copy number <4.0 signals/cell",
}

#: The report comments the guideline asks for when groups 2-4 are called HER2 negative.
GROUP_COMMENTS: dict[int, str] = {
    2: (
        "Evidence is limited on the efficacy of HER2-targeted therapy in the small subset of cases with a "
        "HER2/CEP17 ratio ≥2.0 and an average HER2 copy number <4.0 per cell. In the first generation of "
        "adjuvant trastuzumab trials, patients in this subgroup who were randomly assigned to the trastuzumab "
        "arm did not seem to derive an improvement in disease-free or overall survival, but there were too few "
        "such cases to draw definitive conclusions. IHC expression for HER2 should be used to complement ISH "
        "and define HER2 status. If the IHC result is not 3+ positive, it is recommended that the specimen be "
        "considered HER2 negative because of the low HER2 copy number by ISH and the lack of protein "
        "overexpression."
    ),
    3: (
        "There are insufficient data on the efficacy of HER2-targeted therapy in cases with a HER2/CEP17 ratio "
        "<2.0 in the absence of protein overexpression, because such patients were not eligible for the first "
        "generation of adjuvant trastuzumab clinical trials. When concurrent IHC results are negative (0 or 1+), "
        "it is recommended that the specimen be considered HER2 negative."
    ),
    4: (
        "It is uncertain whether patients with an average of ≥4.0 and <6.0 HER2 signals/cell and a HER2/CEP17 "
        "ratio <2.0 benefit from HER2-targeted therapy in the absence of protein overexpression (IHC 3+). If the "
        "specimen test result is close to the ISH ratio threshold for positive, there is a higher likelihood that "
        "repeat testing will result in different results by chance alone. Therefore, when IHC results are not "
        "3+ positive, it is recommended that the sample be considered HER2 negative without additional testing "
        "on the same specimen."
    ),
}

IshStatus = Literal["positive", "negative", "pending"]


@dataclass(frozen=True)
class IshResult:
    """ISH group, status, the guideline sentence that decided it, and the report comment if any."""

    group: int
    status: IshStatus
    reason: str
    comment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {"group": self.group, "status": self.status, "reason": self.reason, "comment": self.comment}


def _positive_number(name: str, value: object) -> float:
    """Counts and ratios are positive and finite; anything else is an input error, said plainly."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x) or x <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return x


def ish_group(ratio: float, copies: float) -> int:
    """ASCO/CAP 2018 dual-probe group (1-5) from HER2/CEP17 ratio and average HER2 copies per cell."""
    r = _positive_number("ratio (HER2/CEP17)", ratio)
    c = _positive_number("copies (average HER2 signals per cell)", copies)
    if r >= RATIO_CUTOFF:
        return 1 if c >= COPIES_LOW else 2
    if c >= COPIES_HIGH:
        return 3
    return 4 if c >= COPIES_LOW else 5


def _check_ihc(ihc: str | None) -> str | None:
    if ihc is None:
        return None
    if not isinstance(ihc, str) or ihc.strip() not in CELL_CLASSES:
        raise ValueError(f"ihc must be one of {', '.join(CELL_CLASSES)} (or omitted), got {ihc!r}")
    return ihc.strip()


def ish_result(
    ratio: float,
    copies: float,
    ihc: str | None = None,
    recount_same_group: bool | None = None,
) -> IshResult:
    """Final HER2 status from dual-probe ISH, with concurrent IHC and the blinded recount where needed.

    ``recount_same_group``: for IHC 2+ in groups 2-4, whether the additional blinded observer's count
    fell in the same group (True), a different one (False), or has not been done (None). It is
    ignored where the guideline needs no recount.
    """
    group = ish_group(ratio, copies)
    ihc = _check_ihc(ihc)
    if recount_same_group is not None:
        if not isinstance(recount_same_group, (bool, np.bool_)):
            raise ValueError(f"recount_same_group must be True, False or None, got {recount_same_group!r}")
        recount_same_group = bool(recount_same_group)
    head = f"ISH group {group} ({GROUP_DEFINITIONS[group]})"

    if group == 1:
        return IshResult(group, "positive", f"{head}: HER2 positive.")
    if group == 5:
        return IshResult(group, "negative", f"{head}: HER2 negative.")

    if ihc is None:
        return IshResult(
            group,
            "pending",
            f"{head}: concurrent IHC review required; the work-up of groups 2-4 is decided by IHC "
            "on the same tissue.",
        )
    with_ihc = f"{head} with concurrent IHC {ihc}"
    if ihc == "3+":
        return IshResult(group, "positive", f"{with_ihc}: HER2 positive.")
    if ihc in ("0", "1+"):
        return IshResult(group, "negative", f"{with_ihc}: HER2 negative.", GROUP_COMMENTS[group])

    # IHC 2+: an additional observer, blinded to the earlier ISH result, recounts at least 20 cells
    # including the area of IHC 2+ staining.
    if recount_same_group is None:
        return IshResult(
            group,
            "pending",
            f"{with_ihc}: recount needed: an additional observer, blinded to the earlier ISH result, "
            "counts at least 20 cells including the area of IHC 2+ staining.",
        )
    if not recount_same_group:
        return IshResult(
            group,
            "pending",
            f"{with_ihc}: the blinded recount fell in a different ISH group; reinterpret using the "
            "recount's ratio and copy number (adjudicate per internal procedures).",
        )
    recounted = f"{with_ihc}, and the blinded recount by an additional observer is also group {group}"
    if group == 3:
        return IshResult(group, "positive", f"{recounted}: HER2 positive.")
    return IshResult(group, "negative", f"{recounted}: HER2 negative.", GROUP_COMMENTS[group])
