"""A run's files beside the database, by name: where they live, how much disk they take, the resume
checkpoint's two names, and the clean-up of the folders of runs that no longer exist
(``python -m engine gc``; the lab does it when it opens).

Each run's files live in ``<db>.artifacts/run-<id>/`` (``store.schema.artifacts_dir``: the store deletes
and backs up those folders): the weights ``train.weights`` keeps (``after-task-<k>.pt``, written by the
training loop into the folder it is given) and, while a run is unfinished, its resume checkpoint
``resume.pt``, first written as ``resume.pt.pending`` and renamed once the metrics before it are
committed (``promote``). Deleting a run (``Store.delete_run``) removes its folder; a folder whose run
is gone (deleted by an older version, or by hand) is an orphan.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from engine.training.checkpoint import CheckpointError, read_header
from engine.training.cost import human_bytes
from store import queue
from store.disk import free_bytes, mount_of
from store.schema import artifacts_dir

RESUME_FILE = "resume.pt"
PENDING_SUFFIX = ".pending"
_RUN_DIR = re.compile(r"^run-(\d+)$")

RESUMABLE = ("failed", "cancelled")  # a diverged run would diverge again; the others are not stopped


# ---- the resume checkpoint ---------------------------------------------------------------------------------

def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / RESUME_FILE


def pending_path(final: str | os.PathLike) -> Path:
    """Where a run writes a checkpoint before the owner promotes it (``promote``)."""
    final = Path(final)
    return final.with_name(final.name + PENDING_SUFFIX)


def run_checkpoint(store, run_id: int) -> Path:
    """The run's resume checkpoint (promoted: the one it resumes from)."""
    return checkpoint_path(store.artifacts_dir(run_id))


def promote(store, run_id: int, pending: str | os.PathLike, final: str | os.PathLike) -> None:
    """Make ``pending`` the run's checkpoint once every metric queued before this call is committed:
    the rename runs on the store's writer thread right after its commit, so a checkpoint never gets
    ahead of the metrics in the file (a lab killed in between resumes from the previous checkpoint).
    Never once a batch of the run's metrics was lost (a full disk): the run resumes from before it."""
    pending, final = Path(pending), Path(final)

    def rename(fut) -> None:
        if fut.exception() is None and not store.rows_lost.get(run_id) and pending.exists():
            os.replace(pending, final)

    store.call(lambda cur: None).add_done_callback(rename)


def resume_point(store, run_id: int) -> dict | None:
    """The header of the run's checkpoint if the run is stopped and has one it can resume from."""
    path = run_checkpoint(store, run_id)
    if queue.run_status(store, run_id) not in RESUMABLE or not path.exists():
        return None
    try:
        return read_header(path)
    except CheckpointError:
        return None


def discard(path: str | os.PathLike) -> None:
    """Remove a run's checkpoint, promoted or not."""
    pending_path(path).unlink(missing_ok=True)
    Path(path).unlink(missing_ok=True)


# ---- the disk they take --------------------------------------------------------------------------------------

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


def disk_free_line(db_path) -> str:
    """"12.3 GB free on /dev/sda1 mounted at /srv": the disk that holds the database (Home)."""
    device, mount = mount_of(db_path)
    return f"{human_bytes(free_bytes(db_path))} free on {device} mounted at {mount}"


def remove_orphans(store) -> tuple[list[Path], int]:
    """Remove the artifact folders of runs that are not in the store; returns them and the bytes freed."""
    root = artifacts_root(store.path)
    if not root.is_dir():
        return [], 0
    known = queue.run_ids(store)
    removed, freed = [], 0
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        m = _RUN_DIR.match(entry.name)
        if m and int(m.group(1)) not in known and entry.is_dir(follow_symlinks=False):
            size = _size(Path(entry.path))
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
            freed += size
    return removed, freed

