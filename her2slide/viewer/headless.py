"""Headless Chromium driven by selenium: the viewer's browser tests, its benchmark and its screenshots.

Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``)
with the ``selenium`` package (the ``dev`` extra). The flags keep Chromium off the network
(this machine has none) and give it a fresh profile each time.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def missing() -> str | None:
    """Why a headless Chromium cannot be driven here, or None when it can."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        return "chromium and chromium-driver not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install selenium)"
    return None


@contextmanager
def chromium(profile: Path, window: tuple[int, int] = (1400, 900)) -> Iterator[Any]:
    """A selenium WebDriver on headless Chromium that keeps the page's console log."""
    reason = missing()
    if reason is not None:
        raise RuntimeError(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, script: str, timeout: float = 60.0) -> Any:
    """Poll ``script`` in the page until it returns something true; that value."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for: {script}")


def open_viewer(driver: Any, url: str) -> dict[str, Any]:
    """Load the viewer and wait for its first tile and first cell layer; its timing stats."""
    driver.get(url)
    wait_for(driver, "return window.her2view && her2view.stats.cellLayerDone > 0 && her2view.stats.tilesLoaded > 0")
    return driver.execute_script("return her2view.stats")
