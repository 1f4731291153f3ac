"""A pathologist's sign-off of one scored slide: ``signoff.json`` beside ``report.json``.

The algorithm's result (report.json) is never changed. The pathologist's decisions are a
separate, append-only history: each entry says who signed, when, whether they accepted the
algorithm's score or amended it (score, category, free text), which algorithm result they
saw, and the SHA-256 of the report.json they signed, so a sign-off can never be mistaken for
one of a later re-scoring. The file is rewritten whole to a temporary name and renamed into
place, after checking that the history on disk is intact: an entry, once written, is never
dropped or changed. It is written under the result folder's own lock
(her2slide.outputs.result_folder), the one a score holds while it replaces the folder and
carries the history over, so a sign-off and a re-score never lose each other's writes.
"""

from __future__ import annotations

import json
import os
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from her2slide.errors import InputError, read_json_object
from her2slide.outputs.result_folder import SIGNOFF, holding, lock_path
from her2slide.provenance import file_sha256
from her2slide.scoring import CELL_CLASSES

SIGNOFF_FILE = SIGNOFF
REPORT_FILE = "report.json"
FORMAT = "her2slide-signoff/1"
#: Longest reviewer name and note kept (characters); longer input is refused, never cut.
MAX_REVIEWER = 120
MAX_NOTE = 4000
#: How long a sign-off waits for the result folder's lock (s): long enough for another sign-off
#: (milliseconds), far shorter than a re-score, which it names instead.
LOCK_WAIT_S = 10.0

#: Categories a pathologist may give with a score, per criteria family (her2slide.scoring.slide).
_BREAST = {"0": ("HER2-null", "HER2-ultralow"), "1+": ("HER2-low",), "2+": ("equivocal",),
           "3+": ("HER2-positive",)}
_GASTRIC = {"0": ("HER2-negative",), "1+": ("HER2-negative",), "2+": ("equivocal",), "3+": ("HER2-positive",)}
_STATUS = {"0": "negative", "1+": "negative", "2+": "equivocal", "3+": "positive"}

Decision = Literal["accepted", "amended"]


def allowed_categories(criteria: str | None, score: str) -> tuple[str, ...]:
    """The categories that go with ``score`` under ``criteria`` ("breast" or a gastric one)."""
    table = _BREAST if (criteria or "breast") == "breast" else _GASTRIC
    return table[score]


def read_history(folder: Path) -> list[dict[str, Any]]:
    """The sign-off entries of a result folder, oldest first ([] when none)."""
    path = Path(folder) / SIGNOFF_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["entries"]
        if data.get("format") != FORMAT or not isinstance(entries, list):
            raise ValueError("not a her2slide sign-off file")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InputError(path, f"sign-off history cannot be read ({exc}); it is left as it is") from exc
    return entries


def current(folder: Path) -> dict[str, Any] | None:
    """The latest sign-off, with ``"current"``: whether it was made on the report.json now there."""
    entries = read_history(folder)
    if not entries:
        return None
    latest = dict(entries[-1])
    report = Path(folder) / REPORT_FILE
    latest["current"] = report.exists() and latest.get("report_sha256") == file_sha256(report)
    return latest


def sign_off(folder: Path, reviewer: str, *, accept: bool = False, score: str | None = None,
             category: str | None = None, note: str = "", now: datetime | None = None) -> dict[str, Any]:
    """Append one sign-off to ``folder/signoff.json`` and return the entry.

    ``accept``: the algorithm's score and category stand. Otherwise ``score`` ("0".."3+") is
    the pathologist's, with ``category`` (needed only where a score allows two, breast 0:
    HER2-null or HER2-ultralow). Bad input raises :class:`InputError`; nothing is written then.
    """
    folder = Path(folder)
    report_path = folder / REPORT_FILE
    report = _read_report(report_path)
    entry = {
        "time": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "reviewer": _clean_text(reviewer, "reviewer", MAX_REVIEWER, report_path, required=True),
        **_decision(report, accept, score, category, report_path),
        "note": _clean_text(note, "note", MAX_NOTE, report_path, required=False),
        "algorithm": {key: report.get(key) for key in ("score", "status", "category", "criteria")}
                     | {"code_version": (report.get("provenance") or {}).get("code_version")},
        "report_sha256": file_sha256(report_path),
        "input_sha256": (report.get("provenance") or {}).get("input_sha256"),
    }
    resolved = folder.resolve()  # "." (signing inside the folder) has no name of its own
    with holding(lock_path(resolved), folder, f"the sign-off waited {LOCK_WAIT_S:g} s",
                 wait_s=LOCK_WAIT_S, advice="sign off once it has finished"):
        entries = read_history(folder)
        _write_atomic(folder / SIGNOFF_FILE, {"format": FORMAT, "slide": resolved.name, "entries": [*entries, entry]})
    return entry


def _decision(report: dict[str, Any], accept: bool, score: str | None, category: str | None,
              path: Path) -> dict[str, Any]:
    if accept:
        if score is not None or category is not None:
            raise InputError(path, "accept takes the algorithm's score; give either accept or a score, not both")
        algorithm_score = report.get("score")
        return {"decision": "accepted", "score": algorithm_score, "status": report.get("status"),
                "category": report.get("category")}
    if score not in CELL_CLASSES:
        raise InputError(path, f"score must be one of {', '.join(CELL_CLASSES)} (or accept the algorithm's)")
    choices = allowed_categories(report.get("criteria"), score)
    if category is None and len(choices) == 1:
        category = choices[0]
    if category not in choices:
        raise InputError(path, f"a {score} under {report.get('criteria', 'breast')} criteria needs its category: "
                               f"{' or '.join(choices)}")
    return {"decision": "amended" if (score, category) != (report.get("score"), report.get("category"))
            else "accepted", "score": score, "status": _STATUS[score], "category": category}


def _read_report(path: Path) -> dict[str, Any]:
    report = read_json_object(path, "not found: sign off a scored slide's output folder")
    if "score" not in report:
        raise InputError(path, "not a her2slide report")
    return report


def _clean_text(text: str | None, what: str, limit: int, path: Path, *, required: bool) -> str:
    """Text as typed, without control characters (newlines and tabs kept in notes), within ``limit``."""
    keep = "\n\t" if what == "note" else ""
    text = "".join(c for c in (text or "") if c in keep or unicodedata.category(c)[0] != "C").strip()
    if required and not text:
        raise InputError(path, f"a sign-off needs the {what}'s name")
    if len(text) > limit:
        raise InputError(path, f"{what} is {len(text)} characters; at most {limit}")
    return text


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # one writer at a time: the folder's lock is held
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


#: Columns a batch summary gains from each slide's sign-off (her2slide.run.batch_summary).
SUMMARY_COLUMNS = ("signoff_score", "signoff_category", "signoff_reviewer", "signoff_time", "signoff_state")


def summary_columns(folder: Path) -> dict[str, Any]:
    """The latest sign-off for a cohort table. ``signoff_state``: "signed" (on the report now
    there), "earlier-result" (signed before the slide was re-scored), "unreadable", or None."""
    try:
        latest = current(folder)
    except InputError:
        return dict.fromkeys(SUMMARY_COLUMNS) | {"signoff_state": "unreadable"}
    if latest is None:
        return dict.fromkeys(SUMMARY_COLUMNS)
    return {"signoff_score": latest.get("score"), "signoff_category": latest.get("category"),
            "signoff_reviewer": latest.get("reviewer"), "signoff_time": latest.get("time"),
            "signoff_state": "signed" if latest["current"] else "earlier-result"}
