"""Settings: the shipped YAML equals the code defaults; bad configs fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from her2slide.config import Settings, load_settings
from her2slide.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def test_default_yaml_is_the_exact_dump_of_the_defaults() -> None:
    shipped = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    assert shipped == Settings().dump()
    assert load_settings(REPO / "configs" / "default.yaml") == Settings()


def test_override_and_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("scoring:\n  intense_od: 0.7\n")
    settings = load_settings(path, criteria="gastric-resection")
    assert settings.scoring.intense_od == 0.7
    assert settings.scoring.faint_od == Settings().scoring.faint_od
    assert settings.criteria.value == "gastric-resection"


@pytest.mark.parametrize("text, reason", [
    ("scoring:\n  intense_odd: 0.7\n", "invalid setting scoring.intense_odd"),
    ("scoring:\n  intense_od: 0.05\n", "invalid setting scoring"),
    ("- a\n- b\n", "config must be a mapping"),
    ("scoring: [unclosed\n", "not valid YAML"),
])
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=reason) as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_missing_config_file() -> None:
    with pytest.raises(InputError, match="config file not found"):
        load_settings("/nonexistent/her2slide.yaml")
