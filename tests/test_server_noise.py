"""A lab's server log stays clean: no Altair type warnings while pages draw, no duckdb "leaked
instance" lines when the server stops in the middle of a live run, and no Deploy button."""

import os
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, streamlit_server

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


def test_pages_and_a_stop_mid_run_leave_no_warnings_in_the_log(tmp_path):
    from playwright.sync_api import sync_playwright

    log_path = tmp_path / "streamlit.log"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        with streamlit_server(tmp_path / "lab.duckdb", log_path) as url:
            page.goto(url, wait_until="networkidle")
            page.get_by_role("heading", name="CL Lab", level=1).wait_for(timeout=60_000)
            # the toolbar holds no Deploy button (client.toolbarMode = "minimal")
            assert page.get_by_role("button", name="Deploy").count() == 0
            assert page.get_by_text("Deploy", exact=True).count() == 0
            page.get_by_role("button", name="Launch the demo run").click()
            page.wait_for_url("**/run?run=*", timeout=60_000)
            page.locator(".vega-embed").first.wait_for(timeout=60_000)
            # the server stops now, while the demo trains (a few seconds) and its page refreshes
        browser.close()
    text = log_path.read_text()
    # it stopped on SIGTERM, not killed: the lab closed, and said so on the run it was training
    # (an st.App server prints no "Stopping..." of its own)
    from store import Store

    store = Store(tmp_path / "lab.duckdb", read_only=True)
    try:
        status, error = store.sql("SELECT status, error FROM runs ORDER BY id LIMIT 1")[0]
    finally:
        store.close()
    assert status in ("queued", "finished") or "shut down" in (error or ""), (status, error)  # never left "running"
    assert "leaked" not in text, text[-3000:]
    assert "Warning" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
