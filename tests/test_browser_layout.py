"""Nothing clipped at 1440x900 (issue 20, item 18): `streamlit run` over a lab of finished runs with
real-length names and tags, in Chromium. On the Runs page (a run selected, its buttons shown), the
Run page (the stability-gap table) and the Compare page (a grouped comparison and the Pareto
frontier), no table, chart or button is wider than its container, and no column or label the issue
named is cut: the runs' created column and tag chips, the gap table's note column, the metrics
table's group column, the Pareto title, "Relaunch with changes"."""

import re

import pytest
from playwright.sync_api import expect

from engine.runs.manager import run_in_process
from store import Store
from tests.conftest import small_config
from tests.test_browser import ARTIFACTS, no_exception, page, pytestmark, streamlit_server  # noqa: F401
from tests.test_browser_run import LAYOUT_JS, check_layout

VIEWPORT = {"width": 1440, "height": 900}
TAGS = ["baseline", "split-digits", "seed-sweep"]

# Each table (a canvas grid): its box and its container's, its scroll and client widths (wider
# content scrolls, its right columns hidden), and each column's width read from the header's
# border lines in the canvas, with the width its cells' text needs in the grid's font (a list
# column's cells are chips: each its text plus padding, side by side).
TABLES_JS = """shown => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"]')].map(d => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.right]; };
  const scroller = d.querySelector('.dvn-scroller');
  const canvas = d.querySelector('canvas[data-testid="data-grid-canvas"]');
  const ctx = canvas.getContext('2d'), ratio = canvas.width / canvas.getBoundingClientRect().width;
  const row = ctx.getImageData(0, Math.round(17 * ratio), canvas.width, 1).data;
  const edges = [0];
  for (let x = 0; x < canvas.width; x++) {  // the header's column borders (--gdg-border-color)
    const [r, g, b] = [row[4 * x], row[4 * x + 1], row[4 * x + 2]];
    if (Math.abs(r - 232) < 6 && Math.abs(g - 229) < 6 && Math.abs(b - 226) < 6 && x / ratio - edges.at(-1) > 3)
      edges.push(x / ratio);
  }
  edges.push(canvas.width / ratio);
  const heads = [...d.querySelectorAll('th[role="columnheader"]')].map(t => t.textContent);
  const widths = edges.slice(1).map((e, i) => e - edges[i]).slice(-heads.length);  // past a selection column
  const font = getComputedStyle(d.querySelector('.stDataFrameGlideDataEditor')).getPropertyValue('--gdg-font-family');
  const measure = text => { ctx.save(); ctx.font = '400 14px ' + font; const w = ctx.measureText(text).width; ctx.restore(); return w; };
  const columns = heads.map((head, i) => {
    const cells = [...d.querySelectorAll(`td[aria-colindex="${i + 1}"]`)].map(c => c.textContent.slice(0, shown[head]));
    return {head, width: widths[i], text: Math.max(0, ...cells.map(t => measure(t) + 16)),
            chips: Math.max(0, ...cells.map(t => t ? t.split(',').reduce((s, c) => s + measure(c) + 16 + 4, 12) : 0))};
  });
  return {box: box(d), container: box(d.closest('[data-testid="stElementContainer"]')),
          scroll: scroller.scrollWidth, client: scroller.clientWidth, columns};
})"""

