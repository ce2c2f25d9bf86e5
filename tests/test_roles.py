"""Each role on every page, through Streamlit's AppTest with ``at.user``, over one real hosted lab (a real
access file, DuckDB file, run manager and workers; ``at.secrets`` has an ``[auth]`` section): a visitor not
logged in, a viewer, a member on their own runs and on others', an admin, a logged-in address the access
file does not let in; and a local lab (no ``[auth]``), whose pages are as before. For each page: the
sidebar's page links, what the page offers its user (buttons, download menus, the annotations form), what
it says to someone who may not use it, that what it offers works when clicked, and that the principal the
pages act as is refused below them (engine/core/access.py; tests/test_access.py tests that layer in depth).

Pages are reached two ways, as in a browser: a session that opened the lab (app.py's navigation) moves
between the pages of its sidebar; a first load of a page's URL runs the page file itself
(``pages.ui.lab.leave_legacy_navigation``), which is how a link reaches a page not in the sidebar."""

import json
import os
import re
import threading
import time
from types import SimpleNamespace

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from engine.core.access import AccessDenied, local_principal
from engine.runs.artifacts import checkpoint_path, pending_path
from engine.config import load_config
from engine.runs.manager import default_owner, run_in_process
from pages.ui.selection import table_key
from store.audit import audit_rows
from tests.conftest import ROOT, launched_run, small_config

APP = str(ROOT / "app.py")
ADA, BOB, CAT, VIC = "ada@example.org", "bob@example.org", "cat@example.org", "vic@example.org"
EVE = "eve@elsewhere.org"  # listed neither by address nor by domain
ACCESS = f'[users]\n"{ADA}" = "admin"\n"{BOB}" = "member"\n"{CAT}" = "member"\n"{VIC}" = "viewer"\n'
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "lab",
        "client_secret": "secret", "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
VISITOR = {"is_logged_in": False}
PAGES = ("home", "launch", "runs", "run", "compare", "metrics", "audit", "login")
READ = ["Home", "Runs", "Run", "Compare", "Metrics"]
NAV = {"viewer": READ, "member": READ[:1] + ["Launch"] + READ[1:]}
NAV["admin"] = NAV["member"] + ["Audit"]
NAV["local"] = NAV["member"]  # the local admin: every page as before, no Audit, no Log in
DOWNLOADS = "downloads"  # a Download / Export report menu, in what a page offers


def user(email: str, **claims) -> dict:
    return {"is_logged_in": True, "email": email, **claims}


