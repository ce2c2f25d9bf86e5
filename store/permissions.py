"""A hosted lab's files are readable by its own user only, whatever umask it was started with."""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077  # files 0600, folders 0700


def keep_private(db_path: str | os.PathLike) -> tuple[int, list[str]]:
    """From now on this process, and every worker it starts (a child inherits the umask), creates its
    files 0600 and its folders 0700; the lab's files already there (every name beside the database
    that begins with the database's: the file, its WAL, ``.artifacts/`` with the weights and resume
    checkpoints, the Optuna journal) lose their group and other bits. Symbolic links are left alone
    (chmod would follow them out of the lab). Returns (entries tightened, one line per entry that
    could not be)."""
    os.umask(PRIVATE_UMASK)
    path = Path(db_path).absolute()
    tightened, failed = 0, []
    for top in sorted(path.parent.glob(glob.escape(path.name) + "*")):
        for entry in _tree(top):
            try:
                mode = entry.lstat().st_mode
                if not stat.S_ISLNK(mode) and mode & PRIVATE_UMASK:
                    entry.chmod(stat.S_IMODE(mode) & ~PRIVATE_UMASK)
                    tightened += 1
            except OSError as err:  # another user's file beside ours: say so, go on
                failed.append(f"{entry}: {err.strerror or err}")
    return tightened, failed


def _tree(top: Path):
    """``top`` and, if it is a real folder, everything under it (links not followed)."""
    yield top
    if top.is_dir() and not top.is_symlink():
        for folder, dirs, files in os.walk(top, followlinks=False):
            for name in dirs + files:
                yield Path(folder, name)
