"""The lab for every page and session (engine/lab.py's ``Lab``: the store, the run manager and every
user action), opened once per server process; and who the session is.

A lab is hosted when Streamlit's secrets (``.streamlit/secrets.toml``, or ``--secrets.files``) have an
``[auth]`` section: then a visitor sees nothing but the login page, and a logged-in user acts as the
principal the access file gives their address (engine/core/access.py). Without it the lab is local: one
local admin, no login. The pages only hide what a principal may not do; the run manager and the store
refuse it."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Mapping

import streamlit as st

from engine.core.access import AccessDenied, AccessFileError, Principal, principal_for, refusal
from engine.core.limits import SettingsError
from engine.lab import Lab
from engine.runs.executors import ExecutorUnavailable
from pages.ui.toolbars import disable_data_export_for, hide_element_toolbars
from store import DEFAULT_DB, DatabaseLocked, NotADatabase

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

PAGES = {  # page files, for links between pages
    "home": "pages/home.py",
    "launch": "pages/launch.py",
    "runs": "pages/runs.py",
    "run": "pages/run.py",
    "compare": "pages/compare.py",
    "metrics": "pages/metrics.py",
    "audit": "pages/audit.py",
    "login": "pages/login.py",
}


# Each page's icon, drawn by its sidebar link. The pages themselves have none: Streamlit's front end
# makes a page's Material icon the tab's favicon, fetched from fonts.gstatic.com, which a hosted lab's
# readers should not be sent to (and an offline lab fails to reach on every page load).
PAGE_ICONS = {"Log in": ":material/login:", "Home": ":material/home:", "Launch": ":material/rocket_launch:",
              "Runs": ":material/table_rows:", "Run": ":material/monitoring:", "Compare": ":material/compare_arrows:",
              "Metrics": ":material/function:", "Audit": ":material/policy:"}
FAVICON = "🧪"  # an emoji favicon is drawn in the browser (an inline SVG): nothing is fetched


def navigation_pages(who: Principal | None = None) -> list:
    """The pages ``who`` may open, in the order of its sidebar (app.py draws it): a visitor of a hosted
    lab (None) only the login page; a viewer no Launch page; a hosted lab's admin also the audit."""
    if who is None:
        return [st.Page(PAGES["login"], title="Log in", default=True)]
    pages = [st.Page(PAGES["home"], title="Home", default=True)]
    if may(who, "launch"):
        pages.append(st.Page(PAGES["launch"], title="Launch"))
    pages += [
        st.Page(PAGES["runs"], title="Runs"),
        st.Page(PAGES["run"], title="Run", url_path="run"),
        st.Page(PAGES["compare"], title="Compare"),
        st.Page(PAGES["metrics"], title="Metrics"),
    ]
    if who.role == "admin" and not who.local:
        pages.append(st.Page(PAGES["audit"], title="Audit"))
    return pages


def frame(pages: list, who: Principal | None = None) -> None:
    """What every page shows around itself: the wide layout, the sidebar of page links and, in a hosted
    lab, who is logged in with a Log out button."""
    st.set_page_config(page_title="CL Lab", page_icon=FAVICON, layout="wide")
    disable_data_export_for(login_may_export)  # the session's next script runs (this one has begun)
    if not may_export(who):
        hide_element_toolbars()  # this run's tables and charts, and a layer the option cannot reach
    with st.sidebar:
        st.markdown("### CL Lab")
        for page in pages:
            st.page_link(page, icon=PAGE_ICONS[page.title])
        if who is not None and not who.local:
            st.divider()
            st.caption(f"{who.email} · {who.role}")
            st.button("Log out", icon=":material/logout:", on_click=st.logout, key="logout")


def leave_legacy_navigation() -> None:
    """A freshly started server runs its first page loads the legacy way: a ``pages/`` folder beside
    the script makes Streamlit run the page file of the URL (``/run?run=7``) without app.py, so
    without our navigation, sidebar and layout, until app.py has once called ``st.navigation``.
    A page run that way draws the frame itself, so a shared link looks as it should from the first
    load (the legacy listing is hidden by ``client.showSidebarNavigation = false``)."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        who = principal_or_none(open_lab())
        frame(navigation_pages(who), who)


def db_path() -> Path:
    """``streamlit run app.py -- --db PATH``, else $CL_LAB_DB, else lab.duckdb beside the app."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--db")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.db or os.environ.get("CL_LAB_DB") or DEFAULT_DB).resolve()


