"""A report's HTML in Debian's headless Chromium, opened from file:// with every network request
blocked: every chart draws, the run panels' shared zoom and hover still work, nothing is logged as an
error. Screenshots go to tests/artifacts/."""

import os
from pathlib import Path

import pytest

from engine.report import compare_report_html, run_report_html
from store import Store
from tests.conftest import small_config
from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    from engine.runs.manager import run_in_process

    folder = tmp_path_factory.mktemp("reports")
    with Store(folder / "lab.duckdb") as store:
        replay = run_in_process(store, small_config("replay", name="replay-run", eval={"every": 1}))
        naive = run_in_process(store, small_config("naive", name="naive-run"))
        (folder / "run.html").write_bytes(run_report_html(store, replay))
        (folder / "compare.html").write_bytes(compare_report_html(store, [replay, naive]))
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_offline(browser, path: Path):
    """A page on the file with every request but file: and data: aborted; returns (page, what was
    blocked, the console errors)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    blocked, errors = [], []

    def route(r):
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri(), wait_until="load")
    drawn = page.evaluate("() => Promise.all(window.clLabCharts).then(views => views.length)")
    return page, drawn, blocked, errors


@pytest.mark.parametrize("name", ["run", "compare"])
def test_report_draws_every_chart_offline_with_no_error(reports, browser, name):
    page, drawn, blocked, errors = open_offline(browser, reports / f"{name}.html")
    charts = page.locator("div.chart").count()
    assert charts == 2 and drawn == charts
    assert page.locator("div.chart > .chart-wrapper > svg.marks").count() == charts  # each drew its SVG
    assert page.locator("div.chart svg.marks path, div.chart svg.marks line").count() > 50  # and its marks
    assert blocked == [] and errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"report_{name}.png"), full_page=True)
    page.context.close()


def hover(page, panel: str, x: float, y: float) -> None:
    """Move the pointer onto the panel's pointer layer near (x, y): between the hover rules drawn every
    step, which sit above it."""
    for dx in range(0, 40):
        on = page.evaluate("([x, y]) => document.elementFromPoint(x, y).parentNode.getAttribute('class')", [x + dx, y])
        if f"{panel}_pointer" in on:
            page.mouse.move(x + dx, y, steps=5)
            page.wait_for_timeout(300)
            return
    raise AssertionError(f"no point of the {panel} panel's pointer layer near ({x}, {y})")


def test_run_panels_keep_their_shared_zoom_and_hover(reports, browser):
    page, _, blocked, errors = open_offline(browser, reports / "run.html")
    panels = page.locator("#chart-0 svg.marks")
    panels.scroll_into_view_if_needed()
    box = panels.bounding_box()
    view = "window.clLabCharts[0]"
    full = page.evaluate(f"async () => (await {view}).scale('x').domain()")
    # hover the accuracy panel (the first of the three): the one hover parameter holds its step
    hover(page, "accuracy", box["x"] + 200, box["y"] + 120)
    hovered = page.evaluate(f"async () => (await {view}).data('hover_store')")
    assert len(hovered) == 1 and hovered[0]["values"][0] >= 0
    # hover the loss panel (the third), further right: the same parameter follows it
    hover(page, "loss", box["x"] + 600, box["y"] + box["height"] - 70)
    again = page.evaluate(f"async () => (await {view}).data('hover_store')")
    assert len(again) == 1 and again[0]["values"][0] > hovered[0]["values"][0]
    # a plain wheel over the panels scrolls the page and zooms nothing
    page.mouse.move(box["x"] + 300, box["y"] + 120)
    top = page.evaluate("() => window.scrollY")
    page.mouse.wheel(0, 200)
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.scrollY") > top
    assert page.evaluate(f"async () => (await {view}).scale('x').domain()") == full
    # Shift + wheel on the accuracy panel: the shared x scale zooms, for all three panels
    box = panels.bounding_box()
    page.mouse.move(box["x"] + 300, box["y"] + 120)
    page.keyboard.down("Shift")
    page.mouse.wheel(0, -400)
    page.keyboard.up("Shift")
    page.wait_for_timeout(500)
    zoomed = page.evaluate(f"async () => (await {view}).scale('x').domain()")
    assert zoomed[1] - zoomed[0] < full[1] - full[0]
    assert page.evaluate(f"async () => (await {view}).signal('zoom')")["step"] == zoomed  # the zoom parameter holds it
    assert blocked == [] and errors == []
    page.context.close()
