import duckdb
import numpy as np
import pytest

from store import NotADatabase, Store
from store.schema import SCHEMA_VERSION, migrate, schema_version


def test_a_new_file_gets_the_current_schema(tmp_path):
    with Store(tmp_path / "lab.duckdb") as store:
        assert store.migrated_from == 0
        assert store.sql("SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
        tables = {r[0] for r in store.sql("SELECT table_name FROM information_schema.tables")}
        assert {"runs", "metrics", "task_boundaries", "meta"} <= tables


def test_an_older_file_is_upgraded_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    migrate(con.cursor(), target=1)  # a file as the first CL Lab wrote it
    con.execute("INSERT INTO runs (name, config, status) VALUES ('old run', '{}', 'finished')")
    con.execute("INSERT INTO metrics VALUES (1, 5, 1, 'acc', 0.5)")
    assert schema_version(con.cursor()) == 1
    con.close()
    with Store(path) as store:
        assert store.migrated_from == 1
        assert schema_version(store.cursor()) == SCHEMA_VERSION
        assert store.sql("SELECT name, status, last_step, total_steps FROM runs") == [("old run", "finished", 0, None)]
        assert store.sql("SELECT * FROM metrics") == [(1, 5, 1, "acc", 0.5)]


def test_a_file_from_a_newer_lab_is_refused(tmp_path):
    path = tmp_path / "new.duckdb"
    with Store(path) as store:
        store.write("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(NotADatabase, match="newer than this CL Lab"):
        Store(path)


def batch(run_id, steps, metric="acc"):
    n = len(steps)
    return {"run_id": [run_id] * n, "step": list(steps), "task": [1] * n, "metric": [metric] * n, "value": np.linspace(0, 1, n)}


def test_writer_keeps_order_batches_rows_and_tracks_the_last_step(tmp_path):
    with Store(tmp_path / "lab.duckdb", flush_rows=1000) as store:
        run_id = store.create_run({"x": 1}, name="r")
        for start in range(0, 5000, 100):
            store.add_metrics(batch(run_id, range(start, start + 100)))
        # a status change queued after the metrics sees them all in the file
        store.set_status(run_id, "finished")
        assert store.sql("SELECT count(*), max(step) FROM metrics") == [(5000, 4999)]
        assert store.sql("SELECT status, last_step, finished_at IS NOT NULL FROM runs") == [("finished", 4999, True)]
        assert store.writer_error is None


def test_set_status_guard_and_delete(tmp_path):
    with Store(tmp_path / "lab.duckdb") as store:
        run_id = store.create_run({}, name="r")
        assert store.set_status(run_id, "cancelled", only_if=("queued",))
        assert not store.set_status(run_id, "running", only_if=("queued",))  # too late: it was cancelled
        store.add_metrics(batch(run_id, range(10)))
        store.start_task(run_id, 1, 0)
        store.delete_run(run_id)
        assert store.sql("SELECT count(*) FROM metrics") == [(0,)]
        assert store.sql("SELECT count(*) FROM runs") == [(0,)]
        assert store.sql("SELECT count(*) FROM task_boundaries") == [(0,)]


def test_readers_on_other_threads_take_their_own_cursor(tmp_path):
    import threading
    with Store(tmp_path / "lab.duckdb") as store:
        run_id = store.create_run({}, name="r")
        store.add_metrics(batch(run_id, range(1000)))
        store.flush()
        results, errors = [], []

        def read():
            try:
                results.append(store.sql("SELECT count(*) FROM metrics")[0][0])
            except Exception as err:  # would be ResourceInUseException with a shared connection
                errors.append(err)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and results == [1000] * 8


def test_a_failing_write_fails_alone_and_the_writes_around_it_land(tmp_path):
    with Store(tmp_path / "lab.duckdb") as store:
        run_id = store.create_run({}, name="r")
        # queued together, so the writer takes them as one batch: the bad one must not undo the others
        before = store.call(lambda cur: cur.execute("UPDATE runs SET name = 'renamed' WHERE id = ?", [run_id]))
        bad = store.call(lambda cur: cur.execute("INSERT INTO no_such_table VALUES (1)"))
        store.add_metrics(batch(run_id, range(10)))
        after = store.call(lambda cur: cur.execute("UPDATE runs SET status = 'finished' WHERE id = ?", [run_id]))
        before.result(), after.result()
        with pytest.raises(duckdb.CatalogException):
            bad.result()
        assert store.sql("SELECT name, status, last_step FROM runs") == [("renamed", "finished", 9)]
        assert store.sql("SELECT count(*) FROM metrics") == [(10,)]


def test_copy_to_makes_a_file_another_process_can_open_while_the_lab_runs(tmp_path):
    import subprocess
    import sys
    from tests.conftest import ROOT
    with Store(tmp_path / "lab.duckdb") as store:
        run_id = store.create_run({"a": 1}, name="r")
        store.add_metrics(batch(run_id, range(100)))
        copy = store.copy_to(tmp_path / "copy.duckdb")
        store.add_metrics(batch(run_id, range(100, 150)))  # the lab goes on writing
        out = subprocess.run([sys.executable, "-c", "import sys; from store import Store; s = Store(sys.argv[1]); "
                              "print(s.sql('SELECT count(*), max(step) FROM metrics')[0])", str(copy)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "(100, 99)", out.stderr
        assert store.sql("SELECT count(*) FROM metrics") == [(150,)]


def test_a_closed_store_says_so_and_holds_no_connection(tmp_path):
    import duckdb

    s = Store(tmp_path / "lab.duckdb")
    s.close()
    # the connection object is dropped, not only closed: one kept until exit made duckdb print
    # "nanobind: leaked instances" when the lab stopped mid-run
    assert s._con is None
    with pytest.raises(duckdb.ConnectionException, match="is closed"):
        s.sql("SELECT 1")