def hosted_mode() -> bool:
    """Whether this lab is hosted: Streamlit's secrets have an ``[auth]`` section (st.login's)."""
    from collections.abc import Mapping

    try:
        return isinstance(st.secrets.get("auth"), Mapping)
    except FileNotFoundError:  # no secrets file at all: a local lab
        return False


# The lab of each (database, hosted) this process opened. Held here, not in st.cache_resource: any
# client that reaches the port can send a clear_cache message, which clears Streamlit's caches for
# everyone, and a lab released with them would stop every run. The lab lives for the process (closed
# at exit by Lab.serve's atexit hook, or by close_labs).
_LABS: dict[tuple[str, bool], Lab] = {}
_LABS_LOCK = threading.Lock()  # the first page loads of a fresh server open one lab, not one each


def lab_at(path: str, hosted: bool) -> Lab:
    """The lab over the database at ``path`` (opened on first use); the same object on every call."""
    with _LABS_LOCK:
        the_lab = _LABS.get((path, hosted))
        if the_lab is None:
            the_lab = _LABS[(path, hosted)] = Lab.serve(Path(path), hosted)
        return the_lab


def opened_lab(hosted: bool) -> Lab | None:
    """The lab this server process opened over its database, or None before its first page load."""
    with _LABS_LOCK:
        return _LABS.get((str(db_path()), hosted))


def close_labs() -> None:
    """Close every lab this process opened (workers stopped, files closed): for tests and benchmarks."""
    with _LABS_LOCK:
        labs = list(_LABS.values())
        _LABS.clear()
    for the_lab in labs:
        the_lab.close()


def open_lab() -> Lab:
    """The lab of this server process (opened by the first page load), or the reason it cannot open."""
    path, hosted = str(db_path()), hosted_mode()
    try:
        if (path, hosted) in _LABS:
            return lab_at(path, hosted)
        with st.spinner("Opening the lab's database..."):
            return lab_at(path, hosted)
    except (DatabaseLocked, NotADatabase) as err:
        st.error(str(err))
        st.stop()
    except AccessFileError as err:  # the operator's file: every problem, one line each
        st.error("The lab cannot start: its access file has problems.\n\n" + "\n".join(f"- {p}" for p in err.problems))
        st.stop()
    except (SettingsError, ExecutorUnavailable) as err:  # lab.toml's [executor]: a wrong value, no Ray, no cluster
        st.error(f"The lab cannot start: {err}")
        st.stop()


def principal_or_none(the_lab: Lab) -> Principal | None:
    """Who this session is: the local admin in a local lab; in a hosted lab the access file's principal
    for the logged-in address, None for a visitor who is not logged in. A logged-in address the file
    does not let in gets the reason and a Log out button, and the page stops."""
    access = the_lab.store.access
    if access is None:
        return principal_for(None)
    if not st.user.is_logged_in:
        return None
    try:
        return principal_for(access, st.user.get("email"), st.user.get("email_verified"))
    except AccessDenied as err:
        st.error(str(err), icon=":material/block:")
        st.button("Log out", on_click=st.logout, key="logout_refused")
        st.stop()


def lab() -> Lab:
    """The lab, for a page a principal may see; a visitor of a hosted lab gets the login page instead
    (also on a fresh server's first load, which runs the page file without app.py)."""
    leave_legacy_navigation()
    the_lab = open_lab()
    if principal_or_none(the_lab) is None:
        login_page()
        st.stop()
    return the_lab


def me() -> Principal:
    """The principal of this session (a page that called ``lab()`` has one)."""
    who = principal_or_none(open_lab())
    if who is None:
        st.stop()
    return who


