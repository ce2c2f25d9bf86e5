"""What a command does to the files it is given: a foreign or newer database, a mistyped path, a
refused command, a resume beside a queue, the weights a resume leaves, a closed stdout. Real CLI
processes, real DuckDB files."""

import errno
import os
import re
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from engine.runs.artifacts import disk_usage
from store import Store
from store.schema import migrate, schema_version
from tests.conftest import ROOT, small_config
from tests.test_crash import LONG as LONG_RUN, start_owner


def cli(*argv, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "engine", *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kw)


def one_line_exit_2(proc, expected: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected in proc.stderr, proc.stderr


def tables_of(path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT table_name, estimated_size FROM duckdb_tables() ORDER BY 1").fetchall()
    finally:
        con.close()


def test_a_foreign_or_newer_database_is_one_line_exit_2_and_left_unchanged(tmp_path):
    customers = tmp_path / "customers.duckdb"
    con = duckdb.connect(str(customers))
    con.execute("CREATE TABLE customers (id INTEGER, name VARCHAR)")
    con.execute("INSERT INTO customers VALUES (1, 'a'), (2, 'b')")
    con.close()
    own_runs = tmp_path / "own-runs.duckdb"
    con = duckdb.connect(str(own_runs))
    con.execute("CREATE TABLE runs (id INTEGER, what VARCHAR)")
    con.close()
    newer = tmp_path / "newer.duckdb"
    with Store(newer, serve=False) as store:
        store.write("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    config = tmp_path / "c.yaml"
    config.write_text("name: c\nscenario: {n_tasks: 2}\nmodel: {hidden: [16]}\n")
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nbase: {model: {hidden: [16]}}\ngrid: {train.lr: [0.01, 0.05]}\nseeds: [0]\n")
    before = {path: (path.read_bytes(), tables_of(path)) for path in (customers, own_runs, newer)}
    for path, expected in ((customers, "is a DuckDB database but not a CL Lab's (its tables: customers)"),
                           (own_runs, "is a DuckDB database but not a CL Lab's (its tables: runs)"),
                           (newer, "has schema version 99, newer than this CL Lab knows")):
        every_command = (("export", 1, "-o", tmp_path / "out"), ("report", 1, "-o", tmp_path / "r.html"),
                         ("resume", 1), ("gc",), ("sweep", sweep)) if path == customers else ()
        for argv in (("runs",), ("metrics", 1), ("frontier",), ("run", config), *every_command):
            one_line_exit_2(cli(*argv, "--db", path), f"error: --db {path}: {expected}")
        assert (path.read_bytes(), tables_of(path)) == before[path], path  # not a byte changed
        assert not path.with_name(path.name + ".wal").exists()


def test_an_older_or_empty_lab_file_is_read_without_being_changed(tmp_path):
    older, empty = tmp_path / "older.duckdb", tmp_path / "empty.duckdb"
    con = duckdb.connect(str(older))
    migrate(con.cursor(), target=4)  # a file as CL Lab wrote it before notes and tags
    con.execute("INSERT INTO runs (name, config, status) VALUES ('old run', ?, 'finished')",
                ['{"strategy": {"name": "naive"}}'])
    con.close()
    duckdb.connect(str(empty)).close()  # a DuckDB file with nothing in it yet
    before = {path: path.read_bytes() for path in (older, empty)}
    listed = cli("runs", "--db", older)
    assert listed.returncode == 0 and "old run" in listed.stdout, listed.stderr
    nothing = cli("runs", "--db", empty)
    assert nothing.returncode == 0 and f"no runs in {empty}" in nothing.stdout, nothing.stderr
    assert {path: path.read_bytes() for path in (older, empty)} == before  # read, not upgraded
    con = duckdb.connect(str(older), read_only=True)
    assert schema_version(con.cursor()) == 4
    con.close()


def test_commands_that_do_not_write_create_nothing(tmp_path):
    missing = tmp_path / "mistyped.duckdb"
    for argv in (("runs",), ("metrics", 1), ("frontier",), ("export", 1, "-o", tmp_path / "out"),
                 ("report", 1, "-o", tmp_path / "r.html"), ("resume", 1), ("tradeoff", 1), ("gc",)):
        proc = cli(*argv, "--db", missing)
        one_line_exit_2(proc, f"error: --db {missing}: ")
        assert re.search(r"there is no such file|no such database", proc.stderr), proc.stderr
    # a sweep the cost check refuses writes nothing, so it leaves no database either
    sweep = tmp_path / "costly.yaml"
    sweep.write_text("name: s\nbase: {model: {hidden: [32]}}\ngrid: {model.hidden: [[32], "
                     f"[{', '.join(['16384'] * 16)}]]}}\nseeds: [0]\n")
    refused = cli("sweep", sweep, "--db", missing)
    assert refused.returncode == 2 and "for the weights alone" in refused.stderr, refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costly.yaml"]


# test_crash's run (3 tasks, stopped in task 2 or 3), keeping the last weights only
LONG = LONG_RUN.replace("train: {", "train: {weights: last, ")


def killed_in_task_2(tmp_path):
    """A database whose run 1 was killed (SIGKILL on its owner) after task 1's checkpoint."""
    owner, db = start_owner(tmp_path, LONG)
    owner.send_signal(signal.SIGKILL)
    owner.communicate(timeout=60)
    return tmp_path / "long.yaml", db


def test_resume_trains_only_the_run_asked_for(tmp_path):
    config, db = killed_in_task_2(tmp_path)
    from engine.config import load_config

    with Store(db, serve=False) as store:  # a run left queued in the file (the lab's queue)
        queued = store.create_run(load_config(config).model_dump(mode="json"), name="left queued")
    resume = cli("resume", 1, "--db", db)
    assert resume.returncode == 0, resume.stderr
    with Store(db, serve=False) as store:
        assert store.sql("SELECT id, status FROM runs ORDER BY id") == [(1, "finished"), (queued, "queued")]
        assert store.sql("SELECT count(*) FROM metrics WHERE run_id = ?", [queued])[0][0] == 0


def test_a_resume_with_weights_last_leaves_only_the_final_weights(tmp_path):
    config, db = killed_in_task_2(tmp_path)
    run_dir = tmp_path / "lab.duckdb.artifacts" / "run-1"
    assert (run_dir / "after-task-1.pt").exists()  # the interrupted run's weights of task 1
    resume = cli("resume", 1, "--db", db)
    assert resume.returncode == 0, resume.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["after-task-3.pt"]
    # the weights budget counts the final file alone (resume.pt went when the run finished)
    assert disk_usage(db)["runs"] == {1: (run_dir / "after-task-3.pt").stat().st_size}


def test_a_closed_stdout_ends_every_command_quietly(tmp_path):
    """``python -m engine metrics 6 --json | head``: the reader goes away; no traceback."""
    db = tmp_path / "lab.duckdb"
    with Store(db, serve=False) as store:
        run_id = store.create_run(small_config().model_dump(mode="json"), name="r", status="finished")
        store.add_metrics({"run_id": [run_id] * 3, "step": [0, 1, 2], "task": [1, 1, 1],
                           "metric": ["train_loss"] * 3, "value": [1.0, 0.5, 0.25]})
    for argv in (("metrics", run_id, "--json"), ("metrics", run_id), ("runs",), ("datasets",)):
        proc = subprocess.Popen([sys.executable, "-m", "engine", *map(str, argv)]
                                + (["--db", str(db)] if argv[0] != "datasets" else []), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.close()  # the reader is gone before anything is written
        err = proc.stderr.read()
        proc.wait(timeout=60)
        assert "Traceback" not in err and "BrokenPipeError" not in err and not err.strip(), (argv, err)


# ---- a full disk (item 5): a real small filesystem, a tmpfs mounted for the test -----------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs holding the database; the runs' weights folder is a link to the test's own
    directory, so that only the metric writer meets the full disk."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    (tmp_path / "artifacts").mkdir()
    (mount / "lab.duckdb.artifacts").symlink_to(tmp_path / "artifacts")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount) -> None:
    """Write a file on ``mount`` until the disk is full."""
    with open(mount / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC, err


def settings(tmp_path, disk_wait_s: float) -> dict:
    path = tmp_path / "lab.toml"
    path.write_text(f"[limits]\ndisk_wait_s = {disk_wait_s}\n")
    return {**os.environ, "CL_LAB_SETTINGS": str(path)}


def start_on(mount, tmp_path, env) -> subprocess.Popen:
    """The long run on ``mount``, once task 1 ended (its checkpoint is there): the run trains task 2."""
    config = tmp_path / "long.yaml"
    config.write_text(LONG)
    owner = subprocess.Popen([sys.executable, "-m", "engine", "run", str(config), "--db", str(mount / "lab.duckdb")],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "artifacts" / "run-1" / "resume.pt"
    deadline = time.monotonic() + 180
    while not checkpoint.exists():
        assert owner.poll() is None and time.monotonic() < deadline, owner.communicate() if owner.poll() else "slow"
        time.sleep(0.01)
    return owner


def assert_every_row_is_there(db) -> None:
    with Store(db, serve=False) as store:
        (total,) = store.sql("SELECT total_steps FROM runs WHERE id = 1")[0]
        rows, steps = store.sql("SELECT count(*), count(DISTINCT step) FROM metrics "
                                "WHERE run_id = 1 AND metric = 'train_loss'")[0]
        evals = store.sql("SELECT count(*) FROM metrics WHERE run_id = 1 AND metric = 'acc' GROUP BY step")
    assert rows == steps == total, (rows, steps, total)  # every step's training loss, once
    assert {n for (n,) in evals} == {3}, evals  # every evaluation, on each of the 3 tasks


def test_a_full_disk_that_frees_again_loses_no_metric_row(small_disk, tmp_path):
    owner = start_on(small_disk, tmp_path, settings(tmp_path, 60))
    fill(small_disk)
    time.sleep(4)  # the writer meets the full disk and waits
    (small_disk / "filler").unlink()
    out, err = owner.communicate(timeout=300)
    assert owner.returncode == 0, (out, err)
    assert f"no space left on tmpfs mounted at {small_disk}" in err and "Traceback" not in err, err
    assert_every_row_is_there(small_disk / "lab.duckdb")


def test_a_disk_that_stays_full_fails_the_run_in_one_line_and_it_resumes(small_disk, tmp_path):
    env = settings(tmp_path, 2)
    owner = start_on(small_disk, tmp_path, env)
    fill(small_disk)
    out, err = owner.communicate(timeout=300)
    assert owner.returncode == 1 and "Traceback" not in err, (out, err)
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(rf"run 1 failed at step \d+/\d+: no space left on tmpfs mounted at {small_disk} "
                        rf"\({small_disk}/lab.duckdb.wal\): [\d,]+ of the [\d,]+ metric rows it sent are in the file",
                        last), last
    (small_disk / "filler").unlink()
    resumed = cli("resume", 1, "--db", small_disk / "lab.duckdb", env=env)
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    assert_every_row_is_there(small_disk / "lab.duckdb")


def test_a_command_on_a_full_disk_leaves_no_file(small_disk, tmp_path):
    fill(small_disk)
    config = tmp_path / "c.yaml"
    config.write_text("name: c\nscenario: {n_tasks: 2}\nmodel: {hidden: [16]}\n")
    new = small_disk / "new.duckdb"
    one_line_exit_2(cli("runs", "--db", new), f"error: --db {new}: there is no such file")
    one_line_exit_2(cli("run", config, "--db", new), f"error: --db {new}: no space left on tmpfs mounted at {small_disk}")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "lab.duckdb.artifacts"]


def test_a_run_that_would_not_fit_on_the_disk_is_refused_before_it_starts(small_disk, tmp_path):
    big = tmp_path / "big.yaml"  # about 750 k metric rows: more than the 16 MB disk holds
    big.write_text("name: big\nscenario: {n_tasks: 5}\nmodel: {hidden: [16]}\ntrain: {epochs_per_task: 1500}\n"
                   "eval: {every: 1}\n")
    refused = cli("run", big, "--db", small_disk / "lab.duckdb")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "disk: this run would write about " in refused.stderr, refused.stderr  # the config check's report
    assert f"mounted at {small_disk} has " in refused.stderr and "MB free" in refused.stderr, refused.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["lab.duckdb.artifacts"]  # no database left


def test_the_free_space_of_a_path_not_yet_written_is_its_nearest_folders(tmp_path):
    from store.disk import free_bytes, mount_of

    not_yet = tmp_path / "a" / "b" / "lab.duckdb"  # a new database in folders the lab will make
    assert mount_of(not_yet) == mount_of(tmp_path)
    assert abs(free_bytes(not_yet) - free_bytes(tmp_path)) < 64 << 20
