"""The executor seam (engine/runs/executors/): a new executor is one file and one registry line, and the
run manager runs real runs on it unchanged; the in-process executor and ``run_in_process`` share the
status logic with the worker processes (``RunEvents``); a worker keeps its small import set."""

import subprocess
import sys
import textwrap
import time

import pytest

from engine.runs.executors import EXECUTORS
from engine.runs.manager import RunManager, run_in_process
from store import Store
from tests.conftest import ROOT, small_config

# A test executor written only against the interface (its own file, imported as a module would be):
# one thread that trains the runs handed to it one at a time, as a remote node with one slot would.
SERIAL_EXECUTOR = '''
import queue
import threading

from engine.runs.executors.base import Executor
from engine.runs.executors.in_process import train_here


class SerialThreadExecutor(Executor):
    name = "serial-thread"

    def __init__(self, events, gpus=()):
        super().__init__(events, gpus)
        self.jobs = queue.Queue()
        self.busy = None          # the run training now
        self.stop = threading.Event()
        self.started = []         # run ids, in the order they were handed over
        self.overlaps = 0         # runs handed over while another trained (idle() said no)
        threading.Thread(target=self.loop, daemon=True).start()

    def idle(self, place):
        return place is None and self.busy is None

    def start(self, job):
        if self.busy is not None:
            self.overlaps += 1
        self.busy = job.run_id
        self.started.append(job.run_id)
        self.jobs.put(job)

    def loop(self):
        while (job := self.jobs.get()) is not None:
            self.stop.clear()
            try:
                train_here(job, self.events, should_stop=self.stop.is_set, device="cpu")
            except Exception:
                pass  # train_here reported the failure
            self.busy = None
            self.events.ready()

    def cancel(self, run_id):
        if self.busy == run_id:
            self.stop.set()

    def shutdown(self, timeout):
        self.stop.set()
        self.jobs.put(None)
'''


@pytest.fixture
def serial_executor(tmp_path, monkeypatch):
    (tmp_path / "serial_executor.py").write_text(textwrap.dedent(SERIAL_EXECUTOR))
    monkeypatch.syspath_prepend(str(tmp_path))
    import serial_executor

    monkeypatch.setitem(EXECUTORS, serial_executor.SerialThreadExecutor.name, serial_executor.SerialThreadExecutor)
    yield serial_executor.SerialThreadExecutor
    sys.modules.pop("serial_executor", None)


def rows(store, run_id, metric):
    return store.sql("SELECT step, task, value FROM metrics WHERE run_id = ? AND metric = ? ORDER BY step, task",
                     [run_id, metric])


def run_row(store, run_id):
    keys = ("status", "error", "error_step", "last_step", "total_steps", "torch_version", "device")
    values = store.sql(f"SELECT {', '.join(keys)} FROM runs WHERE id = ?", [run_id])[0]
    return dict(zip(keys, values))


def test_a_registered_executor_runs_real_runs_through_the_manager(tmp_path, serial_executor):
    with Store(tmp_path / "lab.duckdb") as store:
        manager = RunManager(store, max_parallel=2, warm_workers=0, executor="serial-thread")
        try:
            assert isinstance(manager.executor, serial_executor)
            ids = [manager.submit(small_config("replay", seed=seed, eval={"every": 3})) for seed in (0, 1)]
            assert [manager.wait(i, timeout=300) for i in ids] == ["finished", "finished"]
            long = manager.submit(small_config("naive", train={"epochs_per_task": 2000}))
            deadline = time.monotonic() + 120
            while run_row(store, long)["last_step"] in (None, 0) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert manager.cancel(long) and manager.wait(long, timeout=60) == "cancelled"
        finally:
            manager.shutdown()
        executor = manager.executor
        # the manager honoured the executor's one slot although it allows 2 runs at once
        assert executor.started == [*ids, long] and executor.overlaps == 0
        for run_id in ids:
            row = run_row(store, run_id)
            assert row["error"] is None and row["last_step"] == row["total_steps"] > 0
            assert row["torch_version"].startswith("2.") and row["device"] == "cpu"
            assert len(rows(store, run_id, "train_loss")) == row["total_steps"]
            assert store.sql("SELECT count(*) FROM task_boundaries WHERE run_id = ? AND end_step IS NOT NULL",
                             [run_id])[0][0] == 2
            assert not (store.artifacts_dir(run_id) / "resume.pt").exists()  # finished: nothing to resume
        cancelled = run_row(store, long)
        assert cancelled["error_step"] == cancelled["last_step"] > 0  # stopped after its step, metrics kept
        assert store.sql("SELECT max(step) FROM metrics WHERE run_id = ?", [long])[0][0] == cancelled["error_step"]
        # the same run trained by run_in_process gives the same metric values, row for row
        again = run_in_process(store, small_config("replay", seed=0, eval={"every": 3}))
        for metric in ("train_loss", "acc"):
            assert rows(store, again, metric) == rows(store, ids[0], metric) != []


def test_the_in_process_executor_trains_queued_runs_in_threads(tmp_path):
    with Store(tmp_path / "lab.duckdb") as store:
        manager = RunManager(store, max_parallel=2, warm_workers=0, executor="in-process")
        try:
            ids = [manager.submit(small_config("naive", seed=seed)) for seed in (0, 1)]
            assert [manager.wait(i, timeout=300) for i in ids] == ["finished", "finished"]
        finally:
            manager.shutdown()
        for run_id in ids:
            row = run_row(store, run_id)
            assert row["last_step"] == row["total_steps"] > 0 and len(rows(store, run_id, "train_loss")) == row["total_steps"]
        assert manager.counts()["running"] == 0


def test_an_unknown_executor_is_one_clear_line(tmp_path):
    with Store(tmp_path / "lab.duckdb") as store:
        with pytest.raises(ValueError, match="unknown executor 'kubernetes': one of local, in-process, ray"):
            RunManager(store, executor="kubernetes")


def test_a_worker_imports_only_its_own_modules_before_a_run():
    """``python -m engine.runs.worker`` starts from the engine package, the runs package (which imports
    nothing) and the message protocol; torch and Lightning load in its main, the store never."""
    code = ("import sys, engine.runs.worker; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] "
            "in ('engine', 'store', 'duckdb', 'torch', 'lightning', 'pandas', 'pyarrow'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["engine", "engine.protocol", "engine.runs", "engine.runs.worker"]


def test_the_run_modules_are_in_no_import_cycle_and_the_cost_estimate_never_reaches_the_store():
    """engine.core.access, engine.training.cost and engine.runs were one cycle with store.store (function-local imports
    counted); the cost estimate is training-side."""
    import grimp

    graph = grimp.build_graph("engine", "store", "pages", include_external_packages=False)
    ours = [m for m in graph.modules if m.startswith("engine.runs") or m in ("engine.core.access", "engine.training.cost", "store.queue")]
    in_cycle = [(m, other) for m in ours for other in graph.find_modules_directly_imported_by(m)
                if graph.find_shortest_chain(importer=other, imported=m)]
    assert in_cycle == []
    reached = [m for m in graph.modules if m.split(".")[0] == "store"
               and graph.find_shortest_chain(importer="engine.training.cost", imported=m)]
    assert reached == []