def small_sweep(name: str) -> dict:
    return {"name": name, "base": {"scenario": {"dataset": "digits", "n_tasks": 2},
                                   "model": {"name": "mlp", "hidden": [16]}, "train": {"epochs_per_task": 1}},
            "grid": {"train.lr": [0.01, 0.05]}, "seeds": [0]}


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    """One hosted lab, the same object the pages get (CL_LAB_DB, CL_LAB_ACCESS, [auth] in at.secrets), with
    runs of ada (admin), bob and cat (members): each one's finished run; bob's run cancelled after its
    first task (it can resume); then, the queue held, each one's queued run and sweep."""
    from pages.ui.lab import close_labs, lab_at

    tmp = tmp_path_factory.mktemp("roles")
    (tmp / "access.toml").write_text(ACCESS)
    path = str((tmp / "lab.duckdb").resolve())
    os.environ["CL_LAB_DB"], os.environ["CL_LAB_ACCESS"] = path, str(tmp / "access.toml")
    try:
        the_lab = lab_at(path, True)
        store, manager = the_lab.store, the_lab.manager
        who = {email: store.access.principal(email) for email in (ADA, BOB, CAT)}
        # bob's run, in a worker, stops during its second task: cancelled as soon as the worker saved the
        # first task's checkpoint (so it can resume); the 3 tasks after the first give the cancel ample time
        stopped = manager.submit(small_config("naive", n_tasks=4, name="bob stopped", eval={"every": 50},
                                              train={"epochs_per_task": 5, "weights": "none"}), principal=who[BOB])
        checkpoint = checkpoint_path(store.artifacts_dir(stopped))

        def stop_after_the_first_task():
            wait_for(lambda: pending_path(checkpoint).exists() or checkpoint.exists(), "bob's run saved no checkpoint")
            manager.cancel(stopped, principal=who[BOB])

        watcher = threading.Thread(target=stop_after_the_first_task)
        watcher.start()
        # meanwhile ada's and bob's finished runs train here (no second worker to start); cat's is a row
        # (only listed and deleted, never drawn)
        done = {email: run_in_process(store, small_config("replay", name=f"{email} done", eval={"every": 10}),
                                      owner=email) for email in (ADA, BOB)}
        done[CAT] = store.create_run(small_config(name=f"{CAT} done").model_dump(mode="json"), name=f"{CAT} done",
                                     owner=CAT, status="finished")
        watcher.join()
        assert manager.wait(stopped, timeout=300) == "cancelled"
        wait_for(checkpoint.exists, "bob's checkpoint was not kept")  # once the metrics before it are committed
        manager.pause()  # from here queued runs wait: their Cancel buttons stay
        queued = {email: manager.submit(small_config(name=f"{email} queued"), principal=p) for email, p in who.items()}
        sweeps = {email: the_lab.launch_sweep(small_sweep(email.split("@")[0]), principal=p)
                  for email, p in who.items()}
        yield SimpleNamespace(lab=the_lab, store=store, manager=manager, stopped=stopped, done=done, queued=queued,
                              sweeps=sweeps)
    finally:
        close_labs()  # workers stopped, file closed
        del os.environ["CL_LAB_DB"], os.environ["CL_LAB_ACCESS"]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A local lab (no [auth]): one finished run of the local admin, then the queue held."""
    from pages.ui.lab import close_labs, lab_at

    path = str((tmp_path_factory.mktemp("roles_local") / "lab.duckdb").resolve())
    try:
        the_lab = lab_at(path, False)
        the_lab.manager.pause()
        run_id = run_in_process(the_lab.store, small_config("replay", name="local done", eval={"every": 10}))
        yield SimpleNamespace(lab=the_lab, store=the_lab.store, path=path, done=run_id)
    finally:
        close_labs()


# ---- reaching pages, and what they show -------------------------------------------------------------------

def new_app(who: dict, hosted: bool = True) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if hosted:
        at.secrets["auth"] = AUTH
    at.user = who
    return at


def session(who: dict, hosted: bool = True) -> AppTest:
    """A session that opened the lab (its Home, or the login page): app.py's navigation is registered."""
    at = new_app(who, hosted).run()
    assert not at.exception
    return at


def visit(at: AppTest, page: str, **query) -> AppTest:
    """Move to a page of the session's sidebar (``query``: the URL's query parameters)."""
    at.query_params.clear()
    at.query_params.update({k: str(v) for k, v in query.items()})
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception
    return at


def first_load(who: dict, page: str, hosted: bool = True, **query) -> AppTest:
    """A browser's first load of a page's URL (a link): the page file runs and draws the frame itself."""
    at = new_app(who, hosted)
    at.query_params.update({k: str(v) for k, v in query.items()})
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception
    return at


def links(at: AppTest) -> list[str]:
    return [link.value for link in at.sidebar.get("page_link")]


def offered(at: AppTest) -> set[str]:
    """What the page offers its user to do: its buttons (the annotations form's Save among them; the
    sidebar's Log out aside) and, as DOWNLOADS, a download menu."""
    shown = {b.label for b in at.button} - {"Log out"}
    return shown | ({DOWNLOADS} if at.get("download_button") else set())


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def select(at: AppTest, run_id: int) -> AppTest:
    """Click the run's row in the Runs table (the browser sends the row's position)."""
    rows = at.dataframe[0].value["id"].tolist()
    at.session_state[table_key("runs_table", rows)] = {"selection": {"rows": [rows.index(run_id)]}}
    at.run()
    assert not at.exception
    return at


def compare_sweep(at: AppTest, sweep_id: int) -> AppTest:
    at.session_state["compare_how"], at.session_state["compare_sweep"] = "By sweep", sweep_id
    return visit(at, "compare")