def live_refresh() -> float:
    """Seconds between two redraws of a live page (its fragment's ``run_every``): the lab's
    ``live_refresh_s``, or ``live_refresh_per_session_s`` times the browser sessions open, if longer.
    Each redraw is a script run on the one server process and a redraw in the browser, so with many
    viewers the live pages together cost the server about the same (at most one redraw every
    ``live_refresh_per_session_s`` seconds, all sessions together), and no page falls behind its own
    refreshes. Read when a page is opened (a full run)."""
    from engine.core.limits import limits

    try:  # Streamlit 1.67 has no public count of sessions; the runtime's session manager has it
        from streamlit.runtime import Runtime

        sessions = Runtime.instance()._session_mgr.num_active_sessions() if Runtime.exists() else 1
    except (AttributeError, RuntimeError):
        sessions = 1
    return max(limits().live_refresh_s, limits().live_refresh_per_session_s * sessions)


def drop_refreshes_while_running() -> bool:
    """Install, once per server process: a live refresh (a fragment's ``run_every`` rerun, sent by the
    browser's timer whatever is in flight) that reaches a session while its script runs is dropped if
    a run of that fragment was already asked for since the session was last idle (a full run draws
    every fragment); the next comes one period later. A refresh of another fragment goes through, so
    two live fragments of one page cannot starve each other. True if installed.

    Why: Streamlit 1.67 queues such a refresh behind the run in progress and starts it the moment that
    run ends, and the new run's start clears from the session's outgoing queue every message of the
    fragment not yet sent to the browser. On a loaded server (bench/sessions.py: 20 browsers on
    2 cores) a run took longer than the period, so refreshes ran back to back and each cleared the
    last one's output before it was sent: a live Run page kept its title and figures but never got its
    chart (a WebSocket trace showed the chart's delta enqueued, then cleared)."""
    try:
        from streamlit.runtime.app_session import AppSession, AppSessionState
    except ImportError:  # another Streamlit layout: leave it as it is
        return False
    if getattr(AppSession, "_cl_lab_drops_refreshes", False):
        return True
    request_rerun = AppSession.request_rerun

    def request_rerun_unless_already_asked(self, client_state=None) -> None:
        running = getattr(self, "_state", None) == AppSessionState.APP_IS_RUNNING
        asked = self.__dict__.get("_cl_lab_asked", set()) if running else set()  # "" is a full run
        fragment = (client_state.fragment_id if client_state is not None else "") or ""
        if running and fragment and client_state.is_auto_rerun and (fragment in asked or "" in asked):
            return
        asked.add(fragment)
        self._cl_lab_asked = asked
        request_rerun(self, client_state)

    AppSession.request_rerun = request_rerun_unless_already_asked
    AppSession._cl_lab_drops_refreshes = True
    return True


def may(who: Principal, action: str, owner: str | None = None) -> bool:
    """Whether ``who`` may take ``action`` on a run of ``owner`` (None: a launch): the pages show only
    what this allows; the manager and the store check it again and refuse the rest."""
    return refusal(who, action, owner) is None


def may_export(who: Principal | None) -> bool:
    """Whether ``who`` may export at all (their own runs at least): Streamlit's export buttons on tables
    and charts are hidden from anyone else (pages/ui/toolbars.py)."""
    return who is not None and may(who, "export", who.email)


def login_may_export(login: Mapping) -> bool:
    """``may_export`` for a session's login as Streamlit holds it (``st.user``'s fields), read before
    its script run: a local lab's admin may; in a hosted lab only a principal of the access file whose
    role exports (none before the lab has opened, nor for a visitor or a refused login)."""
    path, hosted = str(db_path()), hosted_mode()
    if not hosted:
        return True
    the_lab = _LABS.get((path, hosted))
    if the_lab is None or the_lab.store.access is None or not login.get("is_logged_in"):
        return False
    try:
        return may_export(principal_for(the_lab.store.access, login.get("email"), login.get("email_verified")))
    except AccessDenied:
        return False


def login_page() -> None:
    """All a visitor of a hosted lab sees: what this is, and a Log in button per identity provider."""
    from collections.abc import Mapping

    st.title("CL Lab")
    st.write("This continual-learning lab is shared by a team. Log in to see its runs and launch your own.")
    providers = [name for name, value in st.secrets["auth"].items() if isinstance(value, Mapping)]
    for provider in providers or [None]:
        label = f"Log in with {provider}" if provider else "Log in"
        st.button(label, type="primary", icon=":material/login:", on_click=st.login,
                  args=(provider,) if provider else (), key=f"login-{provider or 'default'}")
