"""What a command does to the files it is given: a foreign or newer database, a mistyped path, a
refused command, a resume beside a queue, the weights a resume leaves, a closed stdout. Real CLI
processes, real DuckDB files."""

import re
import signal
import subprocess
import sys

import duckdb

from engine.weights import disk_usage
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
    before = {path: (path.read_bytes(), tables_of(path)) for path in (customers, own_runs, newer)}
    for path, expected in ((customers, "is a DuckDB database but not a CL Lab's (its tables: customers)"),
                           (own_runs, "is a DuckDB database but not a CL Lab's (its tables: runs)"),
                           (newer, "has schema version 99, newer than this CL Lab knows")):
        for argv in (("runs",), ("metrics", 1), ("frontier",), ("run", config)):
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
