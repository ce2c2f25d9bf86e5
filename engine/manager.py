"""The run manager: runs up to N runs at once in worker processes and queues the rest.

It lives in the process that owns the store (the lab, or a headless CLI run). Workers are started
ahead of need (``python -m engine.worker``, never multiprocessing: see stack-facts.md) so a launched
run does not wait for torch and Lightning to import. Each worker has a reader thread that passes its
metric batches to the store's writer; if a worker dies, its run is marked failed with the reason, and
every metric it sent before is kept.

GPUs: counted without initialising CUDA here (``engine.devices``). A run whose ``train.device`` is
``cuda``, ``cuda:N`` or ``auto`` (on a machine with a GPU) is a GPU run: it goes to a worker started
with ``CUDA_VISIBLE_DEVICES`` set to one GPU, at most ``runs_per_gpu`` at a time on each GPU (default
1). CPU runs go to workers that see no GPU, up to ``max_parallel`` at a time (default: the CPU count),
alongside the GPU runs. Without a GPU every run is a CPU run, as before.

A shared lab (engine/access.py): every action takes a ``principal`` (the local admin by default in a
local lab; required in a hosted one, see ``Store.acting``), is refused with ``AccessDenied`` by a role
that may not take it, and a launch is refused with ``QuotaExceeded`` past a quota, before any row is
written. The queue takes turns between owners: each free place goes to the next owner in turn (the
one served longest ago first), and within an owner first come, first served; an owner at their
``runs_at_once`` quota waits. In a local lab every run has one owner: first come, first served.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from itertools import zip_longest
from pathlib import Path

from engine import checkpoint as checkpoints, protocol
from engine.config import ConfigError, RunConfig
from engine.devices import DEVICE_PATTERN, gpu_indices
from engine.limits import limits
from engine.machine_checks import configs_problems
from store import Store
from store.disk import disk_full_message
from store.schema import FINAL_STATUSES

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_owner() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "local"


def every_row_committed(store: Store, run_id: int, status: str, error: str | None, sent: int | None,
                        committed_before: int = 0) -> tuple[str, str | None]:
    """A run's (status, error) at its end: as the training gave them if every metric row it ``sent`` (this
    attempt) is committed, else failed with the reason (the writer's lost batches: a full disk), so it is
    never "finished" with rows missing, and resumes from its last checkpoint."""
    store.flush()  # what was sent before the end is committed, or lost
    committed = store.rows_committed.get(run_id, 0) - committed_before
    if sent is None or committed >= sent:
        return status, error
    why = store.lost_because.get(run_id) or "the store did not commit them"
    return "failed", f"{why}: {committed:,} of the {sent:,} metric rows it sent are in the file"


class _Worker:
    def __init__(self, manager: "RunManager", gpu: int | None = None):
        self.manager = manager
        self.gpu = gpu  # the machine's GPU index this worker trains on; None: a CPU worker
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "CL_LAB_OWNER_PID": str(os.getpid()),
               "CUDA_VISIBLE_DEVICES": "" if gpu is None else str(gpu),
               "CL_LAB_WORKER_NICE": str(limits().worker_nice)}
        if gpu is not None:
            env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # train.deterministic needs it before cuBLAS starts
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.worker"], cwd=PROJECT_ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.ready = False
        self.alive = True
        self.run_id: int | None = None
        self.last_step = 0
        self.committed_before = 0  # the run's metric rows committed before this attempt (``assign``)
        self.stderr_tail: deque[str] = deque(maxlen=40)
        threading.Thread(target=self._read_stderr, daemon=True, name="worker-stderr").start()
        self.reader = threading.Thread(target=self._read, daemon=True, name="worker-reader")
        self.reader.start()

    def assign(self, run_id: int, config: str, last_step: int) -> None:
        self.run_id, self.ready, self.last_step = run_id, False, last_step
        self.committed_before = self.manager.store.rows_committed.get(run_id, 0)  # by an earlier attempt
        run_dir = self.manager.store.artifacts_dir(run_id)
        checkpoint = checkpoints.checkpoint_path(run_dir)
        # a queued run with steps and a checkpoint was rewound by RunManager.resume_run
        resume = str(checkpoint) if last_step and checkpoint.exists() else None
        job = {"run_id": run_id, "config": json.loads(config), "weights_dir": str(run_dir),
               "checkpoint": str(checkpoints.pending_path(checkpoint)), "resume": resume,
               "device": "cpu" if self.gpu is None else "cuda:0",  # its one visible GPU
               "device_label": "cpu" if self.gpu is None else f"cuda:{self.gpu}"}
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader sees the worker's end and fails the run

    def cancel(self) -> None:
        try:
            self.proc.send_signal(signal.SIGUSR1)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    def _read(self) -> None:
        manager, store = self.manager, self.manager.store
        while (message := protocol.receive(self.proc.stdout)) is not None:
            kind, p = message
            try:
                self._handle(kind, p)
            except Exception as err:  # a write that found the disk full past the store's wait: not recorded
                if (full := disk_full_message(store.path, err)) is None:
                    raise
                self.stderr_tail.append(f"{kind} of run {p.get('run_id')} not written: {full}")
            if kind == "end":
                manager._finished(self, p["run_id"])
        code = self.proc.wait()
        with manager._cv:
            self.alive = False
            run_id, self.run_id = self.run_id, None
            manager._cv.notify_all()
        if run_id is not None:
            try:
                store.set_status(run_id, "failed", error=self._death_reason(code), error_step=self.last_step,
                                 only_if=("queued", "running"))
            finally:
                manager._finished(self, run_id)

    def _handle(self, kind: str, p: dict) -> None:
        """One message of the worker's, handed to the store."""
        manager, store = self.manager, self.manager.store
        if kind == "metrics":
            store.add_metrics(p["batch"])
            if len(p["batch"]["step"]):
                self.last_step = max(self.last_step, int(p["batch"]["step"].max()))
        elif kind == "task_start":  # ordered by the writer; nobody waits on it
            store.start_task(p["run_id"], p["task"], p["step"], wait=False)
        elif kind == "task_end":
            store.end_task(p["run_id"], p["task"], p["step"], wait=False)
        elif kind == "checkpoint":  # written by the worker; the run's once its metrics are committed
            final = checkpoints.checkpoint_path(store.artifacts_dir(p["run_id"]))
            checkpoints.promote(store, p["run_id"], checkpoints.pending_path(final), final)
        elif kind == "started":
            run_id = p.pop("run_id")
            store.update_run(run_id, **p)
            store.set_status(run_id, "running", only_if=("queued",))
            if run_id in manager._cancel_requested:  # cancelled while it was being handed over
                self.cancel()
        elif kind == "end":
            status, error = every_row_committed(store, p["run_id"], p["status"], p["error"], p.get("rows"),
                                                self.committed_before)
            manager.outcomes[p["run_id"]] = (status, error)  # also when the disk takes no status now
            store.set_status(p["run_id"], status, error=error, error_step=None if status == "finished" else p["step"])
            if status in ("finished", "diverged"):  # nothing left to resume
                checkpoints.discard(checkpoints.checkpoint_path(store.artifacts_dir(p["run_id"])))
        elif kind == "ready":
            with manager._cv:
                self.ready = True
                manager._cv.notify_all()

    def _death_reason(self, code: int) -> str:
        if self.manager._closing:
            return "the lab was shut down while this run was training"
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        return f"the worker process {how} at step {self.last_step}" + (f": {last}" if last else "")


class RunManager:
    """Queue runs, run up to ``max_parallel`` at once, cancel them, and notice workers that die."""

    def __init__(self, store: Store, max_parallel: int | None = None, warm_workers: int = 1, paused: bool = False,
                 gpus: tuple[int, ...] | None = None, runs_per_gpu: int = 1, take_queue: bool = True):
        self.store = store
        self._take_queue = take_queue  # the lab runs the runs left queued in the file; a CLI command only its own
        self._paused = paused  # queued runs wait (maintenance, or building a queue by hand)
        self.max_parallel = max(1, max_parallel or os.cpu_count() or 1)  # CPU runs at once
        self.warm_workers = min(warm_workers, self.max_parallel)
        self.gpus = tuple(gpu_indices() if gpus is None else gpus)
        self.runs_per_gpu = max(1, runs_per_gpu)
        self._needs: dict[int, str | int | None] = {}  # run id -> None (CPU), a GPU index, "any" GPU or a problem
        self._cv = threading.Condition()
        self._queue: deque[int] = deque()
        self._workers: list[_Worker] = []
        self._done: dict[int, threading.Event] = {}
        self._cancel_requested: set[int] = set()
        self._owners: dict[int, str | None] = {}  # run id -> owner, of queued and running runs
        self._served: dict[str | None, int] = {}  # owner -> when a run of theirs was last started (turns)
        self._turn = 0
        self._closing = False
        self.outcomes: dict[int, tuple[str, str | None]] = {}  # run id -> (status, error) its end gave
        self._recover()
        self._scheduler = threading.Thread(target=self._schedule, daemon=True, name="run-scheduler")
        self._scheduler.start()

    # ---- the public API --------------------------------------------------------------------------
    def admit(self, principal=None, owner: str | None = None, configs=(), *, runs: int | None = None,
              sweep_runs: int | None = None, check_cost: bool = True, quotas: bool = True):
        """Everything checked before a launch writes a row: that ``principal`` may launch (``AccessDenied``),
        what this machine lacks for each config, each config's cost and the lab's weights budget (``ConfigError``,
        unless ``check_cost`` is False), and the principal's quotas (``QuotaExceeded``): ``runs`` more runs
        queued (default: the configs), a sweep of ``sweep_runs``, the configs' weights. Returns (principal,
        the owner of the new runs). Call it holding ``engine.cost.QUEUE_LOCK`` up to the rows' creation."""
        from engine.access import AccessDenied, check_quotas, denied
        from engine.cost import check_queue

        who = self.store.authorize(principal, "launch")
        if principal is None and self.store.access is None:
            owner = owner or default_owner()  # a local lab's callers, as before
        elif owner not in (None, who.email):
            reason = f"a run's owner is who launches it, not {owner}"
            self.store.audit(who, None, "launch", allowed=False, detail=reason)
            raise AccessDenied(denied(who, "launch", reason))
        else:
            owner = who.email
        # a RunConfig checks only its shape: what this machine lacks for it (parse_config's lines)
        if check_cost and (problems := configs_problems(configs)):
            raise ConfigError(problems)
        costs = check_queue(self.store, list(configs)) if check_cost else []
        if quotas:
            check_quotas(self.store, who, new_runs=len(configs) if runs is None else runs, sweep_runs=sweep_runs,
                         new_weights=sum(c.weights_disk + c.checkpoint_disk for c in costs))
        return who, owner

    def submit(self, config: RunConfig, owner: str | None = None, sweep_id: int | None = None,
               sweep_phase: str | None = None, check_cost: bool = True, principal=None) -> int:
        """Queue a validated run config for ``principal``; returns the new run's id. Checked first
        (``admit``: nothing written when refused): who launches, its cost (unless the caller checked it
        already: ``launch_sweep``, for the whole sweep) and their quotas (a sweep's runs were counted when
        the sweep was launched). The run's owner is the principal's email."""
        from engine.cost import QUEUE_LOCK

        with QUEUE_LOCK:
            who, owner = self.admit(principal, owner, [config], check_cost=check_cost, quotas=sweep_id is None)
            run_id = self.store.create_run(config.model_dump(mode="json"), name=config.name,
                                           owner=owner, sweep_id=sweep_id, sweep_phase=sweep_phase)
        if sweep_id is None:  # a sweep's runs are in its own audit row
            self.store.audit(who, None, "launch", run_id=run_id, detail=f"queued {config.name!r}")
        with self._cv:
            self._done[run_id] = threading.Event()
            self._owners[run_id] = owner
            self._queue.append(run_id)
            self._cv.notify_all()
        return run_id

    def cancel(self, run_id: int, principal=None) -> bool:
        """Cancel a queued run, or stop a running one after its current step. False if neither.
        ``AccessDenied`` for a principal who may not (nothing cancelled)."""
        who = self.store.authorize(principal, "cancel", run_id=run_id)
        cancelled = self._cancel(run_id)
        if cancelled:
            self.store.audit(who, None, "cancel", run_id=run_id)
        return cancelled

    def _cancel(self, run_id: int) -> bool:
        with self._cv:
            if run_id in self._queue:
                self._queue.remove(run_id)
                self._owners.pop(run_id, None)
                worker = None
            else:
                worker = next((w for w in self._workers if w.run_id == run_id), None)
                if worker is None:
                    return False
                self._cancel_requested.add(run_id)
        if worker is None:
            self.store.set_status(run_id, "cancelled", error="cancelled before it started", only_if=("queued",))
            self._event(run_id).set()
        else:
            worker.cancel()
        return True

    def cancel_sweep(self, sweep_id: int, principal=None) -> int:
        """Cancel every queued or running run of a sweep; returns how many (``AccessDenied`` for a
        principal who may not cancel the sweep: nothing cancelled)."""
        who = self.store.authorize(principal, "cancel", sweep_id=sweep_id)
        ids = [r[0] for r in self.store.sql(
            "SELECT id FROM runs WHERE sweep_id = ? AND status IN ('queued', 'running') ORDER BY id DESC", [sweep_id])]
        cancelled = sum(self._cancel(run_id) for run_id in ids)
        self.store.audit(who, None, "cancel", sweep_id=sweep_id, detail=f"cancelled {cancelled} runs of the sweep")
        return cancelled

    def resume_run(self, run_id: int, principal=None) -> dict:
        """Queue a failed or cancelled run again, to go on from its last completed task under the same
        id and step numbering: its metrics after the checkpoint's step, and the boundaries of the
        tasks after it, are dropped (one transaction). Returns the checkpoint's header; raises
        ``CheckpointError`` with the reason when the run cannot be resumed, ``AccessDenied`` when the
        principal may not (``QuotaExceeded`` past their runs_queued quota). (``resume()`` releases a
        held queue.)"""
        from engine.access import check_quotas
        from engine.cost import QUEUE_LOCK

        who = self.store.authorize(principal, "resume", run_id=run_id)
        rows = self.store.sql("SELECT status, config FROM runs WHERE id = ?", [run_id])
        if not rows:
            raise checkpoints.CheckpointError(f"there is no run {run_id}")
        status, config = rows[0]
        if status not in checkpoints.RESUMABLE:
            raise checkpoints.CheckpointError(
                f"run {run_id} is {status}: only a failed or cancelled run can be resumed"
                + (" (a diverged run would diverge again)" if status == "diverged" else ""))
        path = checkpoints.checkpoint_path(self.store.artifacts_dir(run_id))
        if not path.exists():
            raise checkpoints.CheckpointError(
                f"run {run_id} has no checkpoint: it stopped before its first task ended (or it was saved "
                "by a CL Lab without resume); launch it again instead")
        header = checkpoints.read_header(path)
        checkpoints.check(header, json.loads(config))
        with QUEUE_LOCK, self._cv:
            if run_id in self._queue or any(w.run_id == run_id for w in self._workers):
                raise checkpoints.CheckpointError(f"run {run_id} is already queued or running")
            check_quotas(self.store, who, new_runs=1)
            try:
                self.store.rewind_run(run_id, header["step"], task=header["task"])
            except ValueError as err:
                raise checkpoints.CheckpointError(str(err)) from None
            self._done[run_id] = threading.Event()
            self._queue.append(run_id)
            self._cv.notify_all()
        self.store.audit(who, None, "resume", run_id=run_id, detail=f"from task {header['task'] + 1} at step {header['step']}")
        return header

    def ended(self, run_id: int) -> bool:
        """Whether the run's worker reported its end (its status may not be in the file yet: a full disk)."""
        return self._event(run_id).is_set()

    def wait(self, run_id: int, timeout: float | None = None) -> str | None:
        """Wait for a run to end; returns its status (None if it is unknown)."""
        rows = self.store.sql("SELECT status FROM runs WHERE id = ?", [run_id])
        if not rows:
            return None
        if rows[0][0] not in FINAL_STATUSES:
            self._event(run_id).wait(timeout)
        return self.store.sql("SELECT status FROM runs WHERE id = ?", [run_id])[0][0]

    def pause(self) -> None:
        """Hold the queue: running runs go on, queued ones wait until ``resume``."""
        with self._cv:
            self._paused = True

    def resume(self) -> None:
        with self._cv:
            self._paused = False
            self._cv.notify_all()

    def counts(self) -> dict[str, int]:
        with self._cv:
            return {"running": sum(w.run_id is not None for w in self._workers), "queued": len(self._queue),
                    "workers": sum(w.alive for w in self._workers),
                    "idle": sum(w.alive and w.ready and w.run_id is None for w in self._workers),
                    "gpus": len(self.gpus)}

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the workers; runs still training are marked failed ("the lab was shut down")."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
            workers = list(self._workers)
        for w in workers:
            if w.run_id is not None:
                w.proc.kill()
            w.stop()
        for w in workers:
            try:
                w.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                w.proc.kill()
        for w in workers:  # every message a worker sent is handed to the store before it closes
            w.reader.join(timeout)
        self._scheduler.join(timeout)

    # ---- internals -----------------------------------------------------------------------------
    def _event(self, run_id: int) -> threading.Event:
        with self._cv:
            return self._done.setdefault(run_id, threading.Event())

    def _finished(self, worker: _Worker, run_id: int) -> None:
        with self._cv:
            if worker.run_id == run_id:
                worker.run_id = None
            self._cancel_requested.discard(run_id)
            self._owners.pop(run_id, None)
            self._cv.notify_all()
        self._event(run_id).set()

    def _recover(self) -> None:
        """A lab that stopped left runs behind: running ones failed; queued ones run again (in the lab:
        ``take_queue``)."""
        self.store.write(
            "UPDATE runs SET status = 'failed', finished_at = current_localtimestamp(), "
            "error = 'the lab process stopped while this run was training', error_step = last_step "
            "WHERE status = 'running'"
        )
        for (run_id,) in self.store.sql("SELECT id FROM runs WHERE status = 'queued' ORDER BY id") if self._take_queue else []:
            self._queue.append(run_id)

    def need(self, device: str) -> str | int | None:
        """Where a run with this ``train.device`` must train: None (a CPU worker), a GPU index, "any"
        GPU, or a sentence saying why it cannot run here (a queue kept from another machine)."""
        if device == "cpu" or (device == "auto" and not self.gpus):
            return None
        if device == "auto" or device == "cuda":
            return "any" if self.gpus else f"train.device = {device!r}: this machine has no GPU"
        if DEVICE_PATTERN.match(device) and int(device.split(":")[1]) in self.gpus:
            return int(device.split(":")[1])
        return f"train.device = {device!r}: no such GPU here (GPUs: {', '.join(map(str, self.gpus)) or 'none'})"

    def _need_of(self, run_id: int) -> str | int | None:
        if run_id not in self._needs:
            rows = self.store.sql("SELECT json_extract_string(config, '$.train.device') FROM runs WHERE id = ?", [run_id])
            self._needs[run_id] = self.need((rows[0][0] if rows else None) or "auto")
        return self._needs[run_id]

    def _owner_of(self, run_id: int) -> str | None:
        if run_id not in self._owners:
            rows = self.store.sql("SELECT owner FROM runs WHERE id = ?", [run_id])
            self._owners[run_id] = rows[0][0] if rows else None
        return self._owners[run_id]

    def _fair_order(self) -> list[int]:
        """The queued runs in the order they are offered a place: round robin over owners (the owner
        served longest ago first, then by their oldest queued run), each owner's runs in queue order;
        the runs of an owner at their ``runs_at_once`` quota are left out (they wait)."""
        by_owner: dict[str | None, list[int]] = {}
        for run_id in self._queue:
            by_owner.setdefault(self._owner_of(run_id), []).append(run_id)
        running: dict[str | None, int] = {}
        for w in self._workers:
            if w.run_id is not None:
                owner = self._owner_of(w.run_id)
                running[owner] = running.get(owner, 0) + 1
        access = self.store.access
        turns = []
        for owner in sorted(by_owner, key=lambda o: self._served.get(o, -1)):  # stable: oldest queued run next
            at_once = access.quotas_of(owner).runs_at_once if access is not None else None
            if at_once is None or running.get(owner, 0) < at_once:
                turns.append(by_owner[owner])
        return [run_id for turn in zip_longest(*turns) for run_id in turn if run_id is not None]

    def _dispatch(self) -> bool:
        """Start the first run, in turn (``_fair_order``), that has a free place (a CPU run does not wait
        behind a GPU run, nor one GPU's runs behind another's). True if it changed something."""
        busy = self._busy()
        blocked: set = set()
        for run_id in self._fair_order():
            need = self._need_of(run_id)
            if isinstance(need, str) and need != "any":  # cannot run on this machine: fail it, one line
                self._owners.pop(run_id, None)
                self._queue.remove(run_id)
                self.store.set_status(run_id, "failed", error=need, only_if=("queued",))
                self._done.setdefault(run_id, threading.Event()).set()
                return True
            places = [need] if need is None or isinstance(need, int) else sorted(self.gpus, key=busy.__getitem__)
            for place in places:
                if place in blocked:
                    continue
                limit = self.max_parallel if place is None else self.runs_per_gpu
                idle = [w for w in self._workers if w.gpu == place and w.ready and w.run_id is None]
                if busy[place] < limit and idle:
                    self._queue.remove(run_id)
                    self._needs.pop(run_id, None)
                    self._turn += 1
                    self._served[self._owner_of(run_id)] = self._turn
                    rows = self.store.sql("SELECT config, coalesce(last_step, 0) FROM runs "
                                          "WHERE id = ? AND status = 'queued'", [run_id])
                    if rows:
                        idle[0].assign(run_id, *rows[0])
                    return True
                blocked.add(place)  # first come, first served on each place
        return False

    def _busy(self) -> dict:
        busy = {place: 0 for place in (None, *self.gpus)}
        for w in self._workers:
            if w.run_id is not None:
                busy[w.gpu] += 1
        return busy

    def _start_workers(self) -> None:
        """Workers ahead of need: ``warm_workers`` CPU ones (and one a GPU) idle, more while runs wait."""
        busy = self._busy()
        waiting = {place: 0 for place in busy}
        for run_id in ([] if self._paused else self._queue):
            need = self._need_of(run_id)
            for place in (self.gpus if need == "any" else [need] if need is None or isinstance(need, int) else []):
                waiting[place] += 1
        for place in busy:
            limit, warm = (self.max_parallel, self.warm_workers) if place is None else (self.runs_per_gpu, min(1, self.warm_workers))
            wanted = min(limit, busy[place] + max(warm, waiting[place]))
            for _ in range(wanted - sum(w.gpu == place for w in self._workers)):
                self._workers.append(_Worker(self, place))

    def _schedule(self) -> None:
        with self._cv:
            while not self._closing:
                self._workers = [w for w in self._workers if w.alive]
                if not self._paused and self._dispatch():
                    continue
                self._start_workers()
                self._cv.wait(timeout=1.0)


def flush_on_signals(store: Store, signals=(signal.SIGTERM, signal.SIGINT)) -> bool:
    """In the process that owns ``store``: on SIGTERM or SIGINT, commit every metric batch received
    so far, then hand the signal to the handler that was there before (Streamlit's, Python's
    KeyboardInterrupt). Where that handler is the default (the process ends at once), the store
    first stops taking batches, so what it received is exactly what is committed, and it prints
    per run the rows received and committed on stderr. Signal handlers can only be set from the main
    thread: elsewhere (a Streamlit script thread) this returns False and the caller closes the
    store at exit instead."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in signals:
        previous = signal.getsignal(sig)
        if previous == signal.SIG_IGN:
            continue

        def handler(signum, frame, previous=previous):
            if previous in (signal.SIG_DFL, None):  # the process ends now: the last commit
                complete = store.final_flush()
                for line in store.row_report():
                    print(f"{signal.Signals(signum).name}: {line}", file=sys.stderr, flush=True)
                if not complete:
                    print("the last metric batches did not commit in time", file=sys.stderr, flush=True)
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            store.flush(timeout=10.0)
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)
    return True


def run_in_process(store: Store, config: RunConfig, owner: str | None = None, sweep_id: int | None = None,
                   sweep_phase: str | None = None, scenario=None) -> int:
    """Train a run in this process, straight into ``store`` (notebooks, tests, benchmarks).
    The lab itself runs runs in workers, through ``RunManager``. ``scenario``: tasks in memory
    (train_run's), instead of the config's dataset."""
    import lightning
    import platform

    import torch

    from engine import code_version
    from engine.devices import device_label
    from engine.evaluation import StoreSink
    from engine.train import train_run

    run_id = store.create_run(config.model_dump(mode="json"), name=config.name, owner=owner or default_owner(),
                              sweep_id=sweep_id, sweep_phase=sweep_phase)
    sink = StoreSink(store, run_id)

    def started(total: int) -> None:
        store.update_run(run_id, total_steps=total, python_version=platform.python_version(),
                         torch_version=torch.__version__, lightning_version=lightning.__version__,
                         lab_version=code_version(), device=device_label(config.train.device))
        store.set_status(run_id, "running")

    checkpoint = checkpoints.checkpoint_path(store.artifacts_dir(run_id))
    try:
        result = train_run(config, sink, on_start=started, weights_dir=store.artifacts_dir(run_id),
                           checkpoint=checkpoints.pending_path(checkpoint), scenario=scenario,
                           on_checkpoint=lambda: (sink.flush(), checkpoints.promote(
                               store, run_id, checkpoints.pending_path(checkpoint), checkpoint)))
    except Exception as err:
        sink.flush()
        store.set_status(run_id, "failed", error=str(err))
        raise
    status, error = every_row_committed(store, run_id, result.status, result.error, sink.rows_sent)
    store.set_status(run_id, status, error=error, error_step=None if status == "finished" else result.step)
    if status in ("finished", "diverged"):
        checkpoints.discard(checkpoint)
    store.flush()
    return run_id
