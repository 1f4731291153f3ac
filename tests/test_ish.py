"""Dual-probe ISH groups and the concurrent-IHC work-up (ASCO/CAP 2018), and the ``ish`` subcommand."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from her2slide.cli.ish import add_parser, run
from her2slide.scoring import IshResult, ish_group, ish_result
from her2slide.scoring.ish import GROUP_COMMENTS


@pytest.mark.parametrize(
    "ratio, copies, group",
    [
        pytest.param(2.0, 4.0, 1, id="ratio-2.0-copies-4.0"),
        pytest.param(5.0, 12.0, 1, id="amplified"),
        pytest.param(2.0, 6.0, 1, id="ratio-2.0-copies-6.0"),
        pytest.param(2.0, 3.99, 2, id="ratio-2.0-copies-3.99"),
        pytest.param(3.0, 3.0, 2, id="high-ratio-low-copies"),
        pytest.param(1.99, 6.0, 3, id="ratio-1.99-copies-6.0"),
        pytest.param(1.0, 9.0, 3, id="low-ratio-high-copies"),
        pytest.param(1.99, 5.99, 4, id="ratio-1.99-copies-5.99"),
        pytest.param(1.99, 4.0, 4, id="ratio-1.99-copies-4.0"),
        pytest.param(1.99, 3.99, 5, id="ratio-1.99-copies-3.99"),
        pytest.param(1.1, 2.1, 5, id="normal"),
        pytest.param(2, 4, 1, id="ints"),
        pytest.param(np.float32(2.0), np.float64(4.0), 1, id="numpy-scalars"),
    ],
)
def test_ish_group(ratio: float, copies: float, group: int) -> None:
    assert ish_group(ratio, copies) == group


# One (ratio, copies) per group; expected status of every group x IHC x recount combination.
GROUP_INPUT = {1: (2.5, 5.0), 2: (2.2, 3.5), 3: (1.5, 7.0), 4: (1.5, 5.0), 5: (1.2, 2.5)}


def _expected(group: int, ihc: str | None, recount: bool | None) -> tuple[str, str | None, str | None]:
    """(status, comment, phrase in reason) as the guideline's work-up says."""
    if group == 1:
        return "positive", None, "HER2 positive"
    if group == 5:
        return "negative", None, "HER2 negative"
    if ihc is None:
        return "pending", None, "concurrent IHC review required"
    if ihc == "3+":
        return "positive", None, "with concurrent IHC 3+: HER2 positive"
    if ihc in ("0", "1+"):
        return "negative", GROUP_COMMENTS[group], f"with concurrent IHC {ihc}: HER2 negative"
    if recount is None:
        return "pending", None, "recount needed"
    if recount is False:
        return "pending", None, "reinterpret using the recount's ratio and copy number"
    if group == 3:
        return "positive", None, "also group 3: HER2 positive"
    return "negative", GROUP_COMMENTS[group], f"also group {group}: HER2 negative"


CASES = [
    pytest.param(g, ihc, rc, id=f"group{g}-ihc{ihc or 'none'}-recount{rc}")
    for g in GROUP_INPUT
    for ihc in (None, "0", "1+", "2+", "3+")
    for rc in ((None, True, False) if ihc == "2+" else (None,))
]


@pytest.mark.parametrize("group, ihc, recount", CASES)
def test_ish_work_up(group: int, ihc: str | None, recount: bool | None) -> None:
    status, comment, phrase = _expected(group, ihc, recount)
    res = ish_result(*GROUP_INPUT[group], ihc=ihc, recount_same_group=recount)
    assert isinstance(res, IshResult)
    assert (res.group, res.status, res.comment) == (group, status, comment)
    assert phrase in res.reason
    assert res.reason.startswith(f"ISH group {group} (")
    assert res.to_dict() == {"group": group, "status": status, "reason": res.reason, "comment": comment}


def test_group_comments_follow_the_guideline() -> None:
    assert GROUP_COMMENTS[2].startswith(
        "Evidence is limited on the efficacy of HER2-targeted therapy in the small subset of cases with a "
        "HER2/CEP17 ratio ≥2.0 and an average HER2 copy number <4.0 per cell"
    )
    assert "insufficient data" in GROUP_COMMENTS[3]
    assert "without additional testing on the same specimen" in GROUP_COMMENTS[4]


def test_recount_is_ignored_where_not_needed() -> None:
    assert ish_result(2.5, 5.0, "0", recount_same_group=False).status == "positive"
    assert ish_result(1.5, 5.0, "1+", recount_same_group=False).status == "negative"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"ratio": 0.0, "copies": 4.0}, "ratio", id="ratio-zero"),
        pytest.param({"ratio": -1.0, "copies": 4.0}, "ratio", id="ratio-negative"),
        pytest.param({"ratio": float("nan"), "copies": 4.0}, "ratio", id="ratio-nan"),
        pytest.param({"ratio": 2.0, "copies": float("inf")}, "copies", id="copies-inf"),
        pytest.param({"ratio": 2.0, "copies": 0.0}, "copies", id="copies-zero"),
        pytest.param({"ratio": "2.0", "copies": 4.0}, "ratio", id="ratio-string"),
        pytest.param({"ratio": True, "copies": 4.0}, "ratio", id="ratio-bool"),
        pytest.param({"ratio": 2.0, "copies": None}, "copies", id="copies-none"),
        pytest.param({"ratio": 1.5, "copies": 5.0, "ihc": "2"}, "ihc", id="ihc-bad-label"),
        pytest.param({"ratio": 1.5, "copies": 5.0, "ihc": 2}, "ihc", id="ihc-int"),
        pytest.param(
            {"ratio": 1.5, "copies": 5.0, "ihc": "2+", "recount_same_group": "yes"}, "recount", id="recount-str"
        ),
    ],
)
def test_bad_input_raises_clear_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ish_result(**kwargs)


def test_ish_group_validates_too() -> None:
    with pytest.raises(ValueError, match="positive finite"):
        ish_group(2.0, -4.0)


# ---------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="her2slide")
    add_parser(parser.add_subparsers(dest="command"))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    assert args.func is run
    return args.func(args)


def test_cli_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["ish", "--ratio", "2.2", "--copies", "3.5", "--ihc", "1+"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ISH group 2: HER2 negative"
    assert out[1].startswith("ISH group 2 (HER2/CEP17 ratio ≥2.0")
    assert out[2].startswith("Comment: Evidence is limited")


@pytest.mark.parametrize(
    "flag, recount, status",
    [
        pytest.param(["--recount-same-group"], True, "positive", id="same"),
        pytest.param(["--no-recount-same-group"], False, "pending", id="different"),
        pytest.param([], None, "pending", id="not-done"),
    ],
)
def test_cli_json_recount(
    flag: list[str], recount: bool | None, status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["ish", "--ratio", "1.5", "--copies", "7", "--ihc", "2+", "--json", *flag]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["group"], data["status"]) == (3, status)
    assert data["input"] == {"ratio": 1.5, "copies": 7.0, "ihc": "2+", "recount_same_group": recount}


def test_cli_bad_number_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["ish", "--ratio", "-1", "--copies", "4"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("her2slide ish: ratio")


def test_cli_rejects_unknown_ihc() -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["ish", "--ratio", "2", "--copies", "4", "--ihc", "4+"])
    assert exc.value.code == 2
