"""`her2slide calibrate`: thresholds fitted from controls reproduce the controls' scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from her2slide.cli.main import main
from her2slide.config import Settings, load_settings
from her2slide.run.calibrate import Control, ControlCells, fit_thresholds
from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec


def _cells(score: str, od: float, n: int = 100) -> ControlCells:
    return ControlCells(Control(Path(f"{score}.svs"), score), np.full(n, od), np.ones(n), np.zeros(n, bool),
                        np.zeros((n, 2)))


def test_fit_recovers_thresholds_that_separate_the_controls() -> None:
    measured = [_cells("0", 0.02), _cells("1+", 0.2), _cells("2+", 0.45), _cells("3+", 0.9)]
    # Complete-faint cells are 1+ by default, so every control is homogeneous in its class.
    result = fit_thresholds(measured, Settings(), grid=np.round(np.geomspace(0.04, 1.6, 16), 4))
    assert result.correct == 4
    rules = result.rules
    assert 0.02 < rules.faint_od <= 0.2 < rules.moderate_od <= 0.45 < rules.intense_od <= 0.9
    lo, hi = result.feasible_range["intense_od"]
    assert lo > 0.45 and hi <= 0.9
    assert [row["predicted"] for row in result.per_control] == ["0", "1+", "2+", "3+"]


def test_impossible_controls_are_reported_not_hidden() -> None:
    measured = [_cells("0", 0.02), _cells("1+", 0.2), _cells("2+", 0.5), _cells("3+", 0.5)]  # 2+ and 3+ alike
    result = fit_thresholds(measured, Settings(), grid=np.round(np.geomspace(0.04, 1.6, 16), 4))
    assert result.correct == 3 and result.total == 4


def test_calibrate_command_writes_a_usable_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    controls = []
    for score in ("0", "3+"):
        spec = SlideSpec(name=f"ctl{score.replace('+', 'p')}", pattern="homogeneous", score=score,
                         size_um=(400.0, 400.0), seed=5)
        controls.append(f"{make_synthetic_slide(spec, tmp_path).svs}={score}")
    out = tmp_path / "lab.yaml"
    assert main(["calibrate", *controls, "--out", str(out)]) == 0
    assert "2 of 2 controls reproduced" in capsys.readouterr().out
    fitted = load_settings(out)
    assert fitted.scoring.faint_od < fitted.scoring.moderate_od < fitted.scoring.intense_od
