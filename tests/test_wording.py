"""Report wording for every score x criteria (x breast IHC 0 category): decision support, never an instruction."""

from __future__ import annotations

import pytest

from her2slide.context.wording import DISCLAIMER, decision_support

GASTRIC = ("gastric-resection", "gastric-biopsy")

# score, criteria, category -> result prefix, expression range, reflex ISH, phrases the statements must hold
TABLE = [
    ("3+", "breast", "HER2-positive", "HER2 IHC 3+: HER2-positive", "HER2-positive", False, []),
    ("2+", "breast", "equivocal", "HER2 IHC 2+: equivocal", "pending ISH", True,
     ["Reflex in situ hybridisation", "HER2-low if ISH is negative", "HER2-positive if ISH is positive"]),
    ("1+", "breast", "HER2-low", "HER2 IHC 1+: HER2-negative", "HER2-low", False,
     ["HER2-low range (IHC 1+, or IHC 2+ with negative ISH)", "trastuzumab deruxtecan", "did not adopt"]),
    ("0", "breast", "HER2-ultralow", "HER2 IHC 0: HER2-negative", "HER2-ultralow", False,
     ["no more than 10% of tumour cells", "DESTINY-Breast06", "did not adopt"]),
    ("0", "breast", "HER2-null", "HER2 IHC 0: HER2-negative", "HER2-null", False,
     ["No membrane staining", "outside the HER2-low and HER2-ultralow ranges"]),
    ("0", "breast", None, "HER2 IHC 0: HER2-negative", None, False, ["is not recorded"]),
    *[(score, crit, cat, f"HER2 IHC {score}: {status}", None, score == "2+",
       ["defined for breast cancer"] + (["Reflex in situ hybridisation", "HER2-positive if ISH is positive"] if score == "2+" else []))
      for crit in GASTRIC
      for score, status, cat in (("3+", "HER2-positive", "HER2-positive"), ("2+", "equivocal", "equivocal"),
                                 ("1+", "HER2-negative", "HER2-negative"), ("0", "HER2-negative", "HER2-negative"))],
]


@pytest.mark.parametrize("score, criteria, category, result, expression, reflex, phrases", TABLE)
def test_every_score_and_criteria(score: str, criteria: str, category: str | None, result: str,
                                  expression: str | None, reflex: bool, phrases: list[str]) -> None:
    out = decision_support({"score": score, "criteria": criteria, "category": category, "status": "ignored"})
    assert out["result"].startswith(result)
    assert ("ASCO/CAP 2018 breast criteria, affirmed 2023" in out["result"]) == (criteria == "breast")
    assert out["expression_range"] == expression
    assert out["reflex_ish"] is reflex
    text = " ".join(out["statements"])
    for phrase in phrases:
        assert phrase in text
    assert out["disclaimer"] == DISCLAIMER
    assert out["references"]


def test_table_covers_every_combination() -> None:
    covered = {(s, c) for s, c, *_ in TABLE}
    assert covered == {(s, c) for s in ("0", "1+", "2+", "3+") for c in ("breast", *GASTRIC)}


@pytest.mark.parametrize("score", ["2+", "1+", "0"])
def test_breast_low_range_cites_the_trials(score: str) -> None:
    refs = " ".join(decision_support({"score": score, "criteria": "breast", "category": "HER2-ultralow"})["references"])
    assert "Modi S" in refs and "Bardia A" in refs and "J Clin Oncol 2023;41:3867-3872" in refs


def test_2plus_is_never_called_her2_low_outright() -> None:
    """2+ is HER2-low only once ISH is negative: the range is 'pending ISH', not 'HER2-low'."""
    out = decision_support({"score": "2+", "criteria": "breast", "category": "equivocal"})
    assert out["expression_range"] == "pending ISH"
    assert not any(s.startswith("In the HER2-low range") for s in out["statements"])


def test_category_ignored_when_score_is_not_0() -> None:
    """A 1+ slide is HER2-low whatever a stale category field says."""
    assert decision_support({"score": "1+", "criteria": "breast", "category": "HER2-null"})["expression_range"] == "HER2-low"


@pytest.mark.parametrize("report, phrase", [
    ({"score": None, "criteria": "breast"}, "No HER2 result: the slide was not scored."),
    ({"score": None, "reason": "no invasive tumour cells found"}, "not scored (no invasive tumour cells found)."),
    ({"error": "file not found"}, "not scored (file not found)."),
])
def test_not_scored_gives_no_result(report: dict, phrase: str) -> None:
    out = decision_support(report)
    assert out["result"] is None and out["expression_range"] is None and out["reflex_ish"] is False
    assert len(out["statements"]) == 1 and phrase in out["statements"][0]
    assert out["disclaimer"] == DISCLAIMER


def test_never_a_treatment_instruction() -> None:
    forbidden = ("should receive", "should be treated", "recommend treatment", "is eligible", "give ", "prescribe")
    for score in ("0", "1+", "2+", "3+", None):
        for criteria in ("breast", *GASTRIC):
            for category in ("HER2-null", "HER2-ultralow", None):
                out = decision_support({"score": score, "criteria": criteria, "category": category})
                text = " ".join([out["result"] or "", *out["statements"]]).lower()
                assert not any(word in text for word in forbidden)
                assert "not a treatment recommendation" in out["disclaimer"]


@pytest.mark.parametrize("report, match", [
    ({"score": "4+", "criteria": "breast"}, "unknown HER2 IHC score"),
    ({"score": "1+", "criteria": "lung"}, "unknown scoring criteria"),
])
def test_unknown_values_are_errors(report: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decision_support(report)
