"""The owner process stopped by a signal, its workers, and reading a database it holds: real processes."""

import os
import re
import signal
import stat
import subprocess
import sys
import time

from engine.training import checkpoint as checkpoints
from engine.runs import artifacts
from store import Store
from store.snapshot import socket_path
from engine.runs.manager import run_in_process
from tests.conftest import ROOT, small_config

# 3 tasks, long enough to be stopped in task 2 or 3 once task 1's checkpoint is written
LONG = ("name: long\nscenario: {n_tasks: 3}\nmodel: {hidden: [32]}\nstrategy: {name: replay, buffer_size: 50}\n"
        "train: {epochs_per_task: 30}\neval: {every: 10}\n")


def start_owner(tmp_path, config_text: str = LONG) -> tuple[subprocess.Popen, os.PathLike]:
    config, db = tmp_path / "long.yaml", tmp_path / "lab.duckdb"
    config.write_text(config_text)
    owner = subprocess.Popen([sys.executable, "-m", "engine", "run", str(config), "--db", str(db)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = artifacts.checkpoint_path(tmp_path / "lab.duckdb.artifacts" / "run-1")
    deadline = time.monotonic() + 180
    while not checkpoint.exists():  # task 1 ended: the run is training task 2
        assert owner.poll() is None and time.monotonic() < deadline, owner.stderr.read() if owner.poll() else "slow"
        time.sleep(0.01)
    return owner, db


def children(pid: int, name: str = "engine.runs.worker") -> list[int]:
    """The live child processes of ``pid`` running ``name`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
            except OSError:
                continue
            if ppid == pid and name.encode() in cmdline:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended


def train_loss_steps(store, run_id=1) -> list[int]:
    return [r[0] for r in store.sql("SELECT step FROM metrics WHERE run_id = ? AND metric = 'train_loss' ORDER BY step",
                                    [run_id])]


def test_sigterm_on_the_owner_commits_every_metric_it_received(tmp_path):
    owner, db = start_owner(tmp_path)
    time.sleep(0.3)  # into task 2: batches on their way
    workers = children(owner.pid)
    assert len(workers) == 1
    owner.send_signal(signal.SIGTERM)
    _, err = owner.communicate(timeout=60)
    assert owner.returncode == -signal.SIGTERM
    report = re.search(r"SIGTERM: run 1: (\d+) metric rows received, (\d+) committed", err)
    assert report, err
    received, committed = map(int, report.groups())
    assert received == committed > 0
    with Store(db) as store:
        assert store.sql("SELECT count(*) FROM metrics WHERE run_id = 1")[0][0] == committed
        steps = train_loss_steps(store)
        header = checkpoints.read_header(artifacts.checkpoint_path(store.artifacts_dir(1)))
        assert steps == list(range(1, len(steps) + 1)) and len(steps) >= header["step"]
    deadline = time.monotonic() + 1.0
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(alive(w) for w in workers)


def test_sigkill_on_the_owner_ends_its_workers_at_once_and_the_run_resumes(tmp_path):
    owner, db = start_owner(tmp_path)
    time.sleep(0.2)
    workers = children(owner.pid)
    assert len(workers) == 1
    owner.kill()
    killed = time.monotonic()
    owner.wait()
    # they poll every 20 ms (well under a second when idle); 5 s leaves room for a loaded CI machine,
    # where the watcher thread once took just over a second to be scheduled
    while any(alive(w) for w in workers) and time.monotonic() - killed < 5.0:
        time.sleep(0.01)
    assert not any(alive(w) for w in workers), f"a worker outlived its owner by {time.monotonic() - killed:.2f} s"
    with Store(db) as store:  # opens clean; what was lost is at most the tail of the writer's last batch
        steps = train_loss_steps(store)
        assert steps == list(range(1, len(steps) + 1))
        assert store.sql("SELECT status FROM runs WHERE id = 1")[0][0] == "running"  # until a lab opens it
    resume = subprocess.run([sys.executable, "-m", "engine", "resume", "1", "--db", str(db)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr
    assert re.match(r"run 1 queued to resume from task [23] at step \d+", resume.stdout)  # the last checkpoint in
    with Store(db) as store:
        status, total = store.sql("SELECT status, total_steps FROM runs WHERE id = 1")[0]
        assert status == "finished" and train_loss_steps(store) == list(range(1, total + 1))
        assert store.sql("SELECT count(*) FROM task_boundaries WHERE run_id = 1 AND end_step IS NOT NULL")[0][0] == 3
    again = subprocess.run([sys.executable, "-m", "engine", "resume", "1", "--db", str(db)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "run 1 is finished: only a failed or cancelled run" in again.stderr


HOLD = """
import sys
from store import Store
store = Store(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()
store.close()
print("closed", flush=True)
"""


def cli(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_read_only_commands_read_a_snapshot_while_another_process_holds_the_database(tmp_path):
    db = tmp_path / "lab.duckdb"
    with Store(db) as store:
        run_in_process(store, small_config("replay", eval={"every": 2}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        sock = socket_path(db)
        assert stat.S_ISSOCK(os.stat(sock).st_mode) and stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        runs = cli("runs", "--db", str(db))
        assert runs.returncode == 0, runs.stderr
        assert runs.stdout.splitlines()[1].split()[:4] == ["1", "test-replay", "replay", "finished"]
        metrics = cli("metrics", "1", "--json", "--db", str(db))
        assert metrics.returncode == 0, metrics.stderr
        assert '"status": "finished"' in metrics.stdout and '"accuracy_matrix"' in metrics.stdout
        frontier = cli("frontier", "--db", str(db))
        assert frontier.returncode == 0 and "1 of 1 runs on the frontier" in frontier.stdout
        assert not list(tmp_path.glob("*.sock-*"))
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "closed"
        assert not sock.exists()  # removed on close
    finally:
        holder.kill()
        holder.wait()
