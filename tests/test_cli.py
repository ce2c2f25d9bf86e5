import re
import subprocess
import sys

from tests.conftest import ROOT


def test_headless_run_prints_its_id_and_progress_then_runs_lists_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: cli-run\nscenario: {n_tasks: 2}\nmodel: {hidden: [32]}\nstrategy: {name: replay, buffer_size: 50}\n"
                      "train: {epochs_per_task: 1}\neval: {every: 5}\n")
    db = tmp_path / "lab.duckdb"
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(config), "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    run_id = re.match(r"run (\d+) queued: cli-run", first).group(1)
    assert re.search(rf"run {run_id} finished +step (\d+)/\1 100.0%", proc.stdout)
    listing = subprocess.run([sys.executable, "-m", "engine", "runs", "--db", str(db)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0
    row = listing.stdout.splitlines()[1].split()
    assert row[:4] == [run_id, "cli-run", "replay", "finished"]


def test_progress_line_gives_the_task_the_accuracy_so_far_and_the_time_left(store):
    from engine.cli.train import progress_line
    from engine.runs.manager import run_in_process
    from tests.conftest import small_config

    run_id = run_in_process(store, small_config("naive", n_tasks=2))
    total = store.sql("SELECT total_steps FROM runs WHERE id = ?", [run_id])[0][0]
    status, line = progress_line(store, run_id, 1.0)
    last_acc = store.sql("SELECT avg(value) FROM metrics WHERE run_id = ? AND metric = 'acc' AND step = "
                         "(SELECT max(step) FROM metrics WHERE run_id = ? AND metric = 'acc')", [run_id, run_id])[0][0]
    assert status == "finished" and f"step {total}/{total} 100.0%" in line and "task 2/2" in line
    assert f"acc {last_acc:.3f}" in line and "left" not in line  # nothing left of a finished run
    # halfway through a running run: the pace so far gives the time left
    store.write("UPDATE runs SET status = 'running', last_step = ? WHERE id = ?", [total // 2, run_id])
    _, line = progress_line(store, run_id, 10.0)
    assert f"about {10.0 / (total // 2) * (total - total // 2):.0f} s left" in line


def test_export_writes_each_runs_metrics_matrix_summary_and_a_config_that_runs(tmp_path):
    import json

    import pandas as pd

    from engine.config import load_config
    from store import Store

    config = tmp_path / "c.yaml"
    config.write_text("name: exported\nscenario: {n_tasks: 2}\nmodel: {hidden: [16]}\ntrain: {epochs_per_task: 1}\n"
                      "eval: {every: 5}\n")
    db = tmp_path / "lab.duckdb"
    run = lambda *a: subprocess.run([sys.executable, "-m", "engine", *a], cwd=ROOT, capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    first = run("run", str(config), "--db", str(db))
    run_id = int(re.match(r"run (\d+)", first.stdout).group(1))
    for fmt in ("parquet", "csv"):
        out = tmp_path / fmt
        proc = run("export", str(run_id), "--format", fmt, "-o", str(out), "--db", str(db))
        assert proc.returncode == 0, proc.stderr
        folder = out / f"run-{run_id}"
        read = pd.read_parquet if fmt == "parquet" else pd.read_csv
        metrics, matrix = read(folder / f"metrics.{fmt}"), read(folder / f"accuracy_matrix.{fmt}")
        with Store(db) as store:
            stored = store.sql("SELECT count(*), sum(value) FROM metrics WHERE run_id = ?", [run_id])[0]
            cfg = json.loads(store.sql("SELECT config FROM runs WHERE id = ?", [run_id])[0][0])
        assert len(metrics) == stored[0] and abs(metrics["value"].sum() - stored[1]) < 1e-9
        assert list(matrix.columns) == ["after task", "task 1", "task 2"] and list(matrix["after task"]) == [0, 1, 2]
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["accuracy_matrix"][2] == list(matrix.iloc[2, 1:])
        assert summary["acc"] == sum(matrix.iloc[2, 1:]) / 2
        assert load_config(folder / "config.yaml").model_dump(mode="json") == cfg  # it runs again as it was
    missing = run("export", "999", "-o", str(tmp_path / "none"), "--db", str(db))
    assert missing.returncode == 2 and "no run 999" in missing.stderr and not (tmp_path / "none").exists()
