"""The Runs page through AppTest over a real lab (DuckDB file, run manager, workers): search, filters
and sorting by metric and hyperparameter, renaming, notes and tags, the selection across deletes,
the sweep column and the Cancel sweep button. Runs are written through the store's API (an accuracy
matrix given, so each metric has a known value) or trained for real."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engine.core.limits import limits
from engine.runs.manager import run_in_process
from pages.ui.selection import selected_row, table_key
from store import Store
from engine.annotations import AnnotationError, annotate_run
from store.metrics.summary import summary
from store.queries import search_terms
from store.runs_view import RUN_METRICS, run_metrics, runs_view
from store.schema import SCHEMA_VERSION, migrate, schema_version
from tests.conftest import ROOT, page_lab, small_config
from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, free_port, goto_when_listening

APP = str(ROOT / "app.py")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from page_lab(tmp_path_factory, "runs_page")


def config(name: str, strategy: str = "replay", dataset: str = "digits", lr: float = 0.05) -> dict:
    cfg = small_config(strategy, scenario={"dataset": dataset}).model_dump(mode="json")
    cfg["name"], cfg["train"]["lr"] = name, lr
    return cfg


def add_run(store, name: str, final_row=(0.5, 0.9), *, tag: str, status: str = "finished", sweep_id=None,
            **kw) -> int:
    """A 2-task run with the accuracy matrix [[.1, .1], [.9, .1], final_row], written through the store's
    API as training writes it (boundary evaluations at step 0 and at each task's end)."""
    R = np.array([[0.1, 0.1], [0.9, 0.1], final_row])
    run_id = store.create_run(config(name, **kw), name=name, status="running", total_steps=20, sweep_id=sweep_id)
    rows = [(run_id, 10 * i, j + 1, "boundary_acc", float(R[i, j])) for i in range(3) for j in range(2)]
    for task in (1, 2):
        store.start_task(run_id, task, 10 * (task - 1))
        store.end_task(run_id, task, 10 * task)
    store.add_metrics({k: list(v) for k, v in zip(("run_id", "step", "task", "metric", "value"), zip(*rows))})
    store.flush()
    store.set_status(run_id, status)
    store.annotate_run(run_id, tags=[tag])  # each test finds its own runs by a tag of its own
    return run_id


def page(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    return at


def table(at):
    return at.dataframe[0].value


def select(at, run_id: int) -> None:
    """Click the run's row (what the browser sends: the row's position in the table shown)."""
    ids = table(at)["id"].tolist()
    at.session_state[table_key("runs_table", ids)] = {"selection": {"rows": [ids.index(run_id)]}}
    at.run()
    assert not at.exception


def highlighted_rows(at) -> list[int]:
    """The rows the table is drawn with selected (its widget's state, for the rows it shows)."""
    return at.session_state[table_key("runs_table", table(at)["id"].tolist())]["selection"]["rows"]


def panel(at) -> str | None:
    return next((m.value for m in at.markdown if m.value.startswith("**Run ")), None)


def button(at, label: str):
    return next((b for b in at.button if b.label == label), None)


def test_search_finds_words_in_name_notes_tags_strategy_and_dataset_in_any_case(lab):
    s = lab.store
    a = add_run(s, "alpha lr sweep", tag="srch")
    b = add_run(s, "beta", tag="srch", strategy="naive", dataset="mnist1d")
    s.annotate_run(a, notes="Tried Momentum 0.9\nit helped")
    at = page()
    found = {}
    for text in ("srch", "MOMENTUM", "Naive srch", "mnist1D", "alpha srch", "srch replay", "alpha naive",
                 "'; DROP TABLE runs; --", "%", "srch_"):
        at.text_input(key="runs_search").set_value(text).run()
        assert not at.exception
        found[text] = set(table(at)["id"]) & {a, b} if at.dataframe else set()
    assert found == {"srch": {a, b}, "MOMENTUM": {a}, "Naive srch": {b}, "mnist1D": {b}, "alpha srch": {a},
                     "srch replay": {a}, "alpha naive": set(), "'; DROP TABLE runs; --": set(), "%": set(),
                     "srch_": set()}
    assert s.sql("SELECT count(*) FROM runs WHERE id IN (?, ?)", [a, b]) == [(2,)]
    assert "No run matches these filters." in [i.value for i in at.info]
    with pytest.raises(ValueError, match=f"search: 201 characters, at most {limits().max_search_chars}"):
        search_terms("x" * 201)


def test_filter_and_sort_by_metric_and_hyperparameter(lab):
    s = lab.store
    low = add_run(s, "low", (0.2, 0.8), tag="sortme", lr=0.01)    # acc 0.5
    mid = add_run(s, "mid", (0.5, 0.9), tag="sortme", lr=0.1)     # acc 0.7
    high = add_run(s, "high", (0.9, 0.9), tag="sortme", lr=0.05)  # acc 0.9
    at = page(runs_search="sortme")
    at.multiselect(key="runs_columns").set_value(["acc", "bwt", "train.lr"]).run()
    at.selectbox(key="runs_sort").set_value("acc").run()
    df = table(at)
    assert df["id"].tolist() == [high, mid, low]  # descending by default
    assert df["acc"].round(6).tolist() == [0.9, 0.7, 0.5]
    assert df["bwt"].round(6).tolist() == [0.0, -0.4, -0.7]  # R[2][1] - R[1][1]
    assert df["train.lr"].tolist() == [0.05, 0.1, 0.01]
    at.toggle(key="runs_descending").set_value(False).run()
    assert table(at)["id"].tolist() == [low, mid, high]
    at.selectbox(key="runs_sort").set_value("train.lr").run()
    assert table(at)["id"].tolist() == [low, high, mid]
    at.multiselect(key="runs_filter_on").set_value(["acc", "train.lr"]).run()
    at.number_input(key="runs_min_acc").set_value(0.6).run()
    assert table(at)["id"].tolist() == [high, mid]
    at.number_input(key="runs_max_train.lr").set_value(0.06).run()
    assert table(at)["id"].tolist() == [high]
    at.number_input(key="runs_min_acc").set_value(0.95).run()
    assert not at.dataframe and "No run matches these filters." in [i.value for i in at.info]


def test_metric_columns_of_a_trained_run_are_its_summary(lab):
    run_id = run_in_process(lab.store, small_config("replay", eval={"every": 2}))
    lab.store.annotate_run(run_id, tags=["trained"])
    at = page(runs_search="trained", runs_columns=list(RUN_METRICS))
    row = table(at).set_index("id").loc[run_id]
    expected = summary(lab.store, run_id)
    for key in RUN_METRICS:
        if expected[key] is None:
            assert np.isnan(row[key]), key
        else:
            assert row[key] == pytest.approx(expected[key]), key
    assert 0 < row["acc"] <= 1 and row["status"] == "finished"


def test_summaries_of_finished_runs_are_computed_once_and_of_running_runs_as_they_move_on(lab):
    s = lab.store
    done = add_run(s, "done", (0.5, 0.9), tag="cache")
    live = add_run(s, "live", (0.5, 0.9), tag="cache", status="running")
    view = runs_view(s, search="cache", columns=["acc"]).set_index("id")
    assert view.loc[done, "acc"] == pytest.approx(0.7) and view.loc[live, "acc"] == pytest.approx(0.7)
    # the same rows rewritten behind the cache's back: a finished run's summary is not read again,
    # a running run's is once it moves on (its last step)
    s.write("UPDATE metrics SET value = 0.1 WHERE run_id IN (?, ?) AND step = 20", [done, live])
    s.add_metrics({"run_id": [live], "step": [21], "task": [2], "metric": ["train_loss"], "value": [0.3]})
    s.flush()
    view = runs_view(s, search="cache", columns=["acc"]).set_index("id")
    assert view.loc[done, "acc"] == pytest.approx(0.7)
    assert view.loc[live, "acc"] == pytest.approx(0.1)
    s.set_status(done, "cancelled")  # another status: computed again
    assert run_metrics(s, runs_view(s, search="cache")).shape == (2, len(RUN_METRICS))
    assert runs_view(s, search="cache", columns=["acc"]).set_index("id").loc[done, "acc"] == pytest.approx(0.1)


def test_rename_notes_and_tags_are_saved_in_the_file_from_the_page(lab, tmp_path):
    s = lab.store
    run_id = add_run(s, "before", tag="annot")
    at = page(runs_search="annot")
    select(at, run_id)
    assert panel(at).startswith(f"**Run {run_id}** · before")
    at.text_input(key=f"run_name_{run_id}").set_value("  after: lr 0.05 ✓  ")
    at.text_input(key=f"run_tags_{run_id}").set_value("annot, baseline,v2.1 , baseline")
    at.text_area(key=f"run_notes_{run_id}").set_value("line one\n\tline two")
    button(at, "Save").click().run()
    assert not at.exception and not at.error
    copy = s.copy_to(tmp_path / "copy.duckdb")  # what is in the database, read by another connection
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute("SELECT name, notes, tags FROM runs WHERE id = ?", [run_id]).fetchall() == [
            ("after: lr 0.05 ✓", "line one\n\tline two", ["annot", "baseline", "v2.1"])]
    row = table(at).set_index("id").loc[run_id]
    assert row["name"] == "after: lr 0.05 ✓" and row["tags"] == "annot, baseline, v2.1"  # shown as text
    at.text_input(key="runs_search").set_value("BASELINE line TWO").run()
    assert table(at)["id"].tolist() == [run_id]


@pytest.mark.parametrize("field, value, message", [
    ("name", "", "name = '': must not be empty (1 to 200 characters)"),
    ("name", "   ", "name = '   ': must not be empty (1 to 200 characters)"),
    ("name", "evil\x1b[2Jname", "name = 'evil\\x1b[2Jname': has the control character U+001B; a name is one line "
                                "of printable characters"),
    ("name", "a\u202egnp.exe", "name = 'a\\u202egnp.exe': has the control character U+202E"),
    ("tags", "good, two words", "tag 'two words': may have only letters, digits and _ . - : + /"),
    ("tags", "x;DROP", "tag 'x;DROP': may have only letters"),
    ("tags", ", ".join(f"t{i}" for i in range(21)), "tags: more than 20 given, at most 20 are allowed on a run"),
    ("tags", "t" * 41, "has 41 characters, at most 40 are allowed"),
    ("notes", "bell\x07", "notes = 'bell\\x07': have the control character U+0007"),
])
def test_hostile_input_is_refused_with_one_line_and_nothing_is_written(lab, field, value, message):
    s = lab.store
    run_id = add_run(s, "kept", tag="hostile")
    s.annotate_run(run_id, notes="old notes")
    at = page(runs_search="hostile")
    select(at, run_id)
    values = {"name": "a new name", "tags": "new, tags", "notes": "new notes"} | {field: value}
    # (a name or notes past max_chars never reach the page: Streamlit cuts them, the store refuses them)
    at.session_state[f"run_name_{run_id}"] = values["name"]
    at.session_state[f"run_tags_{run_id}"] = values["tags"]
    at.session_state[f"run_notes_{run_id}"] = values["notes"]
    button(at, "Save").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "\n" not in errors[0] and message in errors[0]
    assert s.sql("SELECT name, notes, tags FROM runs WHERE id = ?", [run_id]) == [("kept", "old notes", ["hostile"])]
    at.run()  # the next refresh still says why
    assert [e.value for e in at.error] == errors


def test_store_refuses_hostile_values_and_an_older_file_gets_notes_and_tags(tmp_path):
    path = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(path))
    migrate(con.cursor(), target=4)  # a file as CL Lab wrote it before notes and tags
    con.execute("INSERT INTO runs (name, config, status) VALUES ('old run', '{}', 'finished')")
    con.close()
    with Store(path, serve=False) as store:
        assert schema_version(store.cursor()) == SCHEMA_VERSION
        assert store.sql("SELECT name, notes, tags FROM runs") == [("old run", None, [])]
        for bad, message in (({"name": 5}, "name = 5: must be text"),
                             ({"name": "n" * 201}, "has 201 characters, at most 200 are allowed"),
                             ({"notes": "n" * 10_001}, "notes: have 10001 characters, at most 10000 are allowed"),
                             ({"tags": "one,two"}, "tags = 'one,two': must be a list of tags"),
                             ({"tags": ["ok", None]}, "tags = None: must be text"),
                             ({"notes": b"bytes"}, "notes = b'bytes': must be text")):
            with pytest.raises(AnnotationError, match=re.escape(message)):
                annotate_run(store, 1, **{"name": "not written", **bad})
        # the store's own bound, for a caller that skips the lab's checks
        for bad, message in (({"name": 5}, "name: must be text, not int"),
                             ({"tags": "one,two"}, "tags: must be a list of texts, not str"),
                             ({"notes": "n" * 1_000_001}, "notes: has more than the 1,000,000 characters")):
            with pytest.raises(ValueError, match=re.escape(message)):
                store.annotate_run(1, **{"name": "not written", **bad})
        assert store.sql("SELECT name FROM runs") == [("old run",)]
        assert annotate_run(store, 1, name="renamed", notes="kept\nhere", tags=["a", "b", "a"])
        assert not annotate_run(store, 99, name="no such run")
        assert annotate_run(store, 1, notes="")  # clears them
    with Store(path, serve=False) as store:  # reopened: it is in the file
        assert store.sql("SELECT name, notes, tags FROM runs") == [("renamed", None, ["a", "b"])]


def test_the_selection_follows_its_run_and_is_cleared_when_the_run_is_deleted(lab):
    s = lab.store
    first, middle, last = (add_run(s, n, tag="follow") for n in ("first", "middle", "last"))
    at = page(runs_search="follow")
    assert table(at)["id"].tolist() == [last, middle, first]
    select(at, middle)
    assert table_key("runs_table", [last, middle, first]) in at.session_state
    newer = add_run(s, "newer", tag="follow")  # a new run on top: every row moves down one
    at.run()
    assert table(at)["id"].tolist() == [newer, last, middle, first]
    assert highlighted_rows(at) == [2]
    # the old rows' widget went with them: a selection sent late for them has nothing to land on
    assert table_key("runs_table", [last, middle, first]) not in at.session_state
    assert panel(at).startswith(f"**Run {middle}** · middle")
    button(at, "Delete").click().run()
    button(at, "Yes, delete it").click().run()
    assert not at.exception
    assert table(at)["id"].tolist() == [newer, last, first]
    assert highlighted_rows(at) == []  # not row 2, now another run
    assert panel(at) is None and button(at, "Delete") is None
    assert s.sql("SELECT count(*) FROM runs WHERE id = ?", [middle]) == [(0,)]


def test_a_selection_is_read_only_against_the_rows_it_was_made_on():
    """The browser's refresh timer can send its selection (a row position) after the rows moved:
    that position in the new rows is another run, so it must not be read there."""
    state = {}
    old_rows, new_rows = [30, 20, 10], [10, 20, 30]  # sorted newest first, then oldest first
    run_id, key, default = selected_row(state, "t", old_rows)
    assert (run_id, default) == (None, None)
    state[key] = {"selection": {"rows": [0]}}  # the user clicks the first row: run 30
    assert selected_row(state, "t", old_rows)[0] == 30
    # the sort's run: the rows moved; the browser still sends the old rows' selection, row 0
    run_id, new_key, default = selected_row(state, "t", new_rows)
    assert (run_id, default) == (30, {"selection": {"rows": [2]}}) and new_key != key
    state[new_key] = default  # the table drawn with its default selection
    assert selected_row(state, "t", new_rows)[0] == 30  # row 0 of the old rows is not run 10
    state[new_key] = {"selection": {"rows": [1]}}  # a click on the new rows
    assert selected_row(state, "t", new_rows)[0] == 20
    state[new_key] = {"selection": {"rows": []}}  # unticked
    run_id, _, default = selected_row(state, "t", new_rows)
    assert (run_id, default) == (None, None)
    state[new_key] = {"selection": {"rows": [1]}}
    assert selected_row(state, "t", [10, 30])[0] is None  # deleted or filtered out: nothing selected
    assert selected_row({"t_run": 20, table_key("t", [20]): {"selection": {"rows": [7]}}}, "t", [20])[0] is None
    # a crafted WebSocket message is the browser's widget state too: any shape selects nothing, no traceback
    for hostile in ({"selection": {"rows": ["0"]}}, {"selection": {"rows": [0.0]}}, {"selection": {"rows": [True]}},
                    {"selection": {"rows": [-1]}}, {"selection": {"rows": "0"}}, {"selection": [0]}, {"rows": [0]}, "x"):
        assert selected_row({"t_run": 20, table_key("t", [20, 10]): hostile}, "t", [20, 10])[0] is None, hostile
    assert table_key("t", [1, 2]) != table_key("t", [2, 1]) and table_key("t", [1, 2]) == table_key("t", [1, 2])


def test_cancel_sweep_only_while_it_has_queued_or_running_runs_and_the_sweep_column(lab):
    s, manager = lab.store, lab.manager
    manager.pause()  # the runs stay queued
    try:
        sweep = s.create_sweep("sw", "grid", {})
        queued = [manager.submit(small_config("naive"), sweep_id=sweep) for _ in range(2)]
        for run_id in queued:
            s.annotate_run(run_id, tags=["swp"])
        alone = add_run(s, "no sweep", tag="swp")
        at = page(runs_search="swp")
        sweeps = table(at).set_index("id")["sweep"]
        assert sweeps[alone] == "" and [sweeps[i] for i in queued] == [str(sweep)] * 2
        select(at, alone)
        assert not any(b.label.startswith("Cancel sweep") for b in at.button)
        select(at, queued[0])
        button(at, f"Cancel sweep {sweep}").click().run()
        assert not at.exception
        assert s.sql("SELECT status FROM runs WHERE sweep_id = ?", [sweep]) == [("cancelled",)] * 2
        at.run()
        assert panel(at).startswith(f"**Run {queued[0]}**")
        assert button(at, f"Cancel sweep {sweep}") is None  # nothing of the sweep left to cancel
    finally:
        manager.resume()


def test_relaunch_with_changes_opens_the_launch_page_from_the_run(lab):
    run_id = add_run(lab.store, "again", tag="relaunch")
    at = page(runs_search="relaunch")
    select(at, run_id)
    button(at, "Relaunch with changes").click().run()
    assert not at.exception
    assert at.query_params["from"] in (str(run_id), [str(run_id)])
    assert at.title[0].value.startswith("Launch")


def test_the_cli_lists_a_runs_tags(tmp_path):
    path = tmp_path / "lab.duckdb"
    with Store(path, serve=False) as store:
        run_id = add_run(store, "tagged", tag="baseline")
        store.annotate_run(run_id, tags=["baseline", "lr:0.05"])
    listing = subprocess.run([sys.executable, "-m", "engine", "runs", "--db", str(path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()
    assert header.split()[:4] == ["id", "name", "tags", "strategy"]
    assert row.split()[:5] == [str(run_id), "tagged", "baseline,lr:0.05", "replay", "finished"]


def shown(page, selected_only: bool = False) -> list[str]:
    """The table's rows as the browser has them (its accessible copy of the canvas), by their link."""
    rows = page.locator('[data-testid="stDataFrame"] tr[role="row"][aria-selected]')
    # read in one go: the table may be redrawn between two reads (a row read after it went would wait)
    return rows.evaluate_all("(rows, selectedOnly) => rows.filter(r => !selectedOnly || "
                             "r.getAttribute('aria-selected') === 'true').map(r => r.querySelector('td').innerText)",
                             selected_only)


def highlighted(page) -> list[str]:
    return shown(page, selected_only=True)


class HeldServer:
    """The page's Streamlit WebSocket routed through the test: after ``hold()`` the server's messages
    wait, in order, while the browser's go on; ``release()`` delivers them."""

    def __init__(self, page) -> None:
        self.holding, self.waiting = False, []
        page.route_web_socket(re.compile(r".*/_stcore/stream$"), self.route)

    def route(self, ws) -> None:
        ws.connect_to_server().on_message(lambda message: self.deliver(ws, message))

    def deliver(self, ws, message) -> None:
        if self.holding:
            self.waiting.append((ws, message))
        else:
            ws.send(message)

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        self.holding = False
        while self.waiting:
            ws, message = self.waiting.pop(0)
            ws.send(message)


def settled(read, expected, seconds: float = 30.0):
    """``read()`` once it returns ``expected``, or its last value after ``seconds``: the table is redrawn
    by the script runs that follow a click, later on a loaded machine (the caller asserts the value)."""
    deadline = time.monotonic() + seconds
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.25)
    return value


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_in_a_browser_the_selection_follows_its_run_and_a_delete_clears_it(tmp_path):
    """What AppTest cannot do: click a row of the table, and see what the browser sends back on the
    refreshes that follow (a selection left on a row position would pick another run)."""
    from playwright.sync_api import sync_playwright

    db = tmp_path / "lab.duckdb"
    with Store(db, serve=False) as store:
        first, middle, last = (add_run(store, n, tag="b") for n in ("first", "middle", "last"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.address", "127.0.0.1", "--server.headless", "true", "--", "--db", str(db)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CL_LAB_DB": ""})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            server_messages = HeldServer(page)
            goto_when_listening(page, f"http://127.0.0.1:{port}/runs")
            grid = page.locator('[data-testid="stDataFrame"]').first
            grid.wait_for(timeout=90_000)
            box = grid.bounding_box()
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's checkbox: the newest run
            selected = page.locator('[data-testid="stMarkdown"]').filter(has_text=re.compile(r"^Run \d+ · "))
            selected.first.wait_for(timeout=30_000)
            assert selected.first.inner_text().startswith(f"Run {last} · last")
            page.get_by_text("Columns, filters and sorting").click()
            # what a loaded server does: the sort's script run reaches the browser late, so its refresh timer
            # sends the selection it still has (the first row, of the old order) after the rows moved
            server_messages.hold()
            page.get_by_text("Descending").click()  # oldest first: the run moves to the last row
            page.wait_for_timeout(5_000)  # two refresh periods
            server_messages.release()
            oldest_first = [f"/run?run={i}" for i in (first, middle, last)]
            assert settled(lambda: shown(page), oldest_first) == oldest_first
            # the row the browser highlights: the run's new row (a selection kept by position would be the first)
            assert settled(lambda: highlighted(page), [f"/run?run={last}"]) == [f"/run?run={last}"]
            assert selected.first.inner_text().startswith(f"Run {last} · last")
            page.get_by_role("button", name="Delete").click()
            page.get_by_role("button", name="Yes, delete it").click()
            remaining = [f"/run?run={i}" for i in (first, middle)]
            assert settled(lambda: shown(page), remaining) == remaining and highlighted(page) == []
            assert selected.count() == 0 and page.get_by_role("button", name="Delete").count() == 0
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "runs_after_delete.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    with Store(db, serve=False) as store:
        assert store.sql("SELECT id FROM runs ORDER BY id") == [(first,), (middle,)]
