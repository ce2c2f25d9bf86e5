"""The lab's shared resources for every page and session: one store (the process owns the DuckDB
file) and one run manager, created once per server process."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from pathlib import Path

import streamlit as st

from store import DEFAULT_DB, DatabaseLocked, NotADatabase, Store

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

PAGES = {  # page files, for links between pages
    "home": "pages/home.py",
    "launch": "pages/launch.py",
    "runs": "pages/runs.py",
    "run": "pages/run.py",
    "compare": "pages/compare.py",
    "metrics": "pages/metrics.py",
}


def navigation_pages() -> list:
    """The lab's pages, in the order of its sidebar (app.py draws it)."""
    return [
        st.Page(PAGES["home"], title="Home", icon=":material/home:", default=True),
        st.Page(PAGES["launch"], title="Launch", icon=":material/rocket_launch:"),
        st.Page(PAGES["runs"], title="Runs", icon=":material/table_rows:"),
        st.Page(PAGES["run"], title="Run", icon=":material/monitoring:", url_path="run"),
        st.Page(PAGES["compare"], title="Compare", icon=":material/compare_arrows:"),
        st.Page(PAGES["metrics"], title="Metrics", icon=":material/function:"),
    ]


def frame(pages: list) -> None:
    """What every page shows around itself: the wide layout and the sidebar of page links."""
    st.set_page_config(page_title="CL Lab", page_icon=":material/science:", layout="wide")
    with st.sidebar:
        st.markdown("### CL Lab")
        for page in pages:
            st.page_link(page)


def leave_legacy_navigation() -> None:
    """A freshly started server runs its first page loads the legacy way: a ``pages/`` folder beside
    the script makes Streamlit run the page file of the URL (``/run?run=7``) without app.py, so
    without our navigation, sidebar and layout, until app.py has once called ``st.navigation``.
    A page run that way draws the frame itself, so a shared link looks as it should from the first
    load (the legacy listing is hidden by ``client.showSidebarNavigation = false``)."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        frame(navigation_pages())


def db_path() -> Path:
    """``streamlit run app.py -- --db PATH``, else $CL_LAB_DB, else lab.duckdb beside the app."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--db")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.db or os.environ.get("CL_LAB_DB") or DEFAULT_DB).resolve()


def _warm_cost_estimate() -> None:
    """The first estimate imports torch's meta kernels (seconds): pay for it before the Launch page asks."""
    from engine.config import parse_config
    from engine.cost import estimate

    estimate(parse_config({}))


class Lab:
    def __init__(self, path: Path):
        from engine.manager import RunManager  # starts warm workers: the first launch need not wait
        from engine.sweep import SweepKeeper

        self.store = Store(path)
        from engine.weights import remove_orphans

        remove_orphans(self.store)  # the weights of runs deleted while the lab was closed
        threading.Thread(target=_warm_cost_estimate, daemon=True, name="cost-warm-up").start()
        self.manager = RunManager(self.store)
        self.sweeps = SweepKeeper(self.manager)  # phases and search trials go on without a page open
        self.sweeps.start()
        # Streamlit's SIGTERM/SIGINT handler stops the server and Python exits normally: commit what
        # the workers sent then (signal handlers can only be set from the main thread, not here)
        atexit.register(self.close)

    def launch_sweep(self, spec, principal=None) -> int:
        from engine.sweep import launch_sweep

        sweep_id = launch_sweep(self.manager, spec, principal=principal)
        self.sweeps.watch(sweep_id)
        return sweep_id

    def close(self) -> None:
        from engine.search import stop_drivers

        if self.store._closed:  # released by Streamlit, then again at exit
            return
        self.sweeps.stop()
        stop_drivers(None, join=True)
        self.manager.shutdown()
        self.store.close()


@st.cache_resource(scope="global", show_spinner="Opening the lab's database...", on_release=Lab.close)
def _open(path: str) -> Lab:
    return Lab(Path(path))


def lab() -> Lab:
    leave_legacy_navigation()
    path = db_path()
    try:
        return _open(str(path))
    except (DatabaseLocked, NotADatabase) as err:
        st.error(str(err))
        st.stop()
