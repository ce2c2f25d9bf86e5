"""The lab: its one composition root and the one surface for what a user does to it.

A ``Lab`` holds the store (the DuckDB file this process owns) and the run manager over it, and (a
served lab) the sweep keeper. Every action a user takes goes through it: launch a run or a sweep,
cancel a run or a sweep, resume a run, rename, tag or annotate it, delete it, compute its trade-off
curves, check an export. Each action takes the acting principal; the manager and the store check it
and refuse what it may not do (``AccessDenied``), so a page only hides what the principal may not do.

Reads go through ``lab.store``, the read surface: its ``sql``/``df`` and the query functions of
``store/`` that take a store. Nothing here imports Streamlit: the web app (pages/ui/lab.py) keeps its
lab for the server process, the CLI (engine/cli/) opens one for a command."""

from __future__ import annotations

import atexit
import signal
import threading
import time
from pathlib import Path

from engine.core.access import lab_access
from engine.core.executor_settings import ExecutorSettings, executor_settings
from engine.annotations import annotate_run
from engine.config import RunConfig, parse_config
from engine.training.cost import estimate
from engine.interpolate import tradeoff_curve
from engine.core.limits import limits
from engine.runs.artifacts import remove_orphans
from engine.runs.cluster import ClusterView, cluster_view
from engine.runs.executors import ExecutorUnavailable
from engine.runs.manager import RunManager, flush_on_signals
from engine.sweeps.sweep import SweepKeeper, cancel_sweep, launch_sweep, stop_sweeps, wait_sweep
from store import Store
from store.permissions import keep_private


def _warm_cost_estimate() -> None:
    """The first estimate imports torch's meta kernels (seconds): pay for it before the Launch page asks."""
    estimate(parse_config({}))


def say_files_are_private(path: Path) -> None:
    """Make a hosted lab's files private (store/permissions.py) and say so in the server's output."""
    tightened, failed = keep_private(path)
    print(f"CL Lab (hosted): files are created 0600 and folders 0700 (umask 077, whatever the shell's); "
          f"{tightened} existing file(s) and folder(s) of {path.name} made private", flush=True)
    for line in failed:
        print(f"CL Lab (hosted): could not make private: {line}", flush=True)


def _manager(store: Store, settings: ExecutorSettings, **options) -> RunManager:
    """The run manager over ``store`` on the executor ``settings`` names (``ExecutorUnavailable`` when it
    cannot start: Ray is not installed, or its cluster cannot be reached)."""
    executor_options = {"address": settings.address} if settings.kind == "ray" else {}
    return RunManager(store, executor=settings.kind, executor_options=executor_options, **options)


