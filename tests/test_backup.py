"""`python -m engine backup`: a consistent copy of a lab's database while a lab holds it (through its
snapshot socket) and while none does, with the weights on request; bad destinations refused in one line."""

import subprocess
import sys
from pathlib import Path

from store import Store

ROOT = Path(__file__).resolve().parent.parent


def backup(*args):
    return subprocess.run([sys.executable, "-m", "engine", "backup", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def fill(store: Store) -> list[int]:
    ids = [store.create_run({"name": f"r{i}"}, name=f"r{i}", owner="ada@lab.test") for i in range(3)]
    store.add_metrics({"run_id": [ids[0]] * 2, "step": [1, 2], "task": [1, 1], "metric": ["acc", "acc"],
                       "value": [0.5, 0.75]})
    store.flush()
    return ids


def test_a_backup_taken_while_the_lab_holds_the_file_has_its_runs_and_weights(tmp_path):
    db = tmp_path / "lab.duckdb"
    holder = Store(db)  # serves snapshots, as a running lab does
    try:
        ids = fill(holder)
        weights = holder.artifacts_dir(ids[0]) / "after-task-1.pt"
        weights.parent.mkdir(parents=True)
        weights.write_bytes(b"w" * 1000)
        dest = tmp_path / "backups" / "lab-copy.duckdb"
        dest.parent.mkdir()
        proc = backup(dest, "--artifacts", "--db", db)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"backup: {dest}") and "artifacts:" in proc.stdout
        holder.write("UPDATE runs SET name = 'after' WHERE id = ?", [ids[1]])  # the lab goes on
    finally:
        holder.close()
    copy = Store(dest, serve=False)
    try:
        assert [r[0] for r in copy.sql("SELECT name FROM runs ORDER BY id")] == ["r0", "r1", "r2"]
        assert copy.sql("SELECT sum(value) FROM metrics")[0][0] == 1.25
        assert copy.sql("SELECT DISTINCT owner FROM runs") == [("ada@lab.test",)]
        assert (copy.artifacts_dir(ids[0]) / "after-task-1.pt").read_bytes() == b"w" * 1000
    finally:
        copy.close()


def backup_here(capsys, *args):  # the same command in this process (no interpreter start)
    from engine.cli.main import main

    code = main(["backup", *map(str, args)])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_a_backup_of_a_stopped_lab_and_the_destinations_refused(tmp_path, capsys):
    db = tmp_path / "lab.duckdb"
    store = Store(db)
    fill(store)
    store.close()
    dest = tmp_path / "copy.duckdb"
    proc = backup_here(capsys, dest, "--db", db)
    assert proc.returncode == 0, proc.stderr
    assert "weights and checkpoints not copied" in proc.stdout
    copy = Store(dest, serve=False)
    assert copy.sql("SELECT count(*) FROM runs")[0][0] == 3
    copy.close()
    for bad, says in ((dest, "must be a new file"), (tmp_path / "no-dir" / "x.duckdb", "must be a new file"),
                      (db, "must be a new file")):
        proc = backup_here(capsys, bad, "--db", db)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = backup_here(capsys, tmp_path / "y.duckdb", "--db", tmp_path / "missing.duckdb")
    assert proc.returncode == 2 and "no such database file" in proc.stderr
    assert not (tmp_path / "y.duckdb").exists()


def test_a_backup_that_fails_halfway_leaves_nothing(tmp_path, capsys):
    db = tmp_path / "lab.duckdb"
    store = Store(db)
    fill(store)
    weights = store.artifacts_dir(1)
    store.close()
    weights.mkdir(parents=True)
    (weights / "after-task-1.pt").write_bytes(b"w")
    (weights / "gone.pt").symlink_to(tmp_path / "nowhere")  # the artifacts copy fails after the database copy
    dest = tmp_path / "copy.duckdb"
    proc = backup_here(capsys, dest, "--artifacts", "--db", db)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "1 file(s) could not be copied" in proc.stderr
    assert "gone.pt" in proc.stderr, proc.stderr
    assert not dest.exists() and not (tmp_path / "copy.duckdb.artifacts").exists()
