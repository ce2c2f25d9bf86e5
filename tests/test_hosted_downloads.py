"""A hosted lab's downloads through a real server, a real OIDC login and Chromium: the address of a file an
admin downloaded (Streamlit's ``/media/<id>.<ext>``) is refused to a request with no login and to a
viewer's login, served to the admin's, and each served download is in the audit table."""

import json
import re
import urllib.error
import urllib.request

from playwright.sync_api import expect

from store import Store
from tests.test_browser import pytestmark  # noqa: F401 - skipped where there is no chromium
from tests.test_login_browser import C, D, button, hosted_lab, log_in
from tests.test_report_browser import browser  # noqa: F401 - the fixture


def fetch(url: str, cookies: list[dict] | None = None) -> tuple[int, bytes]:
    """GET ``url`` outside the browser, with these browser cookies (none: a client with no login)."""
    headers = {"Cookie": "; ".join(f"{c['name']}={c['value']}" for c in cookies)} if cookies else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def logged_in_context(browser, url: str, email: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    log_in(page, url, email)
    expect(page.locator('[data-testid="stSidebar"]').get_by_text(email)).to_be_visible()
    return context, page


def test_a_download_address_needs_the_login_and_role_that_may_export(browser, tmp_path):
    with hosted_lab(tmp_path) as url:
        # the viewer logs in first: Streamlit drops a download's file from its store after a later script
        # run (of any session), so the three fetches below come right after the click
        viewer, viewer_page = logged_in_context(browser, url, D)
        viewer_page.close()
        admin, page = logged_in_context(browser, url, C)
        page.get_by_role("button", name="Launch the demo run").click()
        page.wait_for_url(re.compile(r"/run\?run=\d+"))
        run_id = int(page.url.rsplit("=", 1)[1])
        expect(page.get_by_text(re.compile(r"^finished ·"))).to_be_visible(timeout=120_000)
        page.get_by_test_id("stPopoverButton").click()
        with page.expect_download(timeout=60_000) as info:
            button(page, "Summary (JSON)").click()
        assert info.value.failure() is None  # the admin's browser got the file
        with open(info.value.path(), "rb") as f:
            assert "accuracy_matrix" in json.loads(f.read())
        media = info.value.url
        assert re.fullmatch(re.escape(url) + r"/media/\w+\.json", media), media

        status, body = fetch(media)  # anyone who has the address, no login: Streamlit served it (200)
        assert status == 403, (status, body[:200])
        assert b"log in" in body and b"accuracy_matrix" not in body
        status, body = fetch(media, viewer.cookies())
        assert status == 403 and f"{D} (viewer) may not export run {run_id}".encode() in body, (status, body[:300])
        status, body = fetch(media, admin.cookies())
        assert status == 200, (status, body[:300])
        assert "accuracy_matrix" in json.loads(body)
        viewer.close()
        admin.close()

    with Store(tmp_path / "lab.duckdb", read_only=True) as store:  # the server has stopped
        rows = store.sql("SELECT who, role, allowed, detail FROM audit WHERE action = 'export' AND run_id = ? "
                         "ORDER BY id", [run_id])
    # the click that made it; the admin's browser fetching it (twice: Streamlit's front end checks the
    # address, then downloads it) and the admin's cookies again within 30 s, one row; the viewer's refusal
    assert rows == [(C, "admin", True, f"run-{run_id}-summary.json"),
                    (C, "admin", True, f"downloaded run-{run_id}-summary.json"),
                    (D, "viewer", False, "a viewer may only read")]
