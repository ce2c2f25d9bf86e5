"""The lab's shared resources for every page and session: one store (the process owns the DuckDB
file) and one run manager, created once per server process."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

from store import DEFAULT_DB, DatabaseLocked, Store

PAGES = {  # page files, for links between pages
    "home": "pages/home.py",
    "launch": "pages/launch.py",
    "runs": "pages/runs.py",
    "run": "pages/run.py",
    "compare": "pages/compare.py",
    "metrics": "pages/metrics.py",
}


def db_path() -> Path:
    """``streamlit run app.py -- --db PATH``, else $CL_LAB_DB, else lab.duckdb beside the app."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--db")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.db or os.environ.get("CL_LAB_DB") or DEFAULT_DB).resolve()


class Lab:
    def __init__(self, path: Path):
        from engine.manager import RunManager  # starts warm workers: the first launch need not wait
        from engine.sweep import SweepKeeper

        self.store = Store(path)
        self.manager = RunManager(self.store)
        self.sweeps = SweepKeeper(self.manager)  # phases and search trials go on without a page open
        self.sweeps.start()

    def launch_sweep(self, spec) -> int:
        from engine.sweep import launch_sweep

        sweep_id = launch_sweep(self.manager, spec)
        self.sweeps.watch(sweep_id)
        return sweep_id

    def close(self) -> None:
        from engine.search import stop_drivers

        self.sweeps.stop()
        stop_drivers(None, join=True)
        self.manager.shutdown()
        self.store.close()


@st.cache_resource(scope="global", show_spinner="Opening the lab's database...", on_release=Lab.close)
def _open(path: str) -> Lab:
    return Lab(Path(path))


def lab() -> Lab:
    path = db_path()
    try:
        return _open(str(path))
    except DatabaseLocked as err:
        st.error(str(err))
        st.stop()
