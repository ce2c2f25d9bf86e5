"""Reading a database that another process holds: the owner serves snapshots over a Unix socket.

DuckDB lets one process open a file read-write and no other process open it at all meanwhile (not
even read-only; stack-facts.md), so a CLI cannot read the file of a running lab. The process that
owns a ``Store`` listens on ``<db>.sock`` beside the file (mode 0600: only its user may connect; removed
on close). A reader sends one JSON line ``{"snapshot": PATH}`` naming a new file in a directory of its
own; the owner writes a consistent copy of the whole database there (``Store.copy_to``: one snapshot
taken between two writer transactions) and answers ``{"ok": PATH}`` or ``{"error": ...}``. The reader
opens the copy and removes it when done (``store.store.open_snapshot``). A copy costs about the file's size in disk and time, which is
what a read-only command of the CLI can afford; the lab's own pages read the live file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

MAX_REQUEST = 4096
SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 107 bytes on Linux


def socket_path(db_path: str | os.PathLike) -> Path:
    db_path = Path(db_path).absolute()
    return db_path.with_name(db_path.name + ".sock")


class SnapshotServer:
    def __init__(self, store, path: Path, sock: socket.socket):
        self.store, self.path, self.sock = store, path, sock
        self._inode = os.stat(path).st_ino
        self._thread = threading.Thread(target=self._serve, name="snapshot-server", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, store) -> "SnapshotServer | None":
        """Serve snapshots of ``store``; None where a socket cannot be made (a path too long for
        AF_UNIX, a read-only directory): read-only CLI commands then report the lock as before."""
        path = socket_path(store.path)
        if not hasattr(socket, "AF_UNIX") or len(os.fsencode(path)) > SOCKET_PATH_MAX:
            return None
        try:
            # Bind in a private directory and rename into place, so the socket is never reachable
            # before it is 0600. A socket left by a killed owner is replaced: this process holds the
            # database, so no other owner serves it.
            private = tempfile.mkdtemp(prefix=".sock-", dir=path.parent)
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                bound = os.path.join(private, "s")
                sock.bind(bound)
                os.chmod(bound, 0o600)
                sock.listen(8)
                os.replace(bound, path)
            finally:
                shutil.rmtree(private, ignore_errors=True)
        except OSError:
            return None
        return cls(store, path, sock)

    def stop(self) -> None:
        try:
            if os.stat(self.path).st_ino == self._inode:  # still ours
                os.unlink(self.path)
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            with conn:
                try:
                    conn.settimeout(10)
                    reply = self._answer(_read_line(conn))
                    conn.sendall((json.dumps(reply) + "\n").encode())
                except (OSError, ValueError):
                    continue

    def _answer(self, request: bytes) -> dict:
        try:
            dest = Path(json.loads(request)["snapshot"])
        except (ValueError, KeyError, TypeError):
            return {"error": 'send one JSON line {"snapshot": "/absolute/path/of/a/new/file.duckdb"}'}
        if not dest.is_absolute() or dest.exists() or not dest.parent.is_dir():
            return {"error": f"{str(dest)[:200]}: the snapshot must be a new file in an existing directory"}
        try:
            self.store.copy_to(dest)
        except Exception as err:  # the writer's error, as one line for the reader
            return {"error": f"the snapshot failed: {str(err).splitlines()[0][:300]}"}
        return {"ok": str(dest)}


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(MAX_REQUEST)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.split(b"\n", 1)[0]


def request_snapshot(db_path: str | os.PathLike, dest: str | os.PathLike, timeout: float = 300.0) -> bool:
    """Ask the process that holds ``db_path`` to write a consistent copy of it to ``dest`` (a new file
    in an existing directory). False when no owner answers (no socket, or one left by a killed
    process); ``OSError`` with the owner's one-line reason when it refuses or the copy fails."""
    path = socket_path(db_path)
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall((json.dumps({"snapshot": str(Path(dest).absolute())}) + "\n").encode())
            reply = json.loads(_read_line(conn) or b"{}")
    except (ConnectionRefusedError, FileNotFoundError):  # a socket left by a killed owner
        return False
    except ValueError as err:
        raise OSError(f"the lab holding {db_path} answered badly: {err}") from None
    if "ok" not in reply:
        raise OSError(reply.get("error", "no answer from the lab holding the database"))
    return True
