"""`her2slide view`: tiles, cell layer, clicks, sign-off, and what the server refuses.

The browser tests drive Debian's headless Chromium with selenium and skip with a reason when
it is not installed (.ci/run installs it).
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import signal
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from her2slide.cli.main import build_parser, main
from her2slide.errors import ExitStatus, InputError
from her2slide.outputs.cells_table import outline_points, outline_radii
from her2slide.outputs.result_folder import lock_path
from her2slide.slide import open_slide
from her2slide.viewer.cell_index import CellIndex
from her2slide.viewer.headless import open_viewer, wait_for
from her2slide.viewer.server import ViewerServer
from viewer_fixtures import EVIL_NAME, EVIL_ROI_CLASS, EVIL_TITLE, chromium_driver, scored_slide

EVIL_REVIEWER = '<img src=x onerror="window.pwned=3">Dr Q'


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scored_slide(tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def cells(result: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(result / "cells.parquet", columns=["x", "y", "cell_class"])
    return {"x": table.column("x").to_numpy(), "y": table.column("y").to_numpy(),
            "cell_class": np.asarray(table.column("cell_class").to_pylist())}


@pytest.fixture()
def server(result: Path) -> Iterator[ViewerServer]:
    with ViewerServer(result, port=0) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from chromium_driver(tmp_path_factory.mktemp("chromium-profile"))


def count_in(cells: dict[str, np.ndarray], box: list[float]) -> int:
    x, y = cells["x"], cells["y"]
    return int(((x >= box[0]) & (x < box[2]) & (y >= box[1]) & (y < box[3])).sum())


def get(server: ViewerServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A raw request: the path goes out exactly as written (no client-side normalising of ``..``)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def post(server: ViewerServer, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


# ---------------------------------------------------------------- index and outlines


def test_outline_radii_give_back_the_outline() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 5000, 50), rng.uniform(0, 5000, 50)
    angle = -np.pi + (np.arange(16) + 0.5) * 2 * np.pi / 16
    radius = rng.uniform(8, 40, (50, 16))
    outline = np.stack([x[:, None] + radius * np.cos(angle), y[:, None] + radius * np.sin(angle)], axis=-1)
    assert np.abs(outline_points(x, y, outline_radii(outline, x, y)) - outline).max() <= 1 / 32


def test_index_queries_equal_brute_force() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    x, y = rng.uniform(-100, 30_000, n), rng.uniform(0, 20_000, n)
    codes = rng.integers(0, 4, n)
    radii = np.full((n, 16), 6.0, np.float32)
    index = CellIndex(x, y, codes, radii, bin_px=700)
    for _ in range(30):
        x0, y0 = rng.uniform(-2000, 30_000), rng.uniform(-2000, 20_000)
        box = [x0, y0, x0 + rng.uniform(1, 6000), y0 + rng.uniform(1, 6000)]
        inside = (x >= box[0]) & (x < box[2]) & (y >= box[1]) & (y < box[3])
        assert index.count(*box) == inside.sum()
        found = index.query(*box)
        assert found.in_box == inside.sum() and set(np.flatnonzero(inside)) <= set(found.rows.tolist())
        counts = index.class_counts(*box)
        assert list(counts.values()) == np.bincount(codes[inside], minlength=4).tolist()
    for row in rng.integers(0, n, 20):
        hit = index.cell_at(x[row] + 2.0, y[row] - 1.0)
        assert hit is not None and np.hypot(x[hit] - x[row] - 2.0, y[hit] - y[row] + 1.0) <= np.hypot(2.0, 1.0)
    assert index.cell_at(-5000.0, -5000.0) is None


# ---------------------------------------------------------------- server, no browser


def test_binds_this_computer_only_by_default(result: Path) -> None:
    args = build_parser().parse_args(["view", str(result)])
    assert args.host == "127.0.0.1"
    with ViewerServer(result, port=0) as running:
        assert running.socket.getsockname()[0] == "127.0.0.1"
        assert running.url.startswith("http://127.0.0.1:")


def test_tiles_are_the_slides_pixels(server: ViewerServer, result: Path) -> None:
    status, body = get(server, "/slide.dzi")
    assert status == 200
    image = ET.fromstring(body)
    size = image.find("{*}Size")
    width, height = int(size.get("Width")), int(size.get("Height"))
    top = int(np.ceil(np.log2(max(width, height))))
    reader = open_slide(json.loads((result / "report.json").read_text())["provenance"]["input"])
    assert (width, height) == reader.dimensions and image.get("Format") == "png"
    for col, row in ((0, 0), (1, 1), (2, 1)):
        status, png = get(server, f"/slide_files/{top}/{col}_{row}.png")
        tile = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        x0, y0 = col * 254 - (col > 0), row * 254 - (row > 0)
        assert status == 200
        assert np.array_equal(tile, reader.read_region(x0, y0, 0, tile.shape[1], tile.shape[0]))
    status, png = get(server, "/slide_files/0/0_0.png")
    assert status == 200 and Image.open(io.BytesIO(png)).size == (1, 1)
    assert get(server, f"/slide_files/{top + 1}/0_0.png")[0] == 404
    assert get(server, f"/slide_files/{top}/999_0.png")[0] == 404


def test_cell_route_counts_the_cells_of_a_box(server: ViewerServer, cells: dict[str, np.ndarray]) -> None:
    box = [300.0, 250.5, 1400.0, 1100.0]
    status, body = get(server, "/api/cells?x0={}&y0={}&x1={}&y1={}".format(*box))
    in_box, sent, rays = struct.unpack("<III", body[:12])
    assert status == 200 and in_box == count_in(cells, box) > 0 and sent >= in_box and rays == 16
    assert len(body) == 12 + sent * (4 + 4 + 4 + 4 * rays + 1)
    assert get(server, "/api/cells?x0=5&y0=5&x1=1&y1=9")[0] == 400
    assert get(server, "/api/cells?x0=nan&y0=5&x1=1&y1=9")[0] == 400


@pytest.mark.parametrize("path", [
    "/static/../report.json", "/static/%2e%2e/report.json", "/static/..%2freport.json",
    "/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/static/openseadragon/../../../signoff.py",
    "/slide_files/../report.json", "/slide_files/..%2f..%2freport.json", "/slide_files/0/..%2f0_0.png",
    "/api/maps/..%2f..%2freport.json", "/api/maps/../cells.parquet", "/api/maps/..", "/api/cell/-1",
    "/api/cell/99999999", "/report.json", "/cells.parquet", "//etc/passwd", "/api/roi/../../report.json",
])
def test_routes_refuse_paths_outside(server: ViewerServer, path: str) -> None:
    status, body = get(server, path)
    assert status in (400, 404, 405), (path, status)
    assert b'"score"' not in body and b"root:" not in body and b"PAR1" not in body


def test_pages_come_with_a_strict_policy_and_other_hosts_are_refused(server: ViewerServer) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request("GET", "/")
    response = connection.getresponse()
    policy = response.getheader("Content-Security-Policy")
    assert response.status == 200 and "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and response.getheader("X-Content-Type-Options") == "nosniff"
    # a page on another site that rebinds its name to 127.0.0.1 still sends its own Host header
    assert get(server, "/api/info", headers={"Host": "attacker.example"})[0] == 400


def test_signoff_route_refuses_forgeries_and_never_touches_the_report(server: ViewerServer, result: Path) -> None:
    report = (result / "report.json").read_bytes()
    before = {p.name for p in result.iterdir()}
    body = json.dumps({"reviewer": "Dr X", "accept": True}).encode()
    assert post(server, "/api/signoff", body, {"Content-Type": "text/plain"})[0] == 415
    assert post(server, "/api/signoff", body, {"Content-Type": "application/json",
                                                "Origin": "http://attacker.example"})[0] == 403
    hostile = json.dumps({"reviewer": "Dr X", "score": "2+", "path": "report.json", "folder": "..",
                          "report": {"score": "0"}, "note": "../../report.json"}).encode()
    status, answer = post(server, "/api/signoff", hostile, {"Content-Type": "application/json"})
    assert status == 200 and json.loads(answer)["history"][-1]["score"] == "2+"
    assert post(server, "/api/signoff", b"[1]", {"Content-Type": "application/json"})[0] == 400
    assert post(server, "/api/signoff", json.dumps({"reviewer": "", "accept": True}).encode(),
                {"Content-Type": "application/json"})[0] == 400
    assert (result / "report.json").read_bytes() == report
    assert {p.name for p in result.iterdir()} - before == {"signoff.json"}  # no temporary left, nothing else
    assert not lock_path(result).exists()  # the result folder's lock, taken by each sign-off, is released
    (result / "signoff.json").unlink()


def test_a_changed_or_missing_slide_is_refused(result: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    original = Path(json.loads((result / "report.json").read_text())["provenance"]["input"])
    changed = tmp_path / "moved.svs"
    shutil.copy(original, changed)
    with open(changed, "r+b") as handle:
        handle.seek(-10, 2)
        handle.write(b"0123456789")
    with pytest.raises(InputError, match="not the slide that was scored"):
        ViewerServer(result, slide=changed, port=0)
    assert main(["view", str(result), "--slide", str(tmp_path / "gone.svs"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("her2slide: ") and "slide not found; give its current location with --slide" in err
    assert len(err.splitlines()) == 1
    moved = tmp_path / "moved-intact.svs"
    shutil.copy(original, moved)
    ViewerServer(result, slide=moved, port=0).socket.close()  # the same bytes elsewhere are accepted


@pytest.mark.parametrize("sig, status, line", [(signal.SIGINT, ExitStatus.INTERRUPTED, "her2slide: interrupted"),
                                               (signal.SIGTERM, ExitStatus.TERMINATED, "her2slide: terminated")])
def test_ctrl_c_or_sigterm_stops_the_viewer_like_every_command(result: Path, sig: signal.Signals, status: int,
                                                                line: str) -> None:
    run = subprocess.Popen([sys.executable, "-m", "her2slide", "view", str(result), "--port", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout is not None and "open http://127.0.0.1:" in run.stdout.readline()
    run.send_signal(sig)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == status
    assert stderr.strip().splitlines() == [line]  # one line: no traceback, no server log


# ---------------------------------------------------------------- headless Chromium


def console(driver: Any) -> list[dict[str, Any]]:
    return driver.get_log("browser")


def test_harness_sees_console_errors(browser: Any) -> None:
    """Control: a script error must reach the log, or 'no console errors' proves nothing."""
    browser.get("data:text/html,<p>x</p><script>notDefined();</script>")
    assert any("notDefined" in entry["message"] for entry in console(browser))


def test_viewer_draws_the_cells_in_view_and_a_click_finds_its_cell(browser: Any, server: ViewerServer,
                                                                   cells: dict[str, np.ndarray]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    console(browser)  # start from an empty log
    stats = open_viewer(browser, server.url)
    assert stats["cellsInView"] == count_in(cells, stats["box"]) > 0
    assert stats["cellsDrawn"] >= stats["cellsInView"]

    target = int(np.argsort(cells["x"])[len(cells["x"]) // 2])
    x, y = cells["x"][target], cells["y"][target]
    done = stats["cellLayerDone"]
    browser.execute_script("her2view.showBox(arguments[0])", [x - 200, y - 150, x + 200, y + 150])
    wait_for(browser, f"return her2view.stats.cellLayerDone > {done}")
    stats = browser.execute_script("return her2view.stats")
    assert stats["cellsInView"] == count_in(cells, stats["box"]) < len(cells["x"])

    point = browser.execute_script("return her2view.imageToScreen(arguments[0], arguments[1])", x, y)
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(round(point["x"]), round(point["y"])).click()
    actions.perform()
    ActionChains(browser).reset_actions()
    row = wait_for(browser, "return document.getElementById('cell-info').dataset.row")
    assert int(row) == target
    text = browser.find_element("id", "cell-info").text
    assert f"class {cells['cell_class'][target]}" in text and "completeness" in text
    assert "local score" in browser.find_element("id", "region-info").text
    assert console(browser) == []
    browser.get("about:blank")


def test_signoff_round_trip_survives_a_restart_and_nothing_is_markup(browser: Any, result: Path) -> None:
    from selenium.webdriver.support.ui import Select

    report = (result / "report.json").read_bytes()
    console(browser)
    with ViewerServer(result, port=0) as running:
        open_viewer(browser, running.url)
        browser.find_element("css selector", "input[name=decision][value=amend]").click()
        Select(browser.find_element("id", "signoff-score")).select_by_value("2+")
        browser.find_element("id", "signoff-note").send_keys("weaker than 3+ at 40x <b>really</b>")
        browser.find_element("id", "signoff-reviewer").send_keys(EVIL_REVIEWER)
        browser.find_element("id", "signoff-submit").click()
        wait_for(browser, "return document.getElementById('signoff-state').textContent.includes('Amended')")
        assert console(browser) == []
        browser.get("about:blank")  # leave before the server stops, so no request of the page fails
    entries = json.loads((result / "signoff.json").read_text())["entries"]
    assert [(e["reviewer"], e["score"], e["decision"]) for e in entries] == [(EVIL_REVIEWER, "2+", "amended")]
    assert (result / "report.json").read_bytes() == report

    with ViewerServer(result, port=0) as restarted:
        open_viewer(browser, restarted.url)
        state = wait_for(browser, "return document.getElementById('signoff-state').textContent")
        assert "Amended: HER2 2+ (equivocal)" in state and EVIL_REVIEWER in state
        page_text = browser.execute_script("return document.body.textContent")
        for literal in (EVIL_NAME + ".svs", EVIL_TITLE, EVIL_ROI_CLASS, EVIL_REVIEWER, "<b>really</b>"):
            assert literal in page_text, literal
        assert browser.execute_script("return window.pwned") is None
        assert browser.execute_script(
            "return document.querySelectorAll('img[src=\"x\"], #pwned-roi').length") == 0
        assert browser.title == f"HER2 review: {EVIL_NAME}.svs"
        assert console(browser) == []
        browser.get("about:blank")
    (result / "signoff.json").unlink()


FLAGGED_QC = {"verdict": "pass", "flags": ["few_tumour_cells", "no_glass"], "failed": [], "reasons": [],
              "warnings": ["288 tumour cells scored (fewer than 300): check on the image that they represent the tumour",
                           "no glass in the image: <b>check</b> the background by eye"]}


@pytest.fixture(scope="module")
def flagged(result: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scored slide's result with QC flags in its report (as issue 18's verdict writes them)."""
    folder = tmp_path_factory.mktemp("flagged") / result.name
    shutil.copytree(result, folder)
    report = json.loads((folder / "report.json").read_text())
    (folder / "report.json").write_text(json.dumps({**report, "qc": {**report["qc"], **FLAGGED_QC}}))
    return folder


