"""What every command of ``python -m engine`` opens, in one place: the store of its ``--db`` (with the
exit codes of the CLI when it cannot), and, for a command that trains, its ``Lab`` over that store."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.core.executor_settings import ADDRESS_ENV, KINDS, executor_settings
from engine.core.limits import SettingsError, limits
from engine.lab import Lab
from engine.runs.executors import ExecutorUnavailable
from store import DEFAULT_DB, DatabaseLocked, NotADatabase, Store
from store.store import open_snapshot


def add_db_argument(parser) -> None:
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"the lab's DuckDB file (default {DEFAULT_DB})")


def open_store(path: Path, read_only: bool = False, create: bool = True) -> Store:
    """The store at ``path``; exit 3 with the lock's message if another process holds it. A
    ``read_only`` command opens the file read-only (it must be a current lab's: nothing is created or
    migrated), or reads a snapshot that the holding process serves (store/snapshot.py). A command
    about runs already there (``create`` False) refuses a path with no file, creating none."""
    if not create and not path.exists():
        print(f"error: --db {path}: there is no such file; expected the lab's DuckDB database file", file=sys.stderr)
        sys.exit(2)
    try:
        return Store(path, serve=not read_only, read_only=read_only, disk_wait_s=limits().disk_wait_s)
    except DatabaseLocked as err:
        if read_only:
            if (snapshot := open_snapshot(path)) is not None:
                return snapshot
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    except NotADatabase as err:
        print(f"error: --db {err}", file=sys.stderr)
        sys.exit(2)


def add_executor_argument(parser) -> None:
    parser.add_argument("--executor", choices=KINDS, default=None,
                        help="where the runs train: local worker processes, or a Ray cluster (lab.toml's "
                             f"[executor]; ${ADDRESS_ENV} names the cluster; default: lab.toml's, else local)")


def open_lab(path: Path, create: bool = True, max_parallel: int | None = 1, warm_workers: int = 1,
             workers_ignore_ctrl_c: bool = False, executor: str | None = None) -> Lab:
    """The lab of a command that trains (``run``, ``resume``, ``sweep``) over the store at ``path``
    (``open_store``'s exits): it runs the command's own runs only (``Lab.for_command``), on the executor
    lab.toml's ``[executor]`` names (``executor``: the command's ``--executor`` over it). Exit 2 with one
    line when that executor cannot start (Ray not installed, no cluster), nothing written."""
    try:
        settings = executor_settings(executor)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    store = open_store(path, create=create)
    try:
        return Lab.for_command(store, max_parallel=max_parallel, warm_workers=warm_workers,
                               workers_ignore_ctrl_c=workers_ignore_ctrl_c, settings=settings)
    except ExecutorUnavailable as err:
        store.discard_if_new()  # a file this command created is removed: nothing was written
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
