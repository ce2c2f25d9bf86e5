"""``python -m engine backup DEST.duckdb`` (engine/cli/backup.py): a consistent copy of a lab's
database, taken while the lab runs (the lab that holds the file writes it: ``Store.copy_to`` through store/snapshot.py's socket,
between two of its writer's transactions) or while it is stopped. ``--artifacts`` also copies the
runs' weights and checkpoints (``<db>.artifacts/``) beside the copy, so the copy opens as a whole lab
(``streamlit run app.py -- --db DEST.duckdb``). Restoring is using the copy, or moving it into place
while the lab is stopped."""

from __future__ import annotations

import shutil
from pathlib import Path



def backup(db_path: Path, dest: Path, artifacts: bool = False) -> str:
    """Copy the database at ``db_path`` (and its artifacts) to ``dest``; one line saying what was copied.
    ``ValueError`` (one line) for a destination that is not a new file in an existing directory, or a
    database that is not there; ``OSError`` when the lab holding it refuses or the copy fails."""
    from store.snapshot import request_snapshot

    db_path, dest = Path(db_path).absolute(), Path(dest).absolute()
    if not db_path.is_file():
        raise ValueError(f"--db {db_path}: no such database file")
    if dest.exists() or not dest.parent.is_dir() or dest == db_path:
        raise ValueError(f"{dest}: the backup must be a new file in an existing directory")
    art_src, art_dest = (p.with_name(p.name + ".artifacts") for p in (db_path, dest))
    if artifacts and art_dest.exists():
        raise ValueError(f"--artifacts: {art_dest} is there already; choose a new backup name")
    try:
        if not request_snapshot(db_path, dest):  # no lab holds the file: copy it ourselves
            _copy_here(db_path, dest)
        line = f"backup: {dest} ({dest.stat().st_size / 1e6:.1f} MB)"
        if artifacts and art_src.is_dir():
            # a checkpoint is written to a temporary name and renamed (engine/training/checkpoint.py): a copy taken
            # while runs train holds whole files; one finished after the database copy may be extra
            try:
                shutil.copytree(art_src, art_dest)
            except shutil.Error as err:  # a list of (source, destination, why): say the first
                failed = err.args[0]
                raise OSError(f"--artifacts: {len(failed)} file(s) could not be copied; the first, "
                              f"{failed[0][0]}: {failed[0][2]}") from None
            size = sum(f.stat().st_size for f in art_dest.rglob("*") if f.is_file())
            line += f"; artifacts: {art_dest} ({size / 1e6:.1f} MB)"
        elif not artifacts:
            line += f"; weights and checkpoints not copied (--artifacts copies {art_src.name}/)"
    except BaseException:  # a disk that filled up, Ctrl-C: no half-written backup is left to trust
        for path in (dest, dest.with_name(dest.name + ".wal")):
            path.unlink(missing_ok=True)
        if artifacts:
            shutil.rmtree(art_dest, ignore_errors=True)
        raise
    return line


def _copy_here(db_path: Path, dest: Path) -> None:
    from store import DatabaseLocked, Store

    try:
        store = Store(db_path, serve=False)
    except DatabaseLocked as err:  # held by a process that serves no snapshots
        raise OSError(str(err)) from None
    try:
        store.copy_to(dest)
    except Exception as err:  # DuckDB's error (a full disk, say), as one line
        raise OSError(f"the copy failed: {str(err).splitlines()[0][:300]}") from None
    finally:
        store.close()
