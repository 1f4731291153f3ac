"""Issue 14, criterion 1, on crops of the four real cores: the CNN detector (her2slide-cells-v2,
what ``--segmenter cnn`` runs) finds the same tumour cells with and without DAB
(her2slide.evaluation.stain_invariance; whole cores: scripts/evaluate_stain_invariance.py).

Each core's crop is its 1024 x 1024 px window (256 µm) of highest mean optical density, a fixed
rule; the stained cores lose their DAB (taken out against the core's glass), the 0 core gains
synthetic membranes. QC tile checks are off: this is about detection, not about which blocks QC
measures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from her2slide.evaluation.stain_invariance import CORE_MPP, compare_core, comparison_settings, densest_window
from her2slide.run.engine import make_segmenter

CORES = ("0_9b0f64d1", "1_154ae963", "2_0123a214", "2_726fa489")
#: The crop of the 2+ core 0123a214 holds no glass, so its white point is its palest tissue
#: (her2slide.stain.white_point), which is stained: taking the DAB out brightens the white point and
#: with it every haematoxylin amount the detector sees. her2slide-cells-v2 keeps F1 0.84 and
#: x1.22 here (v1 0.57, classical 0.71): better, not the target. docs/evaluation.md.
NOT_YET = pytest.mark.xfail(strict=False, raises=AssertionError,
                            reason="0123a214 crop: a no-glass white point read from stained tissue (issue 14)")
CROP_PX = 1024


@pytest.fixture(scope="module")
def cnn_detector():
    settings = comparison_settings(segmenter="cnn", tile_checks=False)
    return settings, make_segmenter(settings)


@pytest.mark.parametrize("stem", [pytest.param(c, marks=NOT_YET) if c == "2_0123a214" else c for c in CORES])
def test_same_cells_with_and_without_dab(shared_data: Path, cnn_detector, stem: str) -> None:
    settings, segmenter = cnn_detector
    core = next((shared_data / "her2-ihc-oesophagus-tma").glob(f"{stem}*.jpg"))
    row = compare_core(core, settings, segmenter, crop_px=CROP_PX)
    assert "refused" not in row, row
    assert row["cells_original"] > 0, row
    assert row["same_cell_f1"] >= 0.95, row
    assert abs(row["count_ratio"] - 1.0) <= 0.10, row


def test_densest_window_is_the_darkest_square() -> None:
    thumb = np.full((40, 60, 3), 240, np.uint8)
    thumb[10:30, 20:40] = 200  # pale tissue
    thumb[12:20, 31:39] = 120  # its densest part
    assert densest_window(thumb, 8.0, 8 * 8.0) == (31, 12)
    assert CORE_MPP == 0.25