def status(store, run_id: int) -> str | None:
    rows = store.sql("SELECT status FROM runs WHERE id = ?", [run_id])
    return rows[0][0] if rows else None


def owner(store, run_id: int) -> str:
    return store.sql("SELECT owner FROM runs WHERE id = ?", [run_id])[0][0]


def sweep_runs(store, sweep_id: int) -> list[int]:
    return [i for (i,) in store.sql("SELECT id FROM runs WHERE sweep_id = ? ORDER BY id", [sweep_id])]


def audited(store, run_id: int, action: str) -> list[list]:
    return audit_rows(store, run_id=run_id, action=action)[["who", "role", "allowed"]].values.tolist()


def an_id(value) -> int | None:
    """A run or sweep id of an audit row (NA: none)."""
    return None if pd.isna(value) else int(value)


def session_principal(who: dict, hosted: bool = True):
    """The principal the pages act as for this login: ``pages.ui.lab.principal_or_none`` in a real script
    run (None: a visitor)."""

    def script():
        import streamlit as st

        from pages.ui.lab import open_lab, principal_or_none

        st.session_state["who"] = principal_or_none(open_lab())

    at = AppTest.from_function(script, default_timeout=60)
    if hosted:
        at.secrets["auth"] = AUTH
    at.user = who
    at.run()
    assert not at.exception
    return at.session_state["who"]


# ---- who cannot come in ------------------------------------------------------------------------------------

def test_a_visitor_sees_only_the_login_on_every_page(hosted):
    runs = hosted.store.sql("SELECT count(*) FROM runs")[0][0]
    loads = {"the lab": session(VISITOR),
             **{f"/{page}": first_load(VISITOR, page, run=hosted.done[ADA]) for page in PAGES}}
    for where, at in loads.items():
        assert links(at) == ([] if where == "/login" else ["Log in"]), where  # /login loaded first: no sidebar
        assert [b.label for b in at.button] == ["Log in"], where
        assert texts(at.title) == ["CL Lab"] and "Log in to see its runs" in at.main.markdown[0].value
        assert not (at.dataframe or at.metric or at.get("vega_lite_chart") or at.get("download_button") or at.error)
    assert session_principal(VISITOR) is None
    with pytest.raises(AccessDenied, match="an anonymous visitor may not launch runs: nobody is logged in"):
        hosted.manager.submit(small_config(), principal=None)
    assert hosted.store.sql("SELECT count(*) FROM runs")[0][0] == runs


def test_an_address_the_access_file_does_not_let_in_gets_the_reason_and_log_out_on_every_page(hosted):
    for page in PAGES:
        at = first_load(user(EVE), page, run=hosted.done[ADA])
        assert links(at) == [] and [b.label for b in at.button] == ["Log out"]
        assert texts(at.error) == [f"{EVE} is not allowed in this lab: neither the address nor @elsewhere.org is "
                                   "listed in its access file; ask the lab's operator"]
        assert not (at.title or at.dataframe or at.metric or at.get("vega_lite_chart"))
    at = session(user(BOB, email_verified=False))  # a listed address the login does not vouch for
    assert links(at) == [] and "the login says this address is not verified" in at.error[0].value
    button(at, "Log out").click().run()  # it works: the session is logged out, and gets the login page
    assert at.user == VISITOR and links(at) == ["Log in"] and [b.label for b in at.button] == ["Log in"]


# ---- a viewer ----------------------------------------------------------------------------------------------

