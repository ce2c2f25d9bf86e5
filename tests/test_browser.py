"""The lab in a real browser: `streamlit run app.py` on a free port with a temporary database,
driven by Playwright in Debian's headless Chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

# Skipped only outside CI: in CI (.ci/run installs chromium) a missing browser must fail, not pass quietly.
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def goto_when_listening(page, url: str, seconds: int = 60) -> None:
    """``page.goto(url)`` once the server started apart from the test listens (refused until then)."""
    for _ in range(seconds - 1):
        try:
            page.goto(url)
            return
        except Exception:  # noqa: BLE001 - connection refused until it listens
            time.sleep(1)
    page.goto(url)


def launch_from_the_form(page, fields: dict[str, str]) -> int:
    """On the Launch page: type each field's value (by its label), press Launch, and return the id of
    the run whose page opens."""
    for label, value in fields.items():
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        wait_for_the_script(page)
    page.get_by_role("button", name="Launch").last.click()
    page.wait_for_url("**/run?run=*", timeout=120_000)
    return int(page.url.rsplit("=", 1)[1])


def wait_for_the_script(page, timeout: int = 120_000) -> None:
    """Wait until the rerun a widget change started has ended: a click while Streamlit reruns can land on
    an element the rerun replaces, and be lost (seen in CI on a loaded machine)."""
    page.wait_for_timeout(300)  # the change reaches the server, which starts the rerun
    page.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " return app && app.getAttribute('data-test-script-state') === 'notRunning'; }",
        timeout=timeout,
    )


@contextmanager
def streamlit_server(db: Path, log_path: Path, port: int | None = None):
    """`streamlit run app.py` on ``port`` (a free one if None) over the lab file ``db``, its output in
    ``log_path``; yields its URL."""
    port = port or free_port()
    log = open(log_path, "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--", "--db", str(db)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CL_LAB_DB": ""},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.2)
    else:
        log.seek(0)
        raise AssertionError("streamlit did not start:\n" + log.read())
    try:
        yield url
    finally:
        proc.terminate()  # SIGTERM: the lab commits what it received, then stops its workers
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("browser") / "lab.duckdb"
    with streamlit_server(db, db.with_name("streamlit.log")) as url:  # the log beside the file, for tests that read it
        yield url, db


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        yield page
        browser.close()


def no_exception(page) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def test_launch_from_the_form_and_watch_the_run_page_draw(server, page):
    url, db = server
    ARTIFACTS.mkdir(exist_ok=True)
    # nothing the lab's pages load comes from another host (a hosted lab's readers are not sent to
    # Google for icons, and an offline lab has no failed request): checked at the end of the test
    elsewhere: list[str] = []
    def note_elsewhere(request) -> None:
        if not request.url.startswith((url + "/", "data:", "blob:")):
            elsewhere.append(request.url)
    page.on("request", note_elsewhere)
    # a freshly started server's first page, opened by a link to a page (the hard case: Streamlit
    # runs it without app.py), shows the lab's own navigation and no pages/ listing
    page.goto(f"{url}/launch", wait_until="networkidle")
    page.get_by_role("heading", name="Launch a run").wait_for(timeout=60_000)
    links = page.locator('[data-testid="stPageLink"]')
    # the sidebar is drawn apart from the main column: on a loaded machine it can come after the title
    page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').nth(5).wait_for(timeout=60_000)
    assert [links.nth(i).inner_text().split()[-1] for i in range(links.count())] == [
        "Home", "Launch", "Runs", "Run", "Compare", "Metrics"]
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    no_exception(page)
    page.get_by_role("link", name="Home").first.click()
    page.get_by_role("heading", name="CL Lab", level=1).wait_for(timeout=60_000)
    page.get_by_role("link", name="Launch").first.click()
    page.get_by_role("heading", name="Launch a run").wait_for()
    name = page.get_by_label("Run name")
    name.fill("browser-run")
    name.press("Enter")
    tasks = page.get_by_label("Tasks", exact=True)
    tasks.fill("2")
    tasks.press("Enter")
    epochs = page.get_by_label("Epochs per task")
    epochs.fill("2")
    epochs.press("Enter")
    wait_for_the_script(page)
    page.get_by_role("button", name="Launch").last.click()

    page.wait_for_url("**/run?run=*", timeout=120_000)
    page.get_by_text("finished", exact=False).first.wait_for(timeout=120_000)
    page.locator(".vega-embed").first.wait_for(timeout=60_000)
    page.wait_for_timeout(3000)  # let the last full render after the run ended settle
    charts = page.locator(".vega-embed svg, .vega-embed canvas")
    assert charts.count() >= 2  # the synchronized panels and the accuracy matrix
    assert page.get_by_role("heading", name="Run 1: browser-run").count() == 1
    no_exception(page)
    page.screenshot(path=str(ARTIFACTS / "run_page.png"), full_page=True)
    assert page.locator("link[rel='shortcut icon']").get_attribute("href").startswith("data:image/svg+xml")
    page.remove_listener("request", note_elsewhere)
    assert elsewhere == []


def test_clicking_a_frontier_point_opens_its_run(server, page):
    url, db = server  # the run launched by the test above is in the store
    page.goto(f"{url}/compare", wait_until="networkidle")
    page.get_by_role("heading", name="Pareto frontier").wait_for(timeout=60_000)
    points = page.locator('.vega-embed svg path[aria-roledescription="point"]')
    points.first.wait_for(timeout=30_000)
    labels = [points.nth(i).get_attribute("aria-label") for i in range(points.count())]
    target = next(i for i, label in enumerate(labels) if "run: 1;" in label)
    points.nth(target).click(force=True)
    page.wait_for_url("**/run?run=1", timeout=30_000)
    page.get_by_role("heading", name="Run 1: browser-run").wait_for(timeout=30_000)
    no_exception(page)
