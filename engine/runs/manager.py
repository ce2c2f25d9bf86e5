"""The run manager: runs up to N runs at once in worker processes and queues the rest.

It lives in the process that owns the store (the lab, or a headless CLI run). The queue and its order
are the manager's; an executor (``engine.runs.executors``, by name: warm worker processes by default)
trains what it is handed and reports through ``RunEvents``; what a launch must pass first is
``engine.runs.admission``'s.

GPUs: counted without initialising CUDA here (``engine.core.devices``). A run whose ``train.device`` is
``cuda``, ``cuda:N`` or ``auto`` (on a machine with a GPU) is a GPU run: it goes to a worker started
with ``CUDA_VISIBLE_DEVICES`` set to one GPU, at most ``runs_per_gpu`` at a time on each GPU (default
1). CPU runs go to workers that see no GPU, up to ``max_parallel`` at a time (default: the CPU count),
alongside the GPU runs. Without a GPU every run is a CPU run, as before.

A shared lab (engine/core/access.py, engine/runs/admission.py): every action takes a ``principal`` (the local admin by default in a
local lab; required in a hosted one, see ``Store.acting``), is refused with ``AccessDenied`` by a role
that may not take it, and a launch is refused with ``QuotaExceeded`` past a quota, before any row is
written. The queue takes turns between owners: each free place goes to the next owner in turn (the
one served longest ago first), and within an owner first come, first served; an owner at their
``runs_at_once`` quota waits. In a local lab every run has one owner: first come, first served.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections import deque
from itertools import zip_longest

from engine.core.access import default_owner
from engine.training.checkpoint import CheckpointError, check, read_header
from engine.config import RunConfig
from engine.core.devices import gpu_indices
from engine.runs import admission
from engine.runs.admission import QUEUE_LOCK
from engine.runs.artifacts import RESUMABLE, checkpoint_path, pending_path, run_checkpoint
from engine.runs.events import RunEvents
from engine.runs.executors import EXECUTORS, Job
from engine.runs.executors.in_process import train_here
from store import Store, queue
from store.schema import FINAL_STATUSES


class _QueueEvents(RunEvents):
    """The store's events, and the queue's bookkeeping: a run that started or ended frees or takes its place."""

    def __init__(self, manager: "RunManager"):
        super().__init__(manager.store)
        self.manager = manager

    def started(self, run_id: int, **info) -> None:
        super().started(run_id, **info)
        self.manager._started(run_id)

    def ended(self, run_id: int, status: str, error: str | None, step: int | None, rows: int | None = None) -> None:
        try:
            super().ended(run_id, status, error, step, rows)
        finally:  # also when the disk took no status: the run is over
            self.manager._finished(run_id)

    def lost(self, run_id: int, reason: str, step: int | None) -> None:
        try:
            super().lost(run_id, reason, step)
        finally:
            self.manager._finished(run_id)

    def ready(self) -> None:
        self.manager._wake()


class RunManager:
    """Queue runs, run up to ``max_parallel`` at once on an executor (``EXECUTORS[executor]``), cancel
    them, and notice runs their executor lost."""

    def __init__(self, store: Store, max_parallel: int | None = None, warm_workers: int = 1, paused: bool = False,
                 gpus: tuple[int, ...] | None = None, runs_per_gpu: int = 1, take_queue: bool = True,
                 executor: str = "local", executor_options: dict | None = None):
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}: one of {', '.join(EXECUTORS)}")
        self.store = store
        self._take_queue = take_queue  # the lab runs the runs left queued in the file; a CLI command only its own
        self._paused = paused  # queued runs wait (maintenance, or building a queue by hand)
        self.gpus = tuple(gpu_indices() if gpus is None else gpus)
        self.runs_per_gpu = max(1, runs_per_gpu)
        self._needs: dict[int, str | int | None] = {}  # run id -> None (CPU), a GPU index, "any" GPU or a problem
        self._cv = threading.Condition()
        self._queue: deque[int] = deque()
        self._running: dict[int, int | None] = {}  # run id -> its place (None: the CPU, else a GPU index)
        self._done: dict[int, threading.Event] = {}
        self._cancel_requested: set[int] = set()
        self._owners: dict[int, str | None] = {}  # run id -> owner, of queued and running runs
        self._served: dict[str | None, int] = {}  # owner -> when a run of theirs was last started (turns)
        self._turn = 0
        self._closing = False
        self.events = _QueueEvents(self)
        self.outcomes = self.events.outcomes  # run id -> (status, error) its end gave
        # ExecutorUnavailable (one line) when it cannot start here: no library, no cluster
        self.executor = EXECUTORS[executor](self.events, self.gpus, **(executor_options or {}))
        if (places := self.executor.gpu_places()) is not None:  # a cluster's GPUs, not this machine's
            self.gpus = places
        # CPU runs at once: as asked, else as many as the executor can take (one per core here)
        self.max_parallel = max(1, max_parallel or self.executor.max_parallel() or os.cpu_count() or 1)
        self.warm_workers = min(warm_workers, self.max_parallel)
        self._recover()
        self._scheduler = threading.Thread(target=self._schedule, daemon=True, name="run-scheduler")
        self._scheduler.start()

    # ---- the public API --------------------------------------------------------------------------
    def admit(self, principal=None, owner: str | None = None, configs=(), *, runs: int | None = None,
              sweep_runs: int | None = None, check_cost: bool = True, quotas: bool = True):
        """``admission.admit`` on this lab's store: who launches, the cost, the budget and the quotas.
        Returns (principal, the owner of the new runs). Call it holding ``QUEUE_LOCK`` up to the rows' creation."""
        return admission.admit(self.store, principal, owner, configs, runs=runs, sweep_runs=sweep_runs,
                               check_cost=check_cost, quotas=quotas)

    def submit(self, config: RunConfig, owner: str | None = None, sweep_id: int | None = None,
               sweep_phase: str | None = None, check_cost: bool = True, principal=None) -> int:
        """Queue a validated run config for ``principal``; returns the new run's id. Checked first
        (``admit``: nothing written when refused): who launches, its cost (unless the caller checked it
        already: ``launch_sweep``, for the whole sweep) and their quotas (a sweep's runs were counted when
        the sweep was launched). The run's owner is the principal's email."""
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
                running = False
            elif run_id in self._running:
                self._cancel_requested.add(run_id)
                running = True
            else:
                return False
        if running:
            self.executor.cancel(run_id)
        else:
            self.store.set_status(run_id, "cancelled", error="cancelled before it started", only_if=("queued",))
            self._event(run_id).set()
        return True

    def cancel_sweep(self, sweep_id: int, principal=None) -> int:
        """Cancel every queued or running run of a sweep; returns how many (``AccessDenied`` for a
        principal who may not cancel the sweep: nothing cancelled)."""
        who = self.store.authorize(principal, "cancel", sweep_id=sweep_id)
        cancelled = sum(self._cancel(run_id) for run_id in queue.active_sweep_runs(self.store, sweep_id))
        self.store.audit(who, None, "cancel", sweep_id=sweep_id, detail=f"cancelled {cancelled} runs of the sweep")
        return cancelled

    def resume_run(self, run_id: int, principal=None) -> dict:
        """Queue a failed or cancelled run again, to go on from its last completed task under the same
        id and step numbering: its metrics after the checkpoint's step, and the boundaries of the
        tasks after it, are dropped (one transaction). Returns the checkpoint's header; raises
        ``CheckpointError`` with the reason when the run cannot be resumed, ``AccessDenied`` when the
        principal may not (``QuotaExceeded`` past their runs_queued quota). (``resume()`` releases a
        held queue.)"""
        who = self.store.authorize(principal, "resume", run_id=run_id)
        row = queue.status_and_config(self.store, run_id)
        if row is None:
            raise CheckpointError(f"there is no run {run_id}")
        status, config = row
        if status not in RESUMABLE:
            raise CheckpointError(
                f"run {run_id} is {status}: only a failed or cancelled run can be resumed"
                + (" (a diverged run would diverge again)" if status == "diverged" else ""))
        path = run_checkpoint(self.store, run_id)
        if not path.exists():
            raise CheckpointError(
                f"run {run_id} has no checkpoint: it stopped before its first task ended (or it was saved "
                "by a CL Lab without resume); launch it again instead")
        header = read_header(path)
        check(header, json.loads(config))
        with QUEUE_LOCK, self._cv:
            if run_id in self._queue or run_id in self._running:
                raise CheckpointError(f"run {run_id} is already queued or running")
            admission.check_quotas(self.store, who, new_runs=1)
            try:
                self.store.rewind_run(run_id, header["step"], task=header["task"])
            except ValueError as err:
                raise CheckpointError(str(err)) from None
            self._done[run_id] = threading.Event()
            self._queue.append(run_id)
            self._cv.notify_all()
        self.store.audit(who, None, "resume", run_id=run_id, detail=f"from task {header['task'] + 1} at step {header['step']}")
        return header

    def ended(self, run_id: int) -> bool:
        """Whether the run's executor reported its end (its status may not be in the file yet: a full disk)."""
        return self._event(run_id).is_set()

    def wait(self, run_id: int, timeout: float | None = None) -> str | None:
        """Wait for a run to end; returns its status (None if it is unknown)."""
        status = queue.run_status(self.store, run_id)
        if status is None:
            return None
        if status not in FINAL_STATUSES:
            self._event(run_id).wait(timeout)
        return queue.run_status(self.store, run_id)

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
            return {"running": len(self._running), "queued": len(self._queue), **self.executor.counts(),
                    "gpus": len(self.gpus)}

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the executor; runs still training are marked failed ("the lab was shut down")."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self.executor.shutdown(timeout)
        self._scheduler.join(timeout)

    def need(self, device: str) -> str | int | None:
        """Where a run with this ``train.device`` must train here (``admission.place_for``)."""
        return admission.place_for(device, self.gpus)

    # ---- internals -----------------------------------------------------------------------------
    def _event(self, run_id: int) -> threading.Event:
        with self._cv:
            return self._done.setdefault(run_id, threading.Event())

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def _started(self, run_id: int) -> None:
        with self._cv:
            cancel = run_id in self._cancel_requested  # cancelled while it was being handed over
        if cancel:
            self.executor.cancel(run_id)

    def _finished(self, run_id: int) -> None:
        with self._cv:
            self._running.pop(run_id, None)
            self._cancel_requested.discard(run_id)
            self._owners.pop(run_id, None)
            self._cv.notify_all()
        self._event(run_id).set()

    def _recover(self) -> None:
        """A lab that stopped left runs behind: running ones failed; queued ones run again (in the lab:
        ``take_queue``)."""
        queue.fail_interrupted_runs(self.store)
        for run_id in queue.queued_runs(self.store) if self._take_queue else []:
            self._queue.append(run_id)

    def _need_of(self, run_id: int) -> str | int | None:
        if run_id not in self._needs:
            self._needs[run_id] = self.need(queue.run_device(self.store, run_id) or "auto")
        return self._needs[run_id]

    def _owner_of(self, run_id: int) -> str | None:
        if run_id not in self._owners:
            self._owners[run_id] = queue.run_owner(self.store, run_id)
        return self._owners[run_id]

    def _fair_order(self) -> list[int]:
        """The queued runs in the order they are offered a place: round robin over owners (the owner
        served longest ago first, then by their oldest queued run), each owner's runs in queue order;
        the runs of an owner at their ``runs_at_once`` quota are left out (they wait)."""
        by_owner: dict[str | None, list[int]] = {}
        for run_id in self._queue:
            by_owner.setdefault(self._owner_of(run_id), []).append(run_id)
        running: dict[str | None, int] = {}
        for run_id in self._running:
            owner = self._owner_of(run_id)
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
                if busy[place] < limit and self.executor.idle(place):
                    self._queue.remove(run_id)
                    self._needs.pop(run_id, None)
                    self._turn += 1
                    self._served[self._owner_of(run_id)] = self._turn
                    job = queue.queued_job(self.store, run_id)
                    if job is not None:
                        self._start(run_id, place, *job)
                    return True
                blocked.add(place)  # first come, first served on each place
        return False

    def _start(self, run_id: int, place: int | None, config: str, last_step: int) -> None:
        run_dir = self.store.artifacts_dir(run_id)
        checkpoint = checkpoint_path(run_dir)
        # a queued run with steps and a checkpoint was rewound by resume_run
        resume = checkpoint if last_step and checkpoint.exists() else None
        self._running[run_id] = place
        self.events.begin(run_id)
        self.executor.start(Job(run_id, json.loads(config), place, run_dir, pending_path(checkpoint), resume, last_step,
                                gpu_share=1.0 / self.runs_per_gpu))

    def _busy(self) -> dict:
        busy = {place: 0 for place in (None, *self.gpus)}
        for place in self._running.values():
            busy[place] += 1
        return busy

    def _prepare(self) -> None:
        """Ask the executor to get ready for ``warm_workers`` CPU runs (and one a GPU) beyond the running
        ones, more while runs wait."""
        busy = self._busy()
        waiting = {place: 0 for place in busy}
        for run_id in ([] if self._paused else self._queue):
            need = self._need_of(run_id)
            for place in (self.gpus if need == "any" else [need] if need is None or isinstance(need, int) else []):
                waiting[place] += 1
        wanted = {}
        for place in busy:
            limit, warm = (self.max_parallel, self.warm_workers) if place is None else (self.runs_per_gpu, min(1, self.warm_workers))
            wanted[place] = min(limit, busy[place] + max(warm, waiting[place]))
        self.executor.prepare(wanted)

    def _schedule(self) -> None:
        with self._cv:
            while not self._closing:
                if not self._paused and self._dispatch():
                    continue
                self._prepare()
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
    """Train a run in this process, straight into ``store`` (notebooks, tests, benchmarks), through the
    in-process executor's ``train_here`` and the same ``RunEvents`` as the lab's runs. The lab itself
    runs runs in workers, through ``RunManager``. ``scenario``: tasks in memory (train_run's), instead
    of the config's dataset."""
    run_id = store.create_run(config.model_dump(mode="json"), name=config.name, owner=owner or default_owner(),
                              sweep_id=sweep_id, sweep_phase=sweep_phase)
    run_dir = store.artifacts_dir(run_id)
    events = RunEvents(store)
    events.begin(run_id)
    train_here(Job(run_id, config.model_dump(mode="json"), None, run_dir, pending_path(checkpoint_path(run_dir))),
               events, scenario=scenario, config=config)
    store.flush()
    return run_id