def test_a_viewer_reads_every_page_and_is_offered_nothing_that_changes_the_lab(hosted):
    h = hosted
    at = session(user(VIC))
    assert links(at) == NAV["viewer"] and offered(at) == set()
    assert texts(at.title) == ["CL Lab"] and at.metric and "You have read access" in at.info[0].value
    assert at.sidebar.caption[0].value == f"{VIC} · viewer"
    visit(at, "runs")
    assert "owner" in at.dataframe[0].value.columns
    for run_id in (h.done[ADA], h.done[BOB], h.queued[BOB], h.stopped,
                   sweep_runs(h.store, h.sweeps[BOB])[0]):
        assert offered(select(at, run_id)) == {"Open"}, run_id
    for run_id in (h.done[BOB], h.queued[BOB], h.stopped):
        visit(at, "run", run=run_id)
        assert at.title[0].value.startswith(f"Run {run_id}:") and offered(at) == set()
    assert at.get("vega_lite_chart")  # the stopped run's charts
    visit(at, "compare")  # by filter: the finished runs
    assert at.get("vega_lite_chart") and offered(at) == set()
    compare_sweep(at, h.sweeps[BOB])
    assert at.get("progress") and offered(at) == set()
    visit(at, "metrics")
    assert texts(at.title) == ["Metrics"]
    launch = first_load(user(VIC), "launch")  # not in the sidebar; a link still leads here
    assert texts(launch.title) == ["Launch"] and offered(launch) == set() and not launch.radio
    assert texts(launch.info) == [f"{VIC} (viewer) may only read: launching runs needs the member or admin role."]
    audit = first_load(user(VIC), "audit")
    assert texts(audit.error) == [f"{VIC} (viewer) may not read the audit table: it is for the lab's admins."]
    assert not audit.dataframe
    login = first_load(user(VIC), "login")  # logged in already: Home
    assert texts(login.title) == ["CL Lab"] and offered(login) == set() and login.metric


# ---- a member ----------------------------------------------------------------------------------------------

def test_a_member_launches_and_changes_their_own_runs(hosted):
    h, store = hosted, hosted.store
    at = session(user("Bob@Example.ORG"))  # as the identity provider spells it: the lab keys it in lower case
    assert links(at) == NAV["member"] and offered(at) == {"Launch the demo run"}
    button(at, "Launch the demo run").click().run()
    demo = launched_run(at)
    assert (owner(store, demo), status(store, demo)) == (BOB, "queued")
    assert json.loads(store.sql("SELECT config FROM runs WHERE id = ?", [demo])[0][0]) == load_config(
        ROOT / "configs" / "replay-demo.yaml").model_dump(mode="json")
    assert at.title[0].value.startswith(f"Run {demo}:") and offered(at) == {"Cancel run", DOWNLOADS}

    visit(at, "launch")
    assert "Launch" in offered(at)
    button(at, "Launch").click().run()
    launched = launched_run(at)
    assert launched != demo and owner(store, launched) == BOB
    assert audit_rows(store, run_id=launched)[["who", "action"]].values.tolist() == [[BOB, "launch"]]

    visit(at, "runs")
    own_sweep_run = sweep_runs(store, h.sweeps[BOB])[0]
    assert offered(select(at, h.done[BOB])) == {"Open", "Relaunch with changes", "Delete", "Save"}
    assert offered(select(at, h.queued[BOB])) == {"Open", "Relaunch with changes", "Cancel", "Save"}
    assert offered(select(at, own_sweep_run)) == {"Open", "Relaunch with changes", "Cancel",
                                                   f"Cancel sweep {h.sweeps[BOB]}", "Save"}
    assert offered(select(at, h.stopped)) == {"Open", "Relaunch with changes", "Resume from task 2", "Delete", "Save"}
    select(at, h.done[BOB])
    at.text_input(key=f"run_name_{h.done[BOB]}").set_value("bob's best")
    at.text_input(key=f"run_tags_{h.done[BOB]}").set_value("mine, kept")
    at.text_area(key=f"run_notes_{h.done[BOB]}").set_value("saved from the page")
    button(at, "Save").click().run()
    assert not at.error
    assert store.sql("SELECT name, tags, notes FROM runs WHERE id = ?", [h.done[BOB]]) == [
        ("bob's best", ["mine", "kept"], "saved from the page")]
    assert audited(store, h.done[BOB], "annotate") == [[BOB, "member", True]]

    visit(at, "run", run=h.done[BOB])
    assert offered(at) == {DOWNLOADS}
    visit(at, "run", run=h.stopped)
    assert offered(at) == {"Resume from task 2", DOWNLOADS}
    button(at, "Resume from task 2").click().run()  # the queue is held: it waits, and can be cancelled
    assert status(store, h.stopped) == "queued" and offered(at) == {"Cancel run", DOWNLOADS}
    button(at, "Cancel run").click().run()
    assert status(store, h.stopped) == "cancelled"
    assert audited(store, h.stopped, "resume") == audited(store, h.stopped, "cancel")[:1] == [[BOB, "member", True]]

    at.session_state["compare_how"], at.session_state["compare_ids"] = "By hand", [h.done[BOB]]
    visit(at, "compare")
    assert offered(at) == {DOWNLOADS}  # the report of their own runs
    compare_sweep(at, h.sweeps[BOB])
    assert offered(at) == {"Cancel sweep", DOWNLOADS}

    visit(at, "metrics")
    assert texts(at.title) == ["Metrics"] and offered(at) == set()
    audit = first_load(user(BOB), "audit")  # not in the sidebar; a link still leads here
    assert texts(audit.error) == [f"{BOB} (member) may not read the audit table: it is for the lab's admins."]
    assert not audit.dataframe
    login = first_load(user(BOB), "login")
    assert texts(login.title) == ["CL Lab"] and offered(login) == {"Launch the demo run"}


