"""The demo output quoted in the docs is what `her2slide demo` prints now (issue 16: stale demo
numbers): the README's demo block and docs/diagnostic_context.md's ngs-dilution runs on the demo slide."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from her2slide.cli.demo import run_demo
from her2slide.cli.main import main

DOCS = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The folder the demo ran in, and what it printed."""
    folder = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(printed):
            assert run_demo(Path("her2slide-demo")) == 0
    finally:
        os.chdir(cwd)
    return folder, printed.getvalue()


def _same_up_to_rounding(printed: str, quoted: str) -> None:
    """Same lines word for word; each number equal up to a cell or two, so float rounding in the
    network on another CPU does not fail it, while a changed model or QC that moves a class by
    more than 0.3 points (or the cell count by more than 0.3%) does."""
    assert NUMBER.sub("#", printed) == NUMBER.sub("#", quoted)
    for now, doc in zip(NUMBER.findall(printed), NUMBER.findall(quoted), strict=True):
        assert float(now) == pytest.approx(float(doc), rel=0.003, abs=0.3), (now, doc, printed)


def test_the_readme_quotes_what_the_demo_prints(demo: tuple[Path, str]) -> None:
    text = (DOCS / "README.md").read_text(encoding="utf-8")
    quoted = text[text.index("`her2slide demo` prints"):].split("```\n", 2)[1]
    _same_up_to_rounding(demo[1], quoted)


def test_the_ngs_dilution_docs_quote_what_it_prints_on_the_demo(demo: tuple[Path, str], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    text = (DOCS / "docs" / "diagnostic_context.md").read_text(encoding="utf-8")
    runs = re.findall(r"^\$ (her2slide ngs-dilution --slide her2slide-demo/\S+ .*)\n((?:[^$`\n].*\n)+)", text, re.M)
    assert len(runs) == 2
    (tmp_path / "focus.json").write_text("[[[1600, 1300], [2450, 1300], [2450, 2150], [1600, 2150]]]")
    result = demo[0] / "her2slide-demo" / "results" / "demo-focal"
    for command, quoted in runs:
        argv = command.split()[1:]
        argv[argv.index("--slide") + 1] = str(result)
        if "--roi" in argv:
            argv[argv.index("--roi") + 1] = str(tmp_path / "focus.json")
        capsys.readouterr()
        assert main(argv) == 0
        printed = capsys.readouterr().out.replace(str(tmp_path / "focus.json"), "focus.json")
        _same_up_to_rounding(printed, quoted)
