"""The lab's DuckDB file: one owning process, one writer thread, a cursor per reader.

DuckDB lets one process open a file read-write (stack-facts.md). The process that opens a ``Store``
owns the file; training runs in child processes that send their metrics here. Every write goes
through one writer thread, which inserts metric batches as Arrow tables (never row by row) and keeps
writes in the order they were made, so a run's status changes only after its metrics are in.
Readers call ``cursor()`` (or ``sql``/``df``) and get a cursor of their own.

Who may change what (store/policy.py): ``access`` is the hosted lab's policy (``engine.core.access.Access``),
None for a local lab. The user actions here (``annotate_run``, ``delete_run``, ``check_export``) and in the
run manager take a ``principal``; in a local lab it defaults to the local user, in a hosted one it must be
given (no default exists) and its role and quotas are looked up again in the policy by its email, so a
page cannot act for nobody or raise its own role. Every action and every refusal goes to the ``audit`` table.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Mapping

import duckdb
import numpy as np
import pyarrow as pa

from store.disk import disk_full_message
from store.policy import AccessPolicy, LocalUser
from store.schema import FINAL_STATUSES, SCHEMA_VERSION, NotALabFile, artifacts_dir, check_lab_file, migrate
from store.snapshot import SnapshotServer, request_snapshot

METRIC_SCHEMA = pa.schema(
    [
        ("run_id", pa.int32()),
        ("step", pa.int64()),
        ("task", pa.int16()),
        ("metric", pa.string()),
        ("value", pa.float64()),
    ]
)

# beside the app, wherever the lab is started from; CL_LAB_DB (or --db) chooses another file
DEFAULT_DB = Path(os.environ.get("CL_LAB_DB", Path(__file__).resolve().parent.parent / "lab.duckdb"))


class DatabaseLocked(RuntimeError):
    """The file is open read-write in another process (a running lab, or a CLI run)."""


class NotADatabase(ValueError):
    """The path is not a DuckDB database the lab can open (another kind of file, a directory, a path
    that cannot be opened); the message is one line: the path, what it is, what is expected."""


def _not_a_database(path: Path, err: Exception) -> str:
    text = str(err)
    if (full := disk_full_message(path, err)) is not None:
        return f"{path}: {full}"
    if path.is_dir():
        what = "is a directory"
    elif "not a valid DuckDB database" in text:
        what = "is not a DuckDB database"
    else:
        what = "cannot be opened (" + text.rsplit(": ", 1)[-1].strip()[:120] + ")"
    return f"{path}: {what}; expected the lab's DuckDB database file, or the name of a new one"


def _lock_message(path: Path, err: Exception) -> str:
    holder = ""
    text = str(err)
    if "PID" in text:
        holder = " (process " + text.split("PID", 1)[1].split(")")[0].strip() + ")"
    return (
        f"{path} is in use by another CL Lab process{holder}, probably a running lab or a "
        "headless run. DuckDB lets only one process write a file: stop that process, launch the "
        "run from the lab in the browser instead, or pass --db with another file."
    )


def _count(table: pa.Table, into: dict[int, int]) -> None:
    runs, counts = np.unique(table.column("run_id").to_numpy(), return_counts=True)
    for run_id, n in zip(runs.tolist(), counts.tolist()):
        into[run_id] = into.get(run_id, 0) + n


# The store's own bound on what a user writes on a run, whatever its caller checked: the lab's limits are
# far lower (``[limits]`` in lab.toml, checked where the text enters: engine/annotations.py).
MAX_ANNOTATION_CHARS = 1_000_000


def annotation_problem(fields: Mapping[str, Any]) -> str | None:
    """Why these run fields (name, notes: text; tags: a list of texts) cannot be stored, or None."""
    for column, value in fields.items():
        texts = value if column == "tags" and isinstance(value, (list, tuple)) else [value]
        if column == "tags" and texts is not value:
            return f"tags: must be a list of texts, not {type(value).__name__}"
        for text in texts:
            if not isinstance(text, str):
                return f"{column}: must be text, not {type(text).__name__}"
        if sum(map(len, texts)) > MAX_ANNOTATION_CHARS:
            return f"{column}: has more than the {MAX_ANNOTATION_CHARS:,} characters the store keeps"
    return None


def as_metric_table(batch: pa.Table | Mapping[str, Any]) -> pa.Table:
    """A metrics batch (an Arrow table, or a mapping of equal-length columns) as an Arrow table."""
    if isinstance(batch, pa.Table):
        return batch.cast(METRIC_SCHEMA) if batch.schema != METRIC_SCHEMA else batch
    return pa.table({f.name: pa.array(batch[f.name], type=f.type) for f in METRIC_SCHEMA}, schema=METRIC_SCHEMA)


class Store:
    def __init__(self, path: str | os.PathLike = DEFAULT_DB, *, flush_rows: int = 20_000, serve: bool = True,
                 access: AccessPolicy | None = None, read_only: bool = False, disk_wait_s: float = 60.0):
        self.path = Path(path)
        self._access = access  # a hosted lab's policy; None: a local lab (read-only: see ``access``)
        # read_only: the file must exist and be a lab's; nothing is created or migrated (an older one is read
        # through an upgraded copy)
        if read_only and not self.path.exists():
            raise NotADatabase(f"{self.path}: there is no such file; expected the lab's DuckDB database file")
        self.created = not self.path.exists()  # by this open: a refused command removes it (``discard_if_new``)
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as err:
            if "lock" in str(err).lower():
                raise DatabaseLocked(_lock_message(self.path, err)) from None
            self._remove_if_created()
            raise NotADatabase(_not_a_database(self.path, err)) from None
        except duckdb.Error as err:
            self._remove_if_created()
            raise NotADatabase(_not_a_database(self.path, err)) from None
        self.remove_on_close: Path | None = None  # a snapshot's own directory (store/snapshot.py)
        try:
            self.migrated_from = check_lab_file(self._con.cursor())
            if read_only and self.migrated_from < SCHEMA_VERSION:
                self._read_an_upgraded_copy()
            elif not read_only:
                migrate(self._con.cursor())
        except (NotALabFile, duckdb.Error, OSError) as err:  # another program's file, a newer lab's, a full disk
            self._con.close()
            self._remove_if_created()
            if self.remove_on_close is not None:
                shutil.rmtree(self.remove_on_close, ignore_errors=True)
            raise NotADatabase(f"{self.path}: {disk_full_message(self.path, err) or err}") from None
        self._queue: queue.Queue = queue.Queue()
        self._flush_rows = flush_rows
        self.writer_error: BaseException | None = None
        # metric rows per run: handed to the store, and committed to the file (the shutdown report)
        self.rows_received: dict[int, int] = {}
        self.rows_committed: dict[int, int] = {}
        # A write that finds the disk full is tried again (in order: nothing after it is written first)
        # for up to disk_wait_s; then its metric rows are lost, counted here with the reason, so the run
        # fails (never "finished") and resumes from a checkpoint whose metrics are all in the file.
        self.disk_wait_s = disk_wait_s
        self.disk_full: str | None = None  # while the writer waits for space: one line naming the disk
        self.rows_lost: dict[int, int] = {}
        self.lost_because: dict[int, str] = {}
        self._count_lock = threading.Lock()
        self._accepting = threading.Event()
        self._accepting.set()
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()
        self._closed = False
        self._server = None
        if serve:  # read-only CLI commands get a snapshot through it while this process holds the file
            self._server = SnapshotServer.start(self)

    # ---- reading -------------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for this thread: DuckDB raises if threads share one."""
        if self._con is None:  # closed (the connection object is dropped on close)
            raise duckdb.ConnectionException(f"the lab's database {self.path} is closed")
        return self._con.cursor()

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        with self.cursor() as cur:
            return cur.execute(query, params or []).fetchall()

    def df(self, query: str, params: list | None = None):
        with self.cursor() as cur:
            return cur.execute(query, params or []).df()

    # ---- writing (through the writer thread) ---------------------------------------------------
    def call(self, fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Future:
        """Run ``fn(cursor)`` on the writer thread, after every write queued before it, inside the
        writer's transaction (``fn`` must not begin or commit one)."""
        fut: Future = Future()
        self._queue.put(("call", fn, fut))
        return fut

    def copy_to(self, path: str | os.PathLike) -> Path:
        """A consistent copy of the whole database in another file, made while the lab goes on
        (a CLI, a report or a colleague can open the copy: DuckDB lets one process write a file)."""
        path = Path(path)

        def copy(cur):
            name = cur.execute("SELECT current_database()").fetchone()[0]
            cur.execute("ATTACH ? AS lab_copy", [str(path)])
            try:
                cur.execute(f'COPY FROM DATABASE "{name}" TO lab_copy')
            finally:
                cur.execute("DETACH lab_copy")
            return path

        fut: Future = Future()
        self._queue.put(("outside", copy, fut))  # ATTACH and DETACH cannot run inside a transaction
        return fut.result()

    def write(self, query: str, params: list | None = None) -> Any:
        """Execute one write statement on the writer thread and wait for it."""
        return self.call(lambda cur: cur.execute(query, params or []).fetchall()).result()

    def add_metrics(self, batch: pa.Table | Mapping[str, Any]) -> None:
        """Queue a batch of metric rows; the writer inserts batches together as Arrow tables."""
        table = as_metric_table(batch)
        if table.num_rows:
            self._accepting.wait()  # after ``final_flush`` began, never: the process is about to exit
            with self._count_lock:  # reader threads of several workers
                _count(table, self.rows_received)
            self._queue.put(("metrics", table, None))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is in the file. With a ``timeout`` (from a signal
        handler), the wait runs in a thread of its own, so a main thread stopped by the signal inside
        a queue operation cannot deadlock it; True if all was committed in time."""
        if timeout is None:
            self.call(lambda cur: None).result()
            return True
        if self._closed:
            return True
        done = threading.Thread(target=self.flush, name="store-flush", daemon=True)
        done.start()
        done.join(timeout)
        return not done.is_alive()

    def final_flush(self, timeout: float = 10.0) -> bool:
        """Stop taking metric batches and commit every one taken so far: the process is about to end."""
        self._accepting.clear()
        return self.flush(timeout)

    def row_report(self) -> list[str]:
        """One line a run: the metric rows this process took and those committed."""
        return [f"run {run_id}: {n} metric rows received, {self.rows_committed.get(run_id, 0)} committed"
                for run_id, n in sorted(self.rows_received.items())]

    def create_run(self, config: Mapping[str, Any], *, name: str, owner: str | None = None,
                   status: str = "queued", total_steps: int | None = None, sweep_id: int | None = None,
                   sweep_phase: str | None = None) -> int:
        text = json.dumps(config)
        return self.write(
            "INSERT INTO runs (name, config, status, owner, total_steps, sweep_id, sweep_phase)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [name, text, status, owner, total_steps, sweep_id, sweep_phase],
        )[0][0]

    def artifacts_dir(self, run_id: int) -> Path:
        return artifacts_dir(self.path, run_id)

    def update_run(self, run_id: int, **fields: Any) -> None:
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [v if not isinstance(v, (dict, list)) else json.dumps(v) for v in fields.values()]
        self.write(f"UPDATE runs SET {sets} WHERE id = ?", [*values, run_id])

    def set_status(self, run_id: int, status: str, *, error: str | None = None,
                   error_step: int | None = None, only_if: tuple[str, ...] | None = None) -> bool:
        """Set a run's status (and its start or end time). ``only_if`` guards against a race with
        another status change: the update happens only while the status is one of those."""
        stamp = {"running": ", started_at = current_localtimestamp()"}.get(status, "")
        if status in FINAL_STATUSES:
            stamp = ", finished_at = current_localtimestamp()"
        guard = ""
        params: list[Any] = [status, error, error_step, run_id]
        if only_if:
            guard = f" AND status IN ({', '.join('?' for _ in only_if)})"
            params += list(only_if)
        rows = self.write(
            f"UPDATE runs SET status = ?, error = ?, error_step = ?{stamp} WHERE id = ?{guard} RETURNING id",
            params,
        )
        return bool(rows)

    def annotate_run(self, run_id: int, *, name: str | None = None, notes: str | None = None,
                     tags: list[str] | None = None, principal=None) -> bool:
        """Rename a run, or set its notes or tags (the fields given; notes "" or None clears them). Who may
        is checked first (the policy's refusal), then the store's own bound (``annotation_problem``:
        ValueError, one line; the lab checks its limits before, engine/annotations.py), then all are
        written in one statement with its audit row: a refused value writes nothing. False if there is
        no such run."""
        who = self.authorize(principal, "annotate", run_id=run_id)
        fields = {column: value for column, value in (("name", name), ("notes", notes), ("tags", tags))
                  if value is not None}
        if (problem := annotation_problem(fields)) is not None:
            raise ValueError(problem)
        if "notes" in fields and not fields["notes"].strip():
            fields["notes"] = None
        if not fields:
            return bool(self.sql("SELECT 1 FROM runs WHERE id = ?", [run_id]))
        sets = ", ".join(f"{column} = ?" for column in fields)  # column names from the code, values as parameters

        def annotate(cur):
            found = cur.execute(f"UPDATE runs SET {sets} WHERE id = ? RETURNING id", [*fields.values(), run_id]).fetchall()
            if found:
                self._audit(cur, who, "annotate", run_id=run_id, detail="set " + ", ".join(fields))
            return bool(found)
        return self.call(annotate).result()

    def start_task(self, run_id: int, task: int, start_step: int, wait: bool = True) -> None:
        fut = self.call(lambda cur: cur.execute("INSERT OR REPLACE INTO task_boundaries VALUES (?, ?, ?, NULL)",
                                                [run_id, task, start_step]))
        if wait:
            fut.result()

    def end_task(self, run_id: int, task: int, end_step: int, wait: bool = True) -> None:
        fut = self.call(lambda cur: cur.execute("UPDATE task_boundaries SET end_step = ? WHERE run_id = ? AND task = ?",
                                                [end_step, run_id, task]))
        if wait:
            fut.result()

    def delete_run(self, run_id: int, principal=None) -> None:
        """Delete a run, its metrics and its files (``AccessDenied`` for one who may not: nothing deleted)."""
        who = self.authorize(principal, "delete", run_id=run_id)

        def delete(cur):  # one transaction, as every batch of writes
            name = cur.execute("SELECT name FROM runs WHERE id = ?", [run_id]).fetchone()
            for table, key in (("metrics", "run_id"), ("task_boundaries", "run_id"), ("tradeoffs", "run_id"),
                               ("runs", "id")):
                cur.execute(f"DELETE FROM {table} WHERE {key} = ?", [run_id])
            if name:
                self._audit(cur, who, "delete", run_id=run_id, detail=f"deleted {name[0]!r}")
        self.call(delete).result()
        shutil.rmtree(artifacts_dir(self.path, run_id), ignore_errors=True)

    # ---- who may do what (store/policy.py) ------------------------------------------------------
    @property
    def access(self) -> AccessPolicy | None:
        """The hosted lab's policy (None: a local lab), fixed when the store is opened: no caller can
        turn a hosted store into a local one."""
        return self._access

    def acting(self, principal=None, action: str = "launch"):
        """The principal an action is checked against. Local lab: the one given, else the local user.
        Hosted lab: one must be given, and its role and quotas are the policy's for its email now."""
        if self.access is None:
            return principal or LocalUser()
        if principal is None or principal.local:
            reason = "nobody is logged in (a hosted lab takes actions only from a logged-in user)"
            self.audit("", None, action, allowed=False, detail=reason)
            raise self.access.denial("an anonymous visitor", action, reason)
        return self._policy_principal(principal.email, action)

    def _policy_principal(self, email: str, action: str):
        """The policy's principal for ``email``; a refusal is written to the audit table."""
        try:
            return self.access.principal(email)
        except PermissionError as err:
            self.audit(str(email), None, action, allowed=False, detail=str(err))
            raise

    def authorize(self, principal, action: str, *, run_id: int | None = None, sweep_id: int | None = None):
        """``acting(principal)`` if it may take ``action`` (one of ``store.policy.ACTIONS``) on the run
        or sweep, else the policy's refusal (who, what, which, why), written to the audit table.
        A local lab refuses nothing. A run or sweep that is not there is left to the caller to report."""
        who = self.acting(principal, action)
        if self.access is None:
            return who
        rows = []
        if run_id is not None:
            rows = self.sql("SELECT coalesce(owner, '') FROM runs WHERE id = ?", [run_id])
        elif sweep_id is not None:
            rows = self.sql("SELECT coalesce(owner, '') FROM sweeps WHERE id = ?", [sweep_id])
        reason = self.access.refusal(who, action, rows[0][0] if rows else None)  # '': a run of nobody's (an older file)
        if reason is not None:
            self.audit(who, None, action, run_id=run_id, sweep_id=sweep_id, allowed=False, detail=reason)
            raise self.access.denial(who, action, reason, run_id, sweep_id)
        return who

    def sweep_principal(self, sweep_id: int):
        """Who the runs a sweep queues later (search trials, a reality check's test phase) are queued
        for: its owner as the policy has them now (None in a local lab: the manager's defaults)."""
        if self.access is None:
            return None
        owner = next(iter(self.sql("SELECT owner FROM sweeps WHERE id = ?", [sweep_id])), (None,))[0]
        return self._policy_principal(owner or "", "launch")

    def check_export(self, run_ids, principal=None, detail: str = "export") -> None:
        """Before a run's data leaves the lab (downloads, reports): ``AccessDenied`` unless the principal
        may export every one of ``run_ids``; then one audit row a run (``detail``: what was exported)."""
        ids = [int(r) for r in ([run_ids] if isinstance(run_ids, int) else run_ids)]
        who = None
        for run_id in ids:
            who = self.authorize(principal, "export", run_id=run_id)
        for run_id in ids:
            self.audit(who, None, "export", run_id=run_id, detail=detail)

    def audit(self, who, role: str | None, action: str, *, run_id: int | None = None, sweep_id: int | None = None,
              allowed: bool = True, detail: str | None = None) -> None:
        """Write one audit row (``who``: a principal, or an email with ``role``) and wait for it."""
        self.call(lambda cur: self._audit(cur, who, action, role=role, run_id=run_id, sweep_id=sweep_id,
                                          allowed=allowed, detail=detail)).result()

    @staticmethod
    def _audit(cur, who, action: str, *, role: str | None = None, run_id: int | None = None,
               sweep_id: int | None = None, allowed: bool = True, detail: str | None = None) -> None:
        email, role = (who, role) if isinstance(who, str) else (who.email, who.role)
        cur.execute("INSERT INTO audit (who, role, action, run_id, sweep_id, allowed, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [email, role, action, run_id, sweep_id, allowed, detail])

    def create_sweep(self, name: str, kind: str, spec: Mapping[str, Any], owner: str | None = None) -> int:
        return self.write("INSERT INTO sweeps (name, kind, spec, owner) VALUES (?, ?, ?, ?) RETURNING id",
                          [name, kind, json.dumps(spec), owner])[0][0]

    def rewind_run(self, run_id: int, step: int, *, task: int) -> None:
        """Take a run back to the end of ``task`` at ``step`` and queue it (resuming from a checkpoint):
        one transaction drops its metrics after ``step`` and the boundaries of the tasks started at
        or after it. Refused (ValueError) unless every step up to ``step`` is in the file and ``task``
        ended there: a checkpoint ahead of the committed metrics would leave a hole."""

        def rewind(cur):
            have = cur.execute("SELECT count(DISTINCT step) FROM metrics WHERE run_id = ? AND metric = 'train_loss'"
                               " AND step BETWEEN 1 AND ?", [run_id, step]).fetchone()[0]
            ended = cur.execute("SELECT end_step FROM task_boundaries WHERE run_id = ? AND task = ?",
                                [run_id, task]).fetchone()
            if have != step or ended is None or ended[0] != step:
                raise ValueError(f"run {run_id}: the file has {have} of the {step} training steps before the "
                                 f"checkpoint (task {task} ended at step {ended[0] if ended else None}): the metrics "
                                 "the checkpoint follows were not all committed, so it cannot be resumed")
            cur.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", [run_id, step])
            cur.execute("DELETE FROM task_boundaries WHERE run_id = ? AND start_step >= ?", [run_id, step])
            cur.execute("UPDATE runs SET status = 'queued', error = NULL, error_step = NULL, finished_at = NULL,"
                        " last_step = ? WHERE id = ?", [step, run_id])
            self.rows_lost.pop(run_id, None)  # lost after the checkpoint: trained again
            self.lost_because.pop(run_id, None)

        self.call(rewind).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.stop()
        self._queue.put(("stop", None, None))
        self._writer.join()
        self._con.close()
        # Drop the connection object too: a closed one still referenced at interpreter exit (the lab's
        # Store lives in Streamlit's resource cache until then) makes duckdb's bindings print
        # "nanobind: leaked N instances" on every stop.
        self._con = None
        if self.remove_on_close is not None:
            shutil.rmtree(self.remove_on_close, ignore_errors=True)

    def _read_an_upgraded_copy(self) -> None:
        """Reading a file of an older lab: it is left as it is, and a copy in a directory of its own
        (removed on close) is upgraded and read instead."""
        self._con.close()
        workdir = Path(tempfile.mkdtemp(prefix="cl-lab-read-"))
        self.remove_on_close = workdir
        copy = workdir / self.path.name
        shutil.copyfile(self.path, copy)
        if (wal := self.path.with_name(self.path.name + ".wal")).exists():
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        self._con = duckdb.connect(str(copy))
        migrate(self._con.cursor())

    def _remove_if_created(self) -> None:
        if self.created:
            for leftover in (self.path, self.path.with_name(self.path.name + ".wal")):
                leftover.unlink(missing_ok=True)

    def discard_if_new(self) -> None:
        """Close, and remove the file if this store created it and nothing was written since: a command
        refused before it wrote (a sweep over the cost limit) leaves no empty database behind."""
        empty = self._con is not None and not self.sql(
            "SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM sweeps) + (SELECT count(*) FROM audit)")[0][0]
        self.close()
        if empty:
            self._remove_if_created()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        cur = self._con.cursor()
        while True:
            # Block for the first item, then take whatever else is already queued, and apply them all
            # in one transaction: under load writes coalesce (one commit for many), and an idle
            # writer applies a single write at once (low latency for live views).
            items = [self._queue.get()]
            while len(items) < 1000:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            work: list = []
            for item in items:
                kind, payload, fut = item
                if kind not in ("stop", "outside"):
                    work.append(item)
                    continue
                if work:  # what came before, in its transaction
                    self._apply_on_disk(cur, work)
                    work = []
                if kind == "stop":
                    cur.close()
                    return
                try:  # outside any transaction (ATTACH, DETACH)
                    fut.set_result(payload(cur))
                except BaseException as err:
                    fut.set_exception(err)
            if work:
                self._apply_on_disk(cur, work)

    def _apply_on_disk(self, cur, items: list) -> None:
        """``_apply``, tried again while the disk is full: every second, up to ``disk_wait_s``."""
        deadline = time.monotonic() + self.disk_wait_s
        while True:
            full = self._apply(cur, items, last_try=time.monotonic() >= deadline)
            if full is None:
                if self.disk_full is not None:
                    print("store writer: there is space again; the waiting writes are in", file=sys.stderr, flush=True)
                self.disk_full = None
                return
            if self.disk_full is None:
                print(f"store writer: {full}; waiting up to {self.disk_wait_s:g} s for space", file=sys.stderr,
                      flush=True)
            self.disk_full = full
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _apply(self, cur, items: list, last_try: bool = True) -> str | None:
        """Apply writes in order in one transaction; results are handed back after the commit, so a
        caller reading next sees its write. If anything fails, each write is applied again alone, so
        one bad write fails alone. A full disk fails none of them unless ``last_try``: nothing is
        applied, and the line naming the disk is returned for the caller to try again."""
        results = []
        try:
            cur.execute("BEGIN TRANSACTION")
            pending: list[pa.Table] = []
            for kind, payload, fut in items:
                if kind == "metrics":
                    pending.append(payload)
                    continue
                if pending:  # keep order: metrics queued before a call are written before it
                    self._insert(cur, pending)
                    pending = []
                results.append((fut, payload(cur)))
            if pending:
                self._insert(cur, pending)
            cur.execute("COMMIT")
            for kind, payload, _ in items:
                if kind == "metrics":
                    _count(payload, self.rows_committed)
        except BaseException as err:
            try:
                cur.execute("ROLLBACK")
            except duckdb.Error:
                pass
            full = disk_full_message(self.path, err)
            if full is not None and not last_try:
                return full
            if len(items) > 1:
                for item in items:
                    self._apply(cur, [item])
                return None
            kind, payload, fut = items[0]
            if fut is not None:
                fut.set_exception(err)
            else:
                self.writer_error = err
                for run_id, n in zip(*np.unique(payload.column("run_id").to_numpy(), return_counts=True)):
                    self.rows_lost[int(run_id)] = self.rows_lost.get(int(run_id), 0) + int(n)
                    self.lost_because[int(run_id)] = full or str(err).splitlines()[0]
                print(f"store writer: a batch of {payload.num_rows} metric rows failed: {full or err}", file=sys.stderr)
            return None
        for fut, result in results:
            fut.set_result(result)
        return None

    def _insert(self, cur, tables: list[pa.Table]) -> None:
        """Insert metric batches as one Arrow table, and move each run's ``last_step`` on."""
        batch = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        cur.register("metric_batch", batch)
        try:
            cur.execute("INSERT INTO metrics SELECT run_id, step, task, metric, value FROM metric_batch")
        finally:
            cur.unregister("metric_batch")
        runs = batch.column("run_id").to_numpy()
        steps = batch.column("step").to_numpy()
        for run_id in np.unique(runs):
            last = int(steps[runs == run_id].max())
            cur.execute("UPDATE runs SET last_step = ? WHERE id = ? AND coalesce(last_step, 0) < ?",
                        [last, int(run_id), last])


def open_snapshot(db_path: str | os.PathLike, timeout: float = 300.0):
    """A ``Store`` on a fresh snapshot of the database that another process holds, removed on close;
    None when no owner answers (no socket, or a socket left by a killed process)."""
    workdir = Path(tempfile.mkdtemp(prefix="cl-lab-snapshot-"))
    try:
        if not request_snapshot(db_path, workdir / "snapshot.duckdb", timeout):
            raise OSError("no owner")
        store = Store(workdir / "snapshot.duckdb", serve=False)
    except (OSError, ValueError):
        shutil.rmtree(workdir, ignore_errors=True)
        return None
    store.remove_on_close = workdir
    return store