def test_a_member_reads_someone_elses_runs_and_may_only_relaunch_them_as_their_own(hosted):
    h, store = hosted, hosted.store
    at = session(user(BOB))
    visit(at, "runs")
    for run_id in (h.done[ADA], h.done[CAT], h.queued[ADA], sweep_runs(store, h.sweeps[ADA])[0]):
        assert offered(select(at, run_id)) == {"Open", "Relaunch with changes"}, run_id
    select(at, h.done[ADA])
    button(at, "Relaunch with changes").click().run()  # the Launch page, with ada's config in the form
    assert texts(at.title) == ["Launch a run"] and at.query_params["from"] == str(h.done[ADA])
    assert at.info[0].value.startswith(f"The form holds run {h.done[ADA]}'s config ({ADA} done)")
    assert at.text_input(key="name").value == f"{ADA} done (2)"
    for run_id in (h.done[ADA], h.queued[ADA]):
        visit(at, "run", run=run_id)
        assert at.title[0].value.startswith(f"Run {run_id}:") and offered(at) == set()
    assert f"owner {ADA}" in at.markdown[0].value
    visit(at, "compare")  # by filter: every finished run, others' among them: no report of them
    assert at.get("vega_lite_chart") and offered(at) == set()
    compare_sweep(at, h.sweeps[ADA])
    assert offered(at) == set()


# ---- an admin ----------------------------------------------------------------------------------------------

def test_an_admin_may_do_everything_to_anyones_runs_and_reads_the_audit(hosted):
    h, store = hosted, hosted.store
    at = session(user(ADA))
    assert links(at) == NAV["admin"] and offered(at) == {"Launch the demo run"}
    visit(at, "launch")
    assert "Launch" in offered(at)

    visit(at, "runs")
    assert offered(select(at, h.done[CAT])) == {"Open", "Relaunch with changes", "Delete", "Save"}
    button(at, "Delete").click().run()
    assert texts(at.warning) == [f"Delete run {h.done[CAT]} and all its metrics? This cannot be undone."]
    button(at, "Yes, delete it").click().run()
    assert status(store, h.done[CAT]) is None and h.done[CAT] not in at.dataframe[0].value["id"].tolist()
    assert offered(select(at, h.queued[BOB])) == {"Open", "Relaunch with changes", "Cancel", "Save"}

    visit(at, "run", run=h.queued[CAT])
    assert offered(at) == {"Cancel run", DOWNLOADS}
    button(at, "Cancel run").click().run()
    assert status(store, h.queued[CAT]) == "cancelled"
    visit(at, "run", run=h.done[BOB])
    assert offered(at) == {DOWNLOADS}

    cats = sweep_runs(store, h.sweeps[CAT])
    compare_sweep(at, h.sweeps[CAT])
    assert offered(at) == {"Cancel sweep", DOWNLOADS}
    button(at, "Cancel sweep").click().run()
    assert [status(store, run_id) for run_id in cats] == ["cancelled"] * len(cats)

    visit(at, "audit")
    assert texts(at.title) == ["Audit"]
    rows = at.dataframe[0].value
    done = {(r.who, r.action, an_id(r.run_id), an_id(r.sweep_id)) for r in rows.itertuples()}
    assert {(ADA, "delete", h.done[CAT], None), (ADA, "cancel", h.queued[CAT], None),
            (ADA, "cancel", None, h.sweeps[CAT])} <= done
    assert audited(store, h.done[CAT], "delete") == [[ADA, "admin", True]]
    visit(at, "metrics")
    assert texts(at.title) == ["Metrics"] and offered(at) == set()
    login = first_load(user(ADA), "login")  # logged in already: Home
    assert texts(login.title) == ["CL Lab"] and links(login) == NAV["admin"]


