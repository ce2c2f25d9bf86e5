"""The saved weights beside a database: how much disk they take, and the clean-up of the folders of
runs that no longer exist (``python -m engine gc``: engine/cli/gc.py; the lab does it when it opens).

Each run's files live in ``<db>.artifacts/run-<id>/``: the weights ``train.weights`` keeps
(``after-task-<k>.pt``) and, while a run is unfinished, its resume checkpoint. Deleting a run
(``Store.delete_run``) removes its folder; a folder whose run is gone (deleted by an older version, or
by hand) is an orphan.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from store.schema import artifacts_dir

_RUN_DIR = re.compile(r"^run-(\d+)$")


def artifacts_root(db_path) -> Path:
    return artifacts_dir(db_path, 0).parent


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed meanwhile
    return total


def disk_usage(db_path) -> dict:
    """``{"total": bytes under <db>.artifacts, "runs": {run id: bytes}}``."""
    root = artifacts_root(db_path)
    runs: dict[int, int] = {}
    total = 0
    if root.is_dir():
        for entry in os.scandir(root):
            size = _size(Path(entry.path)) if entry.is_dir(follow_symlinks=False) else entry.stat(follow_symlinks=False).st_size
            total += size
            m = _RUN_DIR.match(entry.name)
            if m:
                runs[int(m.group(1))] = size
    return {"total": total, "runs": runs}


# what a metric row takes in the database and its log at their peak, about (measured: 10 to 22 bytes)
METRIC_ROW_DISK = 32


def disk_free_line(db_path) -> str:
    """"12.3 GB free on /dev/sda1 mounted at /srv": the disk that holds the database (Home)."""
    from engine.cost import human_bytes
    from store.disk import free_bytes, mount_of

    device, mount = mount_of(db_path)
    return f"{human_bytes(free_bytes(db_path))} free on {device} mounted at {mount}"


def check_free_disk(store, costs) -> None:
    """``ConfigError`` unless the disk that holds the database has room for what these runs will write
    (their metric rows, weights and resume checkpoints), checked before they are queued."""
    from engine.config import ConfigError
    from engine.cost import human_bytes
    from store.disk import free_bytes, mount_of

    need = sum(c.metric_rows * METRIC_ROW_DISK + c.weights_disk + c.checkpoint_disk for c in costs)
    free = free_bytes(store.path)
    if need > free:
        device, mount = mount_of(store.path)
        runs = f"these {len(costs)} runs" if len(costs) > 1 else "this run"
        raise ConfigError([f"disk: {runs} would write about {human_bytes(need)} (metrics, weights and checkpoints), "
                           f"and {device} mounted at {mount} has {human_bytes(free)} free ({store.path}): free "
                           "some space, or pass --db on another disk"])


def remove_orphans(store) -> tuple[list[Path], int]:
    """Remove the artifact folders of runs that are not in the store; returns them and the bytes freed."""
    root = artifacts_root(store.path)
    if not root.is_dir():
        return [], 0
    known = {r[0] for r in store.sql("SELECT id FROM runs")}
    removed, freed = [], 0
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        m = _RUN_DIR.match(entry.name)
        if m and int(m.group(1)) not in known and entry.is_dir(follow_symlinks=False):
            size = _size(Path(entry.path))
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
            freed += size
    return removed, freed
