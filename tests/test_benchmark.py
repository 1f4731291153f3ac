"""The benchmark's small mode keeps working: every field there, numbers positive, the floor below the pipeline.

No timing thresholds: how fast is for docs/benchmarks.md, not for a test on a shared machine.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "benchmark.py"
_spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)

POSITIVE = ("tissue_mm2", "tiles", "tissue_mp", "read_box_mp", "cells", "model_load_s", "end_to_end_s",
            "end_to_end_mp_per_s", "s_per_tissue_mp", "warm_s", "warm_mp_per_s", "warm_s_per_tissue_mp",
            "warm_ratio_to_read_floor", "read_at_mpp_s", "read_region_s", "read_floor_mp_per_s",
            "ratio_to_read_floor", "ratio_to_raw_read", "cpu_s", "peak_rss_mb", "worker_peak_rss_mb", "process_s")


def test_small_mode_reports_every_field(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--small", "--device", "cpu", "--slides", str(tmp_path / "slides"),
                           "--json", str(out)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    for name in POSITIVE:
        assert row[name] > 0, name
    assert set(row["stage_s"]) == set(benchmark.STAGES)
    assert all(seconds >= 0 for seconds in row["stage_s"].values())
    assert row["stage_s"]["read_and_segment"] > 0
    assert row["read_box_mp"] >= row["tissue_mp"]  # the read boxes cover the tissue, plus margins
    assert row["ratio_to_read_floor"] >= 1 and row["ratio_to_raw_read"] >= 1
    assert row["process_s"] >= row["end_to_end_s"] + row["warm_s"]
    assert row["end_to_end_s"] >= row["model_load_s"]
    assert row["stage_s"]["tile_stream"] <= row["warm_s"]
    assert "| read_and_segment |" in done.stdout  # the printed table
