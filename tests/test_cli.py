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
