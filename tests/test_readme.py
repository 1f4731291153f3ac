"""The README's quoted demo output is what `her2slide demo` prints now (issue 16: stale demo numbers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from her2slide.cli.demo import run_demo

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _quoted_demo() -> str:
    """The code block that follows the README's "`her2slide demo` prints" paragraph."""
    text = README.read_text(encoding="utf-8")
    after = text[text.index("`her2slide demo` prints"):]
    return after.split("```\n", 2)[1]


def test_the_readme_quotes_what_the_demo_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    """Same lines word for word; each number equal up to a cell or two, so float rounding in the
    network on another CPU does not fail it, while a changed model or QC that moves a class by
    more than 0.3 points (or the cell count by more than 0.3%) does."""
    monkeypatch.chdir(tmp_path)
    assert run_demo(Path("her2slide-demo")) == 0
    printed, quoted = capsys.readouterr().out, _quoted_demo()
    assert NUMBER.sub("#", printed) == NUMBER.sub("#", quoted)
    for now, readme in zip(NUMBER.findall(printed), NUMBER.findall(quoted), strict=True):
        assert float(now) == pytest.approx(float(readme), rel=0.003, abs=0.3), (now, readme, printed)
