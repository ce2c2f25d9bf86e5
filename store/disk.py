"""Disk space where the lab writes: how much is free, and one line naming the disk when a write found none."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_FULL_TEXT = ("no space left on device", "disk quota exceeded", "file too large")


def _nearest_existing(path: str | os.PathLike) -> Path:
    """``path``, or its nearest folder that exists (a file not yet written is on its folder's disk)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes (for this user) on the filesystem that holds ``path`` (or its nearest existing folder)."""
    return shutil.disk_usage(_nearest_existing(path)).free


def mount_of(path: str | os.PathLike) -> tuple[str, str]:
    """(device, mount point) of the filesystem holding ``path``, from /proc/mounts (the mount point
    alone, as the device, where that cannot be read)."""
    real = os.path.realpath(_nearest_existing(path))
    best = ("", "/")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount = line.split()[:2]
            mount = mount.replace("\\040", " ")
            if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best[1]):
                best = (device, mount)
    except OSError:
        pass
    return best[0] or best[1], best[1]


def is_disk_full(err: BaseException, path: str | os.PathLike | None = None) -> bool:
    """Whether ``err`` is a write that found no space: an OSError with ENOSPC (or a quota, or a file
    size limit), a DuckDB error saying so, or a torch write that failed on a disk now full."""
    if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
        return True
    text = str(err).lower()
    if any(marker in text for marker in _FULL_TEXT):
        return True
    # torch.save says only "file write failed"; the disk it wrote on says why
    return path is not None and "write failed" in text and free_bytes(path) < 1 << 20


def disk_full_message(path: str | os.PathLike, err: BaseException) -> str | None:
    """"no space left on DEVICE mounted at MOUNT (PATH)" if ``err`` is a full disk, else None. PATH is
    the file the error names, else ``path``."""
    if not is_disk_full(err, path):
        return None
    named = re.search(r'file "([^"]+)"', str(err)) or re.search(r"file (/\S+?):", str(err))
    target = named.group(1) if named else getattr(err, "filename", None) or path
    device, mount = mount_of(target)
    return f"no space left on {device} mounted at {mount} ({target})"
