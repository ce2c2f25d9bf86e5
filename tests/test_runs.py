"""The run manager with real worker processes and a real DuckDB file."""

import os
import signal
import subprocess
import sys
import time

import pytest

from engine.core.limits import limits
from engine.runs.manager import RunManager
from store import DatabaseLocked, Store
from tests.conftest import ROOT, small_config

LONG = {"train": {"epochs_per_task": 2000}}  # runs until stopped


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("lab") / "lab.duckdb")
    manager = RunManager(store, max_parallel=2, warm_workers=2)
    yield store, manager
    manager.shutdown()
    store.close()


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def run_row(store, run_id):
    return dict(zip(("status", "error", "error_step", "last_step", "total_steps", "torch", "lightning", "python", "lab"),
                    store.sql("SELECT status, error, error_step, last_step, total_steps, torch_version, lightning_version,"
                              " python_version, lab_version FROM runs WHERE id = ?", [run_id])[0]))


def n_metrics(store, run_id):
    return store.sql("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id])[0][0]


def test_a_run_finishes_in_a_worker_with_its_metrics_and_versions(lab):
    store, manager = lab
    run_id = manager.submit(small_config("replay"))
    assert manager.wait(run_id, timeout=120) == "finished"
    row = run_row(store, run_id)
    assert row["error"] is None and row["last_step"] == row["total_steps"] > 0
    assert row["torch"].startswith("2.13") and row["lightning"] and row["python"] and row["lab"]
    assert store.sql("SELECT count(*) FROM metrics WHERE run_id = ? AND metric = 'train_loss'", [run_id])[0][0] == row["total_steps"]
    assert store.sql("SELECT count(*) FROM task_boundaries WHERE run_id = ? AND end_step IS NOT NULL", [run_id])[0][0] == 2


def test_workers_train_below_the_pages_cpu_priority(lab):
    """Training yields the CPU to the lab's pages: each worker runs at the lab's nice level plus
    limits.worker_nice (10 unless lab.toml says otherwise), capped at 19."""
    store, manager = lab
    workers = wait_for(lambda: [w for w in manager.executor.workers if w.alive and w.proc.poll() is None])
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + limits().worker_nice)
    # the worker lowers its own priority as it starts, before it loads torch
    assert wait_for(lambda: all(os.getpriority(os.PRIO_PROCESS, w.proc.pid) == expected for w in workers))


def test_a_huge_learning_rate_ends_as_diverged_with_its_step(lab):
    store, manager = lab
    run_id = manager.submit(small_config("naive", train={"lr": 10.0}))  # the largest allowed; diverges here
    assert manager.wait(run_id, timeout=120) == "diverged"
    row = run_row(store, run_id)
    assert row["error_step"] >= 1 and f"step {row['error_step']}" in row["error"]
    last_loss = store.sql("SELECT step, value FROM metrics WHERE run_id = ? AND metric = 'train_loss' ORDER BY step DESC LIMIT 1", [run_id])[0]
    assert last_loss[0] == row["error_step"] and not (last_loss[1] == last_loss[1] and abs(last_loss[1]) < float("inf"))


def test_cancel_stops_a_running_run_after_its_step_and_keeps_its_metrics(lab):
    store, manager = lab
    run_id = manager.submit(small_config("naive", **LONG))
    wait_for(lambda: run_row(store, run_id)["last_step"] > 20)
    assert manager.cancel(run_id)
    assert manager.wait(run_id, timeout=60) == "cancelled"
    row = run_row(store, run_id)
    assert row["error_step"] == row["last_step"] > 20
    assert store.sql("SELECT max(step) FROM metrics WHERE run_id = ?", [run_id])[0][0] == row["error_step"]
    assert not manager.cancel(run_id)  # nothing left to cancel


def test_a_worker_killed_with_sigkill_fails_the_run_and_keeps_what_it_reported(lab):
    store, manager = lab
    run_id = manager.submit(small_config("naive", **LONG))
    wait_for(lambda: run_row(store, run_id)["last_step"] > 50)
    store.flush()
    before = n_metrics(store, run_id)
    worker = next(w for w in manager.executor.workers if w.run_id == run_id)
    os.kill(worker.proc.pid, signal.SIGKILL)
    assert manager.wait(run_id, timeout=60) == "failed"
    row = run_row(store, run_id)
    assert "killed by SIGKILL" in row["error"] and row["error_step"] >= 50
    assert n_metrics(store, run_id) >= before
    assert store.sql("SELECT max(step) FROM metrics WHERE run_id = ?", [run_id])[0][0] == row["error_step"]
    # the lab goes on: a new worker takes the next run
    next_run = manager.submit(small_config("naive"))
    assert manager.wait(next_run, timeout=120) == "finished"


def test_at_most_n_runs_at_once_and_the_rest_queue(lab):
    store, manager = lab
    ids = [manager.submit(small_config("naive", **LONG)) for _ in range(3)]
    wait_for(lambda: all(run_row(store, i)["status"] == "running" for i in ids[:2]))
    time.sleep(0.5)
    assert run_row(store, ids[2])["status"] == "queued"
    assert manager.counts()["running"] == 2
    assert manager.cancel(ids[2])  # a queued run is cancelled at once
    assert run_row(store, ids[2])["status"] == "cancelled"
    for i in ids[:2]:
        manager.cancel(i)
    assert [manager.wait(i, timeout=60) for i in ids[:2]] == ["cancelled", "cancelled"]


def test_a_new_lab_fails_runs_left_running_and_runs_those_left_queued(tmp_path):
    path = tmp_path / "lab.duckdb"
    with Store(path) as store:
        config = small_config("naive").model_dump(mode="json")
        left_running = store.create_run(config, name="was running", status="running")
        left_queued = store.create_run(config, name="was queued")
    store = Store(path)
    manager = RunManager(store, max_parallel=1)
    try:
        assert run_row(store, left_running)["status"] == "failed"
        assert "stopped" in run_row(store, left_running)["error"]
        assert manager.wait(left_queued, timeout=120) == "finished"
    finally:
        manager.shutdown()
        store.close()


# a holder that serves no snapshots (an older lab): read-only commands cannot read the file either
HOLD = ("import sys, time; from store import Store; s = Store(sys.argv[1], serve=False); print('held', flush=True);"
        " time.sleep(60)")


def test_a_database_held_by_another_process_gets_a_clear_message(tmp_path):
    path = tmp_path / "lab.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseLocked) as err:
            Store(path)
        assert "in use by another CL Lab process" in str(err.value) and str(holder.pid) in str(err.value)
        proc = subprocess.run([sys.executable, "-m", "engine", "runs", "--db", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3
        assert "in use by another CL Lab process" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_held_queue_waits_until_resumed(tmp_path):
    store = Store(tmp_path / "lab.duckdb")
    manager = RunManager(store, max_parallel=1, warm_workers=0, paused=True)
    try:
        run_id = manager.submit(small_config("naive"))
        time.sleep(1.0)
        assert run_row(store, run_id)["status"] == "queued" and manager.counts()["workers"] == 0
        manager.resume()
        assert manager.wait(run_id, timeout=120) == "finished"
    finally:
        manager.shutdown()
        store.close()