# ---- below the pages ---------------------------------------------------------------------------------------

def test_the_principal_the_pages_act_as_is_refused_below_them(hosted):
    h, store, manager = hosted, hosted.store, hosted.manager
    bob, vic = session_principal(user(BOB)), session_principal(user(VIC))
    assert (bob, vic) == (store.access.principal(BOB), store.access.principal(VIC))
    target, finished = h.queued[ADA], h.done[ADA]
    runs = store.sql("SELECT id, status, name FROM runs ORDER BY id")
    refusals = [
        (lambda: manager.cancel(target, principal=bob), f"{BOB} (member) may not cancel run {target}: it is {ADA}'s"),
        (lambda: store.delete_run(finished, principal=bob),
         f"{BOB} (member) may not delete run {finished}: it is {ADA}'s"),
        (lambda: store.annotate_run(finished, name="taken", principal=bob),
         f"{BOB} (member) may not rename or annotate run {finished}"),
        (lambda: store.check_export([finished], principal=bob), f"{BOB} (member) may not export run {finished}"),
        (lambda: manager.cancel_sweep(h.sweeps[ADA], principal=bob), f"{BOB} (member) may not cancel sweep"),
        (lambda: manager.cancel(h.queued[BOB], principal=vic), f"{VIC} (viewer) may not cancel run {h.queued[BOB]}: "
                                                               "a viewer may only read"),
        (lambda: manager.submit(small_config(), principal=vic), f"{VIC} (viewer) may not launch runs"),
    ]
    for act, message in refusals:
        with pytest.raises(AccessDenied, match=re.escape(message)):
            act()
    assert store.sql("SELECT id, status, name FROM runs ORDER BY id") == runs  # nothing changed
    refused = audit_rows(store, allowed=False)
    assert {(BOB, "cancel", target), (BOB, "delete", finished), (VIC, "launch", None)} <= {
        (r.who, r.action, an_id(r.run_id)) for r in refused.itertuples()}


# ---- a local lab -------------------------------------------------------------------------------------------

def test_a_local_lab_is_as_before_no_login_no_audit_no_owner_column(local, monkeypatch):
    monkeypatch.setenv("CL_LAB_DB", local.path)
    store = local.store
    assert session_principal(VISITOR, hosted=False) == local_principal()
    at = session(VISITOR, hosted=False)  # nobody logged in, and no need to
    assert links(at) == NAV["local"] and offered(at) == {"Launch the demo run"} and not at.sidebar.caption
    button(at, "Launch the demo run").click().run()
    demo = launched_run(at)
    assert owner(store, demo) == default_owner() and offered(at) == {"Cancel run", DOWNLOADS}
    button(at, "Cancel run").click().run()
    assert status(store, demo) == "cancelled"
    visit(at, "launch")
    assert "Launch" in offered(at)
    visit(at, "runs")
    assert "owner" not in at.dataframe[0].value.columns
    assert offered(select(at, local.done)) == {"Open", "Relaunch with changes", "Delete", "Save"}
    visit(at, "run", run=local.done)
    assert offered(at) == {DOWNLOADS} and at.get("vega_lite_chart")
    visit(at, "compare")
    assert offered(at) == {DOWNLOADS}
    visit(at, "metrics")
    assert texts(at.title) == ["Metrics"]
    login = first_load(VISITOR, "login", hosted=False)  # no login in a local lab: Home
    assert texts(login.title) == ["CL Lab"] and offered(login) == {"Launch the demo run"}
    assert audited(store, demo, "cancel") == [[default_owner(), "admin", True]]
