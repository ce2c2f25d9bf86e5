"""A hosted lab through its real entry point (`streamlit run` with an [auth] section, the real OIDC login
of tests/test_login_browser.py, Debian's Chromium), started from a shell whose umask is 022:
- a viewer gets none of Streamlit's own export buttons on tables and charts (Download as CSV, Download
  as PNG, Copy Vega-Lite spec, Show data), not even with the page's style rule removed as one could in
  the browser's developer tools, while an admin and a member still have them (a member on their own runs only);
- the lab's files are its user's alone (0600, folders 0700): those it creates, and the database that
  was there, 0644, before it started."""

import os
import re
import stat

import pytest
from playwright.sync_api import expect

from store import Store
from tests.test_browser import no_exception, pytestmark  # noqa: F401
from tests.test_login_browser import A, B, C, D, hosted_lab, logged_in, sessions  # noqa: F401 - fixtures
from tests.test_report_browser import browser  # noqa: F401 - the fixture

EXPORTS = re.compile(r"^(Download as|Copy Vega-Lite spec|Show data)")
TOOLBAR_BUTTON = '[data-testid="stElementToolbar"] button'


@pytest.fixture(scope="module")
def lab(tmp_path_factory, sessions):
    """A hosted lab started with umask 022 over a database made before it (0644 then), and one finished
    run of the member A's (the demo run); yields (url, folder, run id)."""
    folder = tmp_path_factory.mktemp("hosted-files")
    before = os.umask(0o022)  # the server inherits it, as from an operator's shell
    try:
        Store(folder / "lab.duckdb").close()
        assert stat.S_IMODE((folder / "lab.duckdb").stat().st_mode) == 0o644  # what umask 022 gives
        with hosted_lab(folder) as url:
            page = logged_in(sessions, url, A, "member")
            page.get_by_role("button", name="Launch the demo run").click(timeout=60_000)
            page.wait_for_url(re.compile(r"/run\?run=\d+"), timeout=60_000)
            run_id = int(page.url.rsplit("=", 1)[1])
            expect(page.get_by_text(re.compile(r"^finished ·"))).to_be_visible(timeout=180_000)
            yield url, folder, run_id
    finally:
        os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_hosted_lab_keeps_its_files_private_whatever_the_umask(lab):
    url, folder, run_id = lab
    db = folder / "lab.duckdb"
    artifacts = db.with_name(db.name + ".artifacts")
    weights = [p for p in artifacts.rglob("*") if p.is_file()]
    assert weights, "the demo run kept no weights"  # replay-demo.yaml keeps them: there is something to check
    entries = [db, *db.parent.glob("lab.duckdb.*")]
    entries += [p for top in entries if top.is_dir() for p in top.rglob("*")]
    modes = {str(p.relative_to(folder)): oct(mode(p)) for p in entries}
    wrong = {name: m for name, m in modes.items()
             if int(m, 8) != (0o700 if (folder / name).is_dir() else 0o600)}
    assert not wrong, f"not private: {wrong} (all: {modes})"
    assert (artifacts / f"run-{run_id}").is_dir()
    log = (folder / "streamlit.log").read_text()
    assert "files are created 0600 and folders 0700" in log, log[-2000:]  # the start says so
    assert "1 existing file(s) and folder(s) of lab.duckdb made private" in log  # the database made before


def toolbar_buttons(page, element) -> list[str]:
    """The names of the toolbar buttons shown while the pointer is over ``element`` (a table or chart)."""
    element.scroll_into_view_if_needed()
    box = element.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(700)
    container = element.locator("xpath=ancestor::*[@data-testid='stElementContainer'][1]")
    return [b.get_attribute("aria-label") for b in container.locator(TOOLBAR_BUTTON).all() if b.is_visible()]


def pages_elements(page, url: str, run_id: int):
    """(where, element) for the run page's charts and table and the Compare page's chart and table."""
    page.goto(f"{url}/run?run={run_id}", wait_until="networkidle")
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    expect(charts).to_have_count(2, timeout=60_000)  # the panels and the accuracy matrix
    tables = page.locator('[data-testid="stDataFrame"]')
    yield "run panels", charts.nth(0)
    yield "run matrix", charts.nth(1)
    for i in range(tables.count()):
        yield f"run table {i}", tables.nth(i)
    page.goto(f"{url}/compare", wait_until="networkidle")
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    chart.wait_for(timeout=60_000)
    yield "compare panels", chart
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for(timeout=60_000)
    yield "compare table", table


def test_a_viewer_gets_no_export_buttons_on_tables_and_charts(lab, sessions):
    url, _, run_id = lab
    page = logged_in(sessions, url, D, "viewer")
    seen = {where: toolbar_buttons(page, element) for where, element in pages_elements(page, url, run_id)}
    assert not any(seen.values()), seen
    assert page.locator(".vega-embed details, .vega-actions").count() == 0  # Vega-Embed's own menu is off
    no_exception(page)

    # what the browser's developer tools could do: remove the page's style rule; the table's toolbar
    # then shows, but without its CSV button (the server turned data export off for this session)
    page.evaluate("""() => document.querySelectorAll('style').forEach(
        s => { if (s.textContent.includes('stElementToolbar')) s.remove(); })""")
    table = page.locator('[data-testid="stDataFrame"]').first  # Compare's metrics
    buttons = toolbar_buttons(page, table)
    assert "Search" in buttons and "Download as CSV" not in buttons, buttons
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    assert "Show data" in toolbar_buttons(page, chart)
    page.get_by_role("button", name=re.compile("^Show data")).first.click()  # the chart's data as a table
    data_view = page.locator('[data-testid="stDataFrame"]').first
    expect(data_view).to_be_visible()
    buttons = toolbar_buttons(page, data_view)
    assert "Show chart" in buttons and "Download as CSV" not in buttons, buttons


@pytest.mark.parametrize("email", [C, A])
def test_who_may_export_keeps_the_export_buttons(lab, sessions, email):
    url, _, run_id = lab
    # the admin logs in here; the member A, whose run it is, logged in to launch it
    page = logged_in(sessions, url, C, "admin") if email == C else sessions(A)
    seen = {where: toolbar_buttons(page, element) for where, element in pages_elements(page, url, run_id)}
    assert any("Download as PNG" in b for b in seen["run panels"]), seen
    assert any("Download as CSV" in b for b in seen["compare table"]), seen
    no_exception(page)


def test_a_member_viewing_another_members_run_gets_no_export_buttons(lab, sessions):
    url, _, run_id = lab
    # B may export their own runs (the session keeps Streamlit's data export on), not A's demo run:
    # the Run page of A's run, and a comparison that holds it, draw no toolbars
    page = logged_in(sessions, url, B, "member")
    seen = {where: toolbar_buttons(page, element) for where, element in pages_elements(page, url, run_id)}
    assert not any(seen.values()), seen
    no_exception(page)
