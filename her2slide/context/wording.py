"""Report wording: the ASCO/CAP result and the HER2 expression range, as decision support.

The breast ranges HER2-low (IHC 1+, or 2+ with negative ISH) and HER2-ultralow (IHC 0 with
faint, incomplete membrane staining in <= 10% of tumour cells) are the entry criteria of the
trastuzumab deruxtecan trials (DESTINY-Breast04, -Breast06), not ASCO/CAP result categories:
the 2023 ASCO/CAP update affirmed the 2018 categories and declined to create new ones, while
noting that the IHC 0 versus 1+ distinction has become clinically relevant. The wording says
so, and never tells anyone to treat. Sources: docs/diagnostic_context.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DISCLAIMER", "REFERENCES", "decision_support"]

DISCLAIMER = "Decision support for review by a pathologist; not a treatment recommendation."

REFERENCES: dict[str, str] = {
    "asco_cap_2018": "Wolff AC et al. Human epidermal growth factor receptor 2 testing in breast cancer: ASCO/CAP "
                     "clinical practice guideline focused update. J Clin Oncol 2018;36:2105-2122.",
    "asco_cap_2023": "Wolff AC et al. Human epidermal growth factor receptor 2 testing in breast cancer: ASCO-College "
                     "of American Pathologists guideline update. J Clin Oncol 2023;41:3867-3872; "
                     "Arch Pathol Lab Med 2023;147:993-1000.",
    "destiny_breast04": "Modi S et al. Trastuzumab deruxtecan in previously treated HER2-low advanced breast cancer. "
                        "N Engl J Med 2022;387:9-20.",
    "destiny_breast06": "Bardia A et al. Trastuzumab deruxtecan after endocrine therapy in metastatic breast cancer "
                        "(DESTINY-Breast06). N Engl J Med 2024;391:2110-2122.",
    "fda_2025": "US FDA approval summary: trastuzumab deruxtecan for HR-positive, HER2-low (IHC 1+ or 2+/ISH-) or "
                "HER2-ultralow (IHC 0 with membrane staining) metastatic breast cancer. J Clin Oncol 2025, "
                "doi:10.1200/JCO-25-00812.",
    "gastric_2016": "Bartley AN et al. HER2 testing and clinical decision making in gastroesophageal adenocarcinoma: "
                    "guideline from CAP, ASCP and ASCO. Arch Pathol Lab Med 2016;140:1345-1363.",
    "hofmann_2008": "Hofmann M et al. Assessment of a HER2 scoring system for gastric cancer: results from a "
                    "validation study. Histopathology 2008;52:797-805.",
    "ruschoff_2010": "Rüschoff J et al. HER2 diagnostics in gastric cancer: guideline validation and development of "
                     "standardized immunohistochemical testing. Virchows Arch 2010;457:299-307.",
}

_BREAST_RULES = "ASCO/CAP 2018 breast criteria, affirmed 2023"
_GASTRIC_RULES = "gastric/gastro-oesophageal criteria (Hofmann 2008, Rüschoff 2010; CAP/ASCP/ASCO 2016)"
_STATUS = {"0": "HER2-negative", "1+": "HER2-negative", "2+": "equivocal", "3+": "HER2-positive"}
_REFLEX_ISH = "Reflex in situ hybridisation (ISH) is required: on the same specimen, or a new test on another specimen."
_LOW_BOUNDARY = ("ASCO/CAP 2023 did not adopt HER2-low or HER2-ultralow as result categories, but the IHC 0 versus "
                 "1+ boundary is now clinically relevant: borderline cases merit review at high power, "
                 "with the measured percentages in this report.")

# (score, breast category) -> (expression range, statements); category matters only for IHC 0.
_BREAST: dict[tuple[str, str | None], tuple[str | None, list[str]]] = {
    ("3+", None): ("HER2-positive", []),
    ("2+", None): ("pending ISH", [
        _REFLEX_ISH,
        "HER2-low if ISH is negative (not amplified); HER2-positive if ISH is positive (amplified).",
    ]),
    ("1+", None): ("HER2-low", [
        "In the HER2-low range (IHC 1+, or IHC 2+ with negative ISH): the expression range in which trastuzumab "
        "deruxtecan was studied (DESTINY-Breast04; DESTINY-Breast06 for hormone-receptor-positive disease).",
        _LOW_BOUNDARY,
    ]),
    ("0", "HER2-ultralow"): ("HER2-ultralow", [
        "Faint, incomplete membrane staining in no more than 10% of tumour cells (IHC 0 with membrane staining): "
        "the HER2-ultralow range studied in DESTINY-Breast06 (hormone-receptor-positive metastatic disease).",
        _LOW_BOUNDARY,
    ]),
    ("0", "HER2-null"): ("HER2-null", [
        "No membrane staining detected (IHC 0 without membrane staining, HER2-null): outside the HER2-low and "
        "HER2-ultralow ranges.",
        _LOW_BOUNDARY,
    ]),
    ("0", None): (None, [
        "Whether any membrane staining is present (HER2-ultralow) or none (HER2-null) is not recorded in this result.",
        _LOW_BOUNDARY,
    ]),
}

_GASTRIC: dict[str, list[str]] = {
    "3+": [],
    "2+": [_REFLEX_ISH, "HER2-positive if ISH is positive (amplified); HER2-negative if ISH is negative."],
    "1+": [],
    "0": [],
}


def decision_support(report: dict[str, Any]) -> dict[str, Any]:
    """Wording for a slide result (keys ``score``, ``criteria``, and ``category`` for breast IHC 0).

    Returns ``result`` (the ASCO/CAP or gastric result in one line, None when not scored),
    ``expression_range`` (breast: HER2-positive, pending ISH, HER2-low, HER2-ultralow, HER2-null;
    None otherwise), ``reflex_ish``, ``statements``, ``disclaimer`` and ``references``.
    Raises ValueError for a score or criteria it does not know.
    """
    score, criteria = report.get("score"), report.get("criteria")
    if score is None:
        why = report.get("reason") or report.get("error")
        text = "No HER2 result: the slide was not scored" + (f" ({why})." if why else ".")
        return _wording(None, None, [text], [])
    if score not in _STATUS:
        raise ValueError(f"unknown HER2 IHC score {score!r}; expected one of {', '.join(_STATUS)}")
    if criteria == "breast":
        category = report.get("category") if score == "0" and report.get("category") in ("HER2-ultralow", "HER2-null") else None
        expression, statements = _BREAST[(score, category)]
        refs = ["asco_cap_2018", "asco_cap_2023"]
        if score != "3+":
            refs += ["destiny_breast04", "destiny_breast06", "fda_2025"]
        return _wording(f"HER2 IHC {score}: {_STATUS[score]} ({_BREAST_RULES}).", expression, statements, refs)
    if criteria in ("gastric-resection", "gastric-biopsy"):
        statements = _GASTRIC[score] + ["HER2-low and HER2-ultralow are defined for breast cancer; not assessed here."]
        return _wording(f"HER2 IHC {score}: {_STATUS[score]} ({_GASTRIC_RULES}).", None, statements,
                        ["hofmann_2008", "ruschoff_2010", "gastric_2016"])
    raise ValueError(f"unknown scoring criteria {criteria!r}; expected breast, gastric-resection or gastric-biopsy")


def _wording(result: str | None, expression: str | None, statements: list[str], refs: list[str]) -> dict[str, Any]:
    return {
        "result": result,
        "expression_range": expression,
        "reflex_ish": _REFLEX_ISH in statements,
        "statements": list(statements),
        "disclaimer": DISCLAIMER,
        "references": [REFERENCES[key] for key in refs],
    }
