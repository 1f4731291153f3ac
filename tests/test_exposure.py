"""Nothing exposed that was not asked for (issue 16, class 5): a batch's Dask cluster listens on
this machine only, CSV cells never run as spreadsheet formulas (slide names, reviewers' names).
(Result folders follow the umask: tests/test_result_folder.py.)"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from her2slide.cli.batch import dask_client
from her2slide.config import Settings
from her2slide.outputs.result_folder import staged_result
from her2slide.outputs.signoff import sign_off
from her2slide.run.batch import run_batch
from her2slide.run.batch_jobs import SlideJob
from her2slide.run.batch_summary import spreadsheet_safe
from her2slide.run.pipeline import SlideOutcome

LOOPBACK = {"127.0.0.1", "::1"}


def listening_addresses() -> set[str]:
    """Addresses this process and its children listen on."""
    me = psutil.Process()
    return {c.laddr.ip for p in [me, *me.children(recursive=True)]
            for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


@pytest.mark.parametrize("dashboard", ["127.0.0.1:0", None])  # the default, and --dashboard off
def test_a_local_cluster_and_its_dashboard_listen_on_this_machine_only(dashboard: str | None) -> None:
    with dask_client(workers=1, gpus=None, scheduler=None, dashboard=dashboard) as client:
        addresses = listening_addresses()
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert client.scheduler_info()["services"]["dashboard"] != 8787  # a free port, never a fixed one
    assert addresses and addresses <= LOOPBACK, addresses


@pytest.mark.parametrize("value, shown", [
    ("=1+1", "'=1+1"), ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("case 1", "case 1"), (-1.5, -1.5), (None, None), (12, 12),
])
def test_spreadsheet_formulas_are_neutralised(value: object, shown: object) -> None:
    assert spreadsheet_safe(value) == shown


@pytest.fixture
def stub_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches here write a fixed HER2 0 report instead of scoring (the summary is under test)."""
    def stub(path: Path, out_root: Path, settings: Settings, **kwargs: object) -> SlideOutcome:
        folder = Path(out_root) / Path(path).stem
        report = {"score": "0", "status": "negative", "category": "HER2-null", "criteria": "breast",
                  "cells": {"total": 1, "percent": {"0": 100.0}}, "qc": {"verdict": "pass", "flags": []}}
        with staged_result(folder, path) as staging:
            (staging / "report.json").write_text(json.dumps(report))
        return SlideOutcome(folder, report)

    monkeypatch.setattr("her2slide.run.pipeline.score_slide_file", stub)
    monkeypatch.setattr("her2slide.run.batch.segmenter_for", lambda settings: None)


def summary_row(out: Path) -> dict[str, str]:
    with open(out / "summary.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    return row


def test_a_slide_named_like_a_formula_is_text_in_summary_csv(tmp_path: Path, stub_scoring: None) -> None:
    slide = tmp_path / "=1+1.svs"
    slide.write_bytes(b"slide")
    run_batch([SlideJob(slide)], tmp_path / "out", Settings())
    row = summary_row(tmp_path / "out")
    assert row["slide"] == "'=1+1" and row["path"] == str(slide) and row["percent_0"] == "100.0"
    assert pq.read_table(tmp_path / "out" / "summary.parquet").column("slide").to_pylist() == ["=1+1"]
    assert os.path.isdir(tmp_path / "out" / "=1+1")


def test_a_reviewer_named_like_a_formula_is_text_in_summary_csv(tmp_path: Path, stub_scoring: None) -> None:
    slide = tmp_path / "case.svs"
    slide.write_bytes(b"slide")
    out = tmp_path / "out"
    run_batch([SlideJob(slide)], out, Settings())
    reviewer = '=HYPERLINK("http://example.invalid","Dr A")'
    sign_off(out / "case", reviewer, accept=True)
    run_batch([SlideJob(slide)], out, Settings())
    row = summary_row(out)
    assert row["signoff_reviewer"] == f"'{reviewer}" and row["signoff_score"] == "0"
    assert pq.read_table(out / "summary.parquet").column("signoff_reviewer").to_pylist() == [reviewer]
