"""A lab's server log stays clean: no Altair type warnings while pages draw, no duckdb "leaked
instance" lines when the server stops in the middle of a live run, and no Deploy button."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


def test_pages_and_a_stop_mid_run_leave_no_warnings_in_the_log(tmp_path):
    from playwright.sync_api import sync_playwright

    port = free_port()
    log_path = tmp_path / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--", "--db", str(tmp_path / "lab.duckdb")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CL_LAB_DB": ""})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url, wait_until="networkidle")
            page.get_by_role("heading", name="CL Lab", level=1).wait_for(timeout=60_000)
            # the toolbar holds no Deploy button (client.toolbarMode = "minimal")
            assert page.get_by_role("button", name="Deploy").count() == 0
            assert page.get_by_text("Deploy", exact=True).count() == 0
            page.get_by_role("button", name="Launch the demo run").click()
            page.wait_for_url("**/run?run=*", timeout=60_000)
            page.locator(".vega-embed").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            # the server stops while the demo trains and the run page refreshes every second
            proc.terminate()
            proc.wait(60)
            browser.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert "leaked" not in text, text[-3000:]
    assert "Warning" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