class Lab:
    """The store, the run manager over it and (a served lab) the sweep keeper; every user action.
    A lab with no manager (a CLI command that trains nothing) takes the actions on the store alone."""

    def __init__(self, store: Store, manager: RunManager | None = None, sweeps: SweepKeeper | None = None):
        self.store, self.manager, self.sweeps = store, manager, sweeps
        self.ctrl_c_handler = None  # a command lab's SIGINT handler while its workers ignore Ctrl-C

    @classmethod
    def serve(cls, path: Path, hosted: bool = False) -> Lab:
        """The lab a server process runs over the database at ``path``: it takes the runs left queued,
        keeps warm workers (the first launch need not wait) and moves sweeps on without a page open.
        A hosted lab's policy is read and checked before its database opens (``AccessFileError``: it
        does not start)."""
        if hosted:  # before the lab creates a file: its database, weights and logs are its user's alone
            say_files_are_private(path)
        settings = executor_settings()  # a wrong [executor] table: SettingsError before the file opens
        store = Store(path, access=lab_access(hosted), disk_wait_s=limits().disk_wait_s)
        remove_orphans(store)  # the weights of runs deleted while the lab was closed
        threading.Thread(target=_warm_cost_estimate, daemon=True, name="cost-warm-up").start()
        try:
            manager = _manager(store, settings)
        except ExecutorUnavailable:
            store.close()
            raise
        the_lab = cls(store, manager, SweepKeeper(manager))  # phases and search trials go on without a page open
        the_lab.sweeps.start()
        # Streamlit's SIGTERM/SIGINT handler stops the server and Python exits normally: commit what
        # the workers sent then (signal handlers can only be set from the main thread, not here)
        atexit.register(the_lab.close)
        return the_lab

    @classmethod
    def for_command(cls, store: Store, max_parallel: int | None = 1, warm_workers: int = 1,
                    workers_ignore_ctrl_c: bool = False, settings: ExecutorSettings | None = None) -> Lab:
        """The lab of one CLI command over ``store`` (opened by the command): SIGTERM commits what the
        workers sent before the process ends, and the manager runs only the command's own runs (those
        left queued in the file wait for the served lab). With ``workers_ignore_ctrl_c`` the workers
        start with SIGINT ignored (they inherit it), so Ctrl-C, which reaches the whole foreground
        process group, reaches this process alone; the caller puts ``ctrl_c_handler`` back once its
        workers are up."""
        flush_on_signals(store)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if workers_ignore_ctrl_c else None
        manager = _manager(store, settings or ExecutorSettings(), max_parallel=max_parallel, warm_workers=warm_workers,
                           take_queue=False)
        the_lab = cls(store, manager)
        the_lab.ctrl_c_handler = previous
        return the_lab

    # ---- what a user does ------------------------------------------------------------------------
    def launch_run(self, config: RunConfig, principal=None) -> int:
        """Queue a run (who may, its cost and quotas checked first: nothing written when refused)."""
        return self.manager.submit(config, principal=principal)

    def launch_sweep(self, spec, principal=None) -> int:
        """Queue a sweep as one group; a served lab's keeper moves its phases on. Returns its id."""
        sweep_id = launch_sweep(self.manager, spec, principal=principal)
        if self.sweeps is not None:
            self.sweeps.watch(sweep_id)
        return sweep_id

    def cancel_run(self, run_id: int, principal=None) -> bool:
        return self.manager.cancel(run_id, principal=principal)

    def cancel_sweep(self, sweep_id: int, principal=None) -> int:
        """Cancel a sweep as a group (its search drivers stopped, its queued and running runs
        cancelled); returns how many runs were cancelled."""
        return cancel_sweep(self.manager, sweep_id, principal=principal)

    def resume_run(self, run_id: int, principal=None) -> dict:
        """Queue a failed or cancelled run again from its last checkpoint; returns the checkpoint's header."""
        return self.manager.resume_run(run_id, principal=principal)

    def annotate_run(self, run_id: int, *, name: str | None = None, notes: str | None = None,
                     tags: list[str] | None = None, principal=None) -> bool:
        return annotate_run(self.store, run_id, name=name, notes=notes, tags=tags, principal=principal)

    def delete_run(self, run_id: int, principal=None) -> None:
        self.store.delete_run(run_id, principal=principal)

    def tradeoff_curve(self, run_id: int, task: int | None = None):
        """Compute and store a run's weight-interpolation trade-off curves; returns their table."""
        return tradeoff_curve(self.store, run_id, task)

    def cluster(self) -> ClusterView | None:
        """The cluster its runs train on (nodes, CPUs, GPUs, runs on each), None when they train on this machine."""
        nodes = self.manager.executor.nodes() if self.manager is not None else None
        if nodes is None:
            return None
        return cluster_view(self.manager.executor.address, nodes, self.store)

    def remove_orphans(self) -> tuple[list[Path], int]:
        """Remove the saved weights of runs that no longer exist: (the folders removed, bytes freed)."""
        return remove_orphans(self.store)

    def check_export(self, run_ids, principal=None, detail: str = "export") -> None:
        """Before a run's data leaves the lab: ``AccessDenied`` unless ``principal`` may export every
        one of ``run_ids``; then one audit row a run."""
        self.store.check_export(run_ids, principal, detail=detail)

    # ---- following what was launched (a CLI command waits for its runs) ------------------------------
    def wait_run(self, run_id: int, timeout: float | None = None) -> str | None:
        """Wait for a run to end (or the timeout); returns its status (None if it is unknown)."""
        return self.manager.wait(run_id, timeout=timeout)

    def run_ended(self, run_id: int) -> bool:
        """Whether the run's worker reported its end (its status may not be in the file yet: a full disk)."""
        return self.manager.ended(run_id)

    def run_outcome(self, run_id: int) -> tuple[str, str | None] | None:
        """(status, error) the run's end gave this process, None if it has not ended here."""
        return self.manager.outcomes.get(run_id)

    def wait_sweep(self, sweep_id: int, timeout: float | None = None, on_progress=None) -> str:
        """Move the sweep on until it is 'done' or 'cancelled' (or the timeout passes); returns the state."""
        return wait_sweep(self.manager, sweep_id, timeout=timeout, on_progress=on_progress)

    @property
    def max_parallel(self) -> int:
        return self.manager.max_parallel

    def wait_for_workers(self, timeout: float) -> None:
        """Until every worker the manager may run at once has started (or the timeout passes)."""
        if not self.manager.executor.warm_workers:  # its runs start where they train (a cluster's tasks)
            return
        deadline = time.monotonic() + timeout
        while self.manager.counts()["workers"] < self.manager.max_parallel and time.monotonic() < deadline:
            time.sleep(0.01)

    # ---- the end ---------------------------------------------------------------------------------
    def close(self, discard_if_new: bool = False) -> None:
        """Stop the sweep keeper and every search driver, shut the workers down (their runs' last
        metrics committed) and close the store; ``discard_if_new``: remove the file if this lab
        created it and nothing was written (a command refused before it wrote)."""
        if self.store._closed:  # closed by close_labs, then again at exit
            return
        if self.sweeps is not None:
            self.sweeps.stop()
        stop_sweeps(None, join=True)
        if self.manager is not None:
            self.manager.shutdown()
        if discard_if_new:
            self.store.discard_if_new()
        else:
            self.store.close()
