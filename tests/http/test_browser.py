"""The browser page in a real headless Chromium (Debian's, through its
chromedriver; nothing downloads a browser): upload two files through the
form, see them listed, follow a download link and get the same bytes.

``ZFILE_SCREENSHOT=PATH`` also saves the page's screenshot there
(``docs/http-page.png`` is made so).
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import free_port, start_daemon

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Debian's chromium and chromium-driver are not installed (scripts/test installs them as root)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",  # containers often give /dev/shm 64 MiB, which crashes renderers
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,760",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    # Both paths given, so Selenium Manager has nothing to look up or fetch.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def _put(url: str, data: bytes) -> None:
    request = urllib.request.Request(url, data=data, method="PUT")
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 201


def test_upload_two_files_list_them_and_download_one(browser, tmp_path):
    from selenium.webdriver.common.by import By

    port = free_port()
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--http", f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    try:
        _put(f"{base}/files/datasets/train.bin", os.urandom(3 << 20))
        _put(f"{base}/files/notes.txt", b"what this store holds\n")
        one, two = tmp_path / "report.pdf", tmp_path / "photo.jpg"
        one.write_bytes(os.urandom(1 << 20))
        two.write_bytes(os.urandom(200_000))
        browser.get(f"{base}/")
        assert "zfile" in browser.title
        browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(f"{one}\n{two}")
        browser.find_element(By.CSS_SELECTOR, "#upload button[type=submit]").click()
        deadline = time.monotonic() + 30
        while "photo.jpg" not in browser.page_source and time.monotonic() < deadline:
            time.sleep(0.1)
        names = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#listing tr.file td:first-child")]
        assert {"report.pdf", "photo.jpg", "notes.txt"} <= set(names)
        dirs = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#listing tr.dir a")]
        assert dirs == ["datasets/"]
        if shot := os.environ.get("ZFILE_SCREENSHOT"):
            browser.save_screenshot(shot)
        row = next(
            tr
            for tr in browser.find_elements(By.CSS_SELECTOR, "#listing tr.file")
            if tr.find_element(By.CSS_SELECTOR, "td").text == "report.pdf"
        )
        row.find_element(By.CSS_SELECTOR, "a.download").click()
        got = browser.downloads / "report.pdf"
        deadline = time.monotonic() + 30
        while not (got.exists() and got.stat().st_size == one.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert got.read_bytes() == one.read_bytes()
    finally:
        assert daemon.stop() == 0, daemon.log_text()