def test_the_viewer_shows_what_qc_asks_the_pathologist_to_check(browser: Any, flagged: Path, result: Path) -> None:
    console(browser)
    for folder, checks in ((flagged, FLAGGED_QC["warnings"]), (result, [])):
        with ViewerServer(folder, port=0) as running:
            status, body = get(running, "/api/info")
            assert status == 200 and json.loads(body)["report"]["qc_checks"] == checks
            open_viewer(browser, running.url)
            shown = browser.execute_script(
                "return Array.from(document.querySelectorAll('#reasons li.check')).map(li => li.textContent)")
            assert shown == [f"QC flag: {check}" for check in checks]
            assert console(browser) == []
            browser.get("about:blank")


def test_review_page_of_the_scored_slide_has_a_gallery_and_escapes_the_slide(result: Path) -> None:
    text = (result / "review.html").read_text(encoding="utf-8")
    assert text.count('<figure class="cell">') >= 12 and text.count("<polygon points=") >= 12
    assert "the class that made the score" in text and "Borderline at membrane DAB 0.55 OD" in text
    assert EVIL_NAME not in text and "focal &lt;img src=x onerror=&quot;window.pwned=1&quot;&gt; &amp; co" in text


def test_a_result_without_outlines_is_refused_in_one_line(result: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    old = tmp_path / "old"
    shutil.copytree(result, old)
    table = pq.read_table(old / "cells.parquet")
    pq.write_table(table.drop_columns(["outline_radius_px"]), old / "cells.parquet")
    assert main(["view", str(old), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "scored by an earlier version; score the slide again" in err


def test_plain_images_are_tiled_through_the_same_reader(tmp_path: Path) -> None:
    from her2slide.viewer.slide_tiles import SlideTiles

    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "core.png")
    tiles = SlideTiles(open_slide(tmp_path / "core.png", mpp=0.25))
    top = tiles.level_count - 1
    tile = np.asarray(Image.open(io.BytesIO(tiles.tile_png(top, 1, 2))).convert("RGB"))
    assert np.array_equal(tile, pixels[2 * 254 - 1:2 * 254 - 1 + tile.shape[0], 253:253 + tile.shape[1]])
    overview = np.asarray(Image.open(io.BytesIO(tiles.tile_png(top - 3, 0, 0))).convert("RGB"))
    assert overview.shape == (88, 113, 3)  # 700 x 900 halved three times, rounding up
    assert tiles.tile_png(top, 9, 0) is None and tiles.tile_png(top + 1, 0, 0) is None


def test_result_keeps_the_excluded_blocks_and_the_roi(result: Path) -> None:
    report = json.loads((result / "report.json").read_text())
    blocks = pq.read_table(result / "qc_excluded.parquet").to_pydict()
    per_reason: dict[str, float] = {}
    for reason, area in zip(blocks["reason"], blocks["area_um2"]):
        per_reason[reason] = per_reason.get(reason, 0.0) + area / 1e6
    assert per_reason and all(x1 > x0 for x0, x1 in zip(blocks["x0"], blocks["x1"]))
    for reason, area_mm2 in report["qc"]["excluded"].items():
        assert per_reason.get(reason, 0.0) == pytest.approx(area_mm2, abs=1e-4)
    roi = json.loads((result / "roi.geojson").read_text())
    assert [f["properties"]["role"] for f in roi["features"]] == ["include", "exclude"]
    assert EVIL_ROI_CLASS in report["roi"]["classes"]