# Each button in the main column: its box, its column's, and whether its label is cut (its text
# element is wider inside than out: an ellipsis).
BUTTONS_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stButton"] button')].map(b => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.right]; };
  return {label: b.innerText, box: box(b), column: box(b.closest('[data-testid="stColumn"]') || b.closest('[data-testid="stMainBlockContainer"]')),
          cut: [b, ...b.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1)};
})"""


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """Six finished runs of three strategies (two seeds each: groups of two), with names and tags as
    long as the Launch form gives them."""
    folder = tmp_path_factory.mktemp("browser_layout")
    db = folder / "lab.duckdb"
    store = Store(db, serve=False)
    # naive keeps its weights after each task: the Pareto chart can draw its trade-off curve beside it
    ids = [run_in_process(store, small_config(strategy, n_tasks=3, seed=seed, eval={"every": 2},
                                              train={"weights": "every"} if strategy == "naive" else {},
                                              name=f"{strategy} digits class-IL, seed {seed}"))
           for strategy in ("naive", "replay", "ewc") for seed in (0, 1)]
    store.annotate_run(ids[0], tags=TAGS)
    store.close()
    with streamlit_server(db, folder / "streamlit.log") as url:
        yield url, ids


def open_page(page, url: str, path: str, ready: str) -> None:
    page.set_viewport_size(VIEWPORT)
    page.goto(url + path, wait_until="networkidle")
    page.locator(ready).first.wait_for(timeout=90_000)
    page.wait_for_timeout(2500)  # the grid sizes its columns, the charts draw
    no_exception(page)


def check_tables(page, cut: dict[str, str], shown: dict[str, int] | None = None) -> list:
    """No table wider than its container or scrolling sideways; each column of ``cut`` (header: "text" or
    "chips") as wide as its cells need; ``shown``: the characters a column shows of its cells' values
    (a time to the minute). Returns the tables measured."""
    tables = page.evaluate(TABLES_JS, shown or {})
    assert tables, "no table drawn"
    for table in tables:
        heads = [c["head"] for c in table["columns"]]
        assert table["box"][1] <= table["container"][1] + 1 and table["box"][0] >= table["container"][0] - 1, heads
        assert table["scroll"] <= table["client"] + 1, f"{heads}: {table['scroll']} px of columns in {table['client']} px"
        for column in table["columns"]:
            if column["head"] in cut:
                need = column[cut[column["head"]]]
                assert column["width"] + 1 >= need, f"{column['head']} is {column['width']:.0f} px, its cells need {need:.0f}"
    return tables


def check_buttons(page, labels: list[str]) -> None:
    buttons = {b["label"].split("\n")[-1].strip(): b for b in page.evaluate(BUTTONS_JS)}  # past an icon's name
    for label in labels:
        assert label in buttons, f"no button {label!r} among {list(buttons)}"
    for label, b in buttons.items():
        assert not b["cut"], f"the label {label!r} is cut"
        assert b["box"][1] <= b["column"][1] + 1, f"{label!r} is wider than its column: {b['box']} in {b['column']}"


def test_the_runs_page_at_1440_shows_every_column_and_the_selected_runs_buttons_whole(lab_server, page):
    url, ids = lab_server
    open_page(page, url, "/runs", '[data-testid="stDataFrame"]')
    tables = check_tables(page, {"created": "text", "tags": "text", "name": "text"},
                          shown={"created": len("2026-12-07 08:46")})
    assert {"created", "tags"} <= {c["head"] for c in tables[0]["columns"]}
    # select the first row (its checkbox at the grid's left) to show the run's buttons
    grid = page.locator('[data-testid="stDataFrame"] canvas[data-testid="data-grid-canvas"]').first
    corner = grid.bounding_box()
    page.mouse.click(corner["x"] + 16, corner["y"] + 35 + 17)
    page.get_by_role("button", name="Relaunch with changes").wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "runs_page_1440.png"), full_page=True)
    check_buttons(page, ["Open", "Relaunch with changes", "Delete"])


def test_the_run_page_at_1440_shows_the_gap_table_whole_and_formatted(lab_server, page):
    url, ids = lab_server
    open_page(page, url, f"/run?run={ids[1]}", '[data-testid="stDataFrame"]')
    page.screenshot(path=str(ARTIFACTS / "run_page_1440.png"), full_page=True)
    check_layout(page.evaluate(LAYOUT_JS), 3)
    check_tables(page, {"note": "text", "switch at step": "text", "old task": "text"})


def test_the_compare_page_at_1440_fits_its_charts_and_tables_to_the_column(lab_server, page):
    url, ids = lab_server
    open_page(page, url, "/compare", '[data-testid="stVegaLiteChart"] svg')
    page.get_by_role("heading", name="Pareto frontier").wait_for(timeout=60_000)
    page.locator('[data-testid="stVegaLiteChart"]').nth(1).locator("svg").wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "compare_page_1440.png"), full_page=True)
    layout = page.evaluate(LAYOUT_JS)
    assert len(layout["charts"]) == 2  # the grouped panels and the frontier
    check_layout(layout, None)  # each chart fills its container, none spills out, no text cut by "…"
    frontier = layout["charts"][1]
    assert any(t.startswith("Runs: ") and "on the frontier of 6" in t for t in frontier["texts"]), frontier["texts"]
    tables = check_tables(page, {"group": "text"})
    assert any({"group", "acc"} <= {c["head"] for c in t["columns"]} for t in tables)


def test_the_pareto_chart_with_a_trade_off_curve_fits_the_column_at_1440(lab_server, page):
    url, ids = lab_server
    open_page(page, url, "/compare", '[data-testid="stVegaLiteChart"] svg')
    page.get_by_role("heading", name="Pareto frontier").wait_for(timeout=60_000)
    picker = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Trade-off curves")
    picker.locator("input").click()
    page.keyboard.type(f"run {ids[0]}")  # the options filtered to it (the list is drawn lazily)
    page.get_by_role("option", name=f"run {ids[0]}").wait_for(timeout=60_000)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    frontier = page.locator('[data-testid="stVegaLiteChart"]').nth(1)
    expect(frontier.get_by_text(re.compile("^Trade-off models"))).to_be_visible(timeout=120_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "compare_tradeoffs_1440.png"), full_page=True)
    layout = page.evaluate(LAYOUT_JS)
    check_layout(layout, None)  # both panels inside the column, no title or label cut by "..."
    texts = layout["charts"][1]["texts"]
    assert any(t.startswith("Runs: ") for t in texts) and any(t.startswith("Trade-off models") for t in texts), texts
    # every title and label lies inside the chart's drawing (Vega draws a long title past its edge uncut)
    boxes = frontier.evaluate("""c => { const s = c.querySelector('svg').getBoundingClientRect();
      return [...c.querySelectorAll('svg text')].filter(t => t.textContent).map(t => {
        const r = t.getBoundingClientRect(); return [t.textContent, r.left - s.left, s.right - r.right]; }); }""")
    outside = [(t, round(a), round(b)) for t, a, b in boxes if a < -3 or b < -3]  # a rotated title's box: 2 px
    assert not outside, outside
    no_exception(page)
