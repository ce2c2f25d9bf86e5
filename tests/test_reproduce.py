"""bench/reproduce.py: a table's sweep runs through the CLI into a real DuckDB file and the document's
rows and figures are the database's, beside the published ones, with the causes named."""

import json
import re
import subprocess
import sys

from store import Store
from store.metrics.summary import summaries
from tests.conftest import ROOT

SWEEP = {
    "name": "tiny-table",
    "base": {"scenario": {"dataset": "digits", "setting": "class", "n_tasks": 2},
             "model": {"name": "mlp", "hidden": [16]}, "strategy": {"name": "naive"},
             "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs_per_task": 1, "weights": "none"},
             "eval": {"every": 1000}},
    "grid": [{"strategy.name": ["naive"]},
             {"strategy.name": ["replay"], "strategy.buffer_size": [50, 20], "train.lr": [0.1]}],
    "seeds": [0, 1],
}
PUBLISHED = {
    "title": "A tiny table", "source": "made up for the test", "order": 1, "scale": 100, "tolerance": 2,
    "columns": [{"name": "Class-IL", "metric": "acc"}, {"name": "Masked", "metric": "no_such_metric"},
                {"name": "Task-IL", "metric": "acc", "match": {"scenario.setting": "task"}}],  # runs not in the sweep
    "causes": {"known": "a cause the table names"},
    "rows": [
        {"name": "Naive", "match": {"strategy.name": "naive"}, "published": {"Class-IL": [0.0, 0.0]}},
        {"name": "Replay (50)", "match": {"strategy.name": "replay", "strategy.buffer_size": 50},
         "published": {"Class-IL": [0.0]}, "cause": "known"},
        {"name": "Never run", "match": {"strategy.name": "ewc"}, "published": {"Class-IL": [50.0, 1.0]},
         "cause": "known"},
    ],
}


def run_reproduce(*args, timeout=600):
    return subprocess.run([sys.executable, "bench/reproduce.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def table_lines(doc: str) -> dict[tuple[str, str], list[str]]:
    """(method, column) -> the row's cells."""
    out = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 8 and cells[0] != "Method":
            out[(cells[0], cells[1])] = cells
    return out


def test_the_document_holds_the_databases_figures_beside_the_published_ones(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "tiny.yaml").write_text(json.dumps(SWEEP))
    (tables / "tiny.published.yaml").write_text(json.dumps(PUBLISHED))
    # a table whose sweep names a key this build lacks is pending, the others still run
    later = {**SWEEP, "name": "later", "base": {**SWEEP["base"], "train": {**SWEEP["base"]["train"], "iterations": 5}}}
    (tables / "later.yaml").write_text(json.dumps(later))
    (tables / "later.published.yaml").write_text(json.dumps({**PUBLISHED, "title": "Later", "order": 2}))
    # the same runs against targets (Avalanche's kind): above a target is no shortfall, below one is
    (tables / "targets.yaml").write_text(json.dumps(SWEEP))
    (tables / "targets.published.yaml").write_text(json.dumps({
        **PUBLISHED, "title": "Targets", "order": 3, "lower_bound": True, "rows": [
            {"name": "Low target", "match": {"strategy.name": "naive"}, "published": {"Class-IL": [0.0]}},
            {"name": "High target", "match": {"strategy.name": "replay", "strategy.buffer_size": 50},
             "published": {"Class-IL": [100.0]}}]}))
    db, out = tmp_path / "r.duckdb", tmp_path / "reproductions.md"
    args = ["--data", str(tmp_path), "--db", str(db), "--out", str(out), "--tables-dir", str(tables)]
    proc = run_reproduce(*args)
    assert proc.returncode == 0, proc.stderr
    doc = out.read_text()

    store = Store(db, serve=False)
    try:
        runs = store.sql("SELECT id, name, status FROM runs ORDER BY id")
        acc = {rid: s["acc"] for rid, s in zip([r[0] for r in runs], summaries(store, [r[0] for r in runs]))}
        sweeps = store.sql("SELECT count(*) FROM sweeps")[0][0]
    finally:
        store.close()
    assert len(runs) == 6 and {r[2] for r in runs} == {"finished"} and sweeps == 1

    def ours(prefix):
        values = [100 * acc[rid] for rid, name, _ in runs if name.startswith(prefix)]
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        return mean, sd

    rows = table_lines(doc)
    # a run no row matches is a row of its own, named by its settings (every replay hparam, in order)
    extra = [m for m, _ in rows if m.startswith("replay buffer_size=20 replay_batch_size=32 policy=reservoir ")
             and m.endswith(" (not in the paper)")]
    assert len(set(extra)) == 1
    for method, prefix in (("Naive", "tiny-table/naive"), ("Replay (50)", "tiny-table/replay buffer_size=50"),
                           (extra[0], "tiny-table/replay buffer_size=20")):
        mean, sd = ours(prefix)
        cells = rows[(method, "Class-IL")]
        assert cells[3] == f"{mean:.2f} ± {sd:.2f}" and cells[4] == "2/2"
        assert rows[(method, "Task-IL")][3:5] == ["not run", "0/0"]
        if method.endswith("(not in the paper)"):
            assert cells[2] == cells[5] == "-" and cells[7] == ""
            continue
        assert cells[5] == f"{mean - 0.0:+.2f}"
        assert cells[7] == ("unexplained" if method == "Naive" else "known: a cause the table names")
        assert rows[(method, "Masked")][3] == "pending (metric `no_such_metric` is not in this build)"
        assert re.fullmatch(r"\d+ s", cells[6])
    assert rows[("Naive", "Class-IL")][2] == "0.00 ± 0.00" and rows[("Replay (50)", "Class-IL")][2] == "0.00"
    assert rows[("Never run", "Class-IL")][3:5] == ["not run", "0/0"]
    assert rows[("Never run", "Class-IL")][7] == "known: a cause the table names"
    assert "## Later" in doc and "Pending: the sweep does not run on this build:\n\n- base.train.iterations" in doc
    assert doc.index("## A tiny table") < doc.index("## Later")
    # naive: unexplained, replay 50: its cause named; replay 20 and the not-run row are not compared
    assert ("Of 2 figure(s) compared: 0 within 2 points, 0 beyond but within 2 of the paper's sds, "
            "1 beyond with a cause named, 1 unexplained.") in doc
    targets = table_lines(doc[doc.index("## Targets"):])
    assert targets[("Low target", "Class-IL")][7] == "" and targets[("High target", "Class-IL")][7] == "unexplained"
    assert "Known differences from the paper's setting:\n\n- `known`: a cause the table names" in doc
    assert f"python bench/reproduce.py tiny --data {tmp_path}" in doc

    # again: the finished sweep is reused, not run again; with --no-run a table without one says so
    again = run_reproduce("tiny", *args, "--seeds", "1", "--no-run")
    assert again.returncode == 0 and "not run yet" in again.stderr
    assert "Not run yet (3 runs): `python bench/reproduce.py tiny --data" in out.read_text()
    again = run_reproduce("tiny", *args)
    assert again.returncode == 0 and "reused" in again.stderr
    store = Store(db, serve=False)
    try:
        assert store.sql("SELECT count(*) FROM runs")[0][0] == 6
    finally:
        store.close()


def test_bad_arguments_get_one_line(tmp_path):
    proc = run_reproduce("nope", "--data", str(tmp_path))
    assert proc.returncode == 2 and "'nope' is not a table in" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_reproduce("--data", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "not a directory" in proc.stderr.splitlines()[-1]
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "bad.published.yaml").write_text("title: t\ncauses: {x: not run: y}\n")
    out = tmp_path / "out.md"
    proc = run_reproduce("--data", str(tmp_path), "--tables-dir", str(tables), "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and not out.exists()
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "bad.publi" in lines[0] and "line 2, column 20 is not valid YAML" in lines[0]
    (tables / "bad.published.yaml").write_text("title: t\ncolumns: [{name: A}]\nrows: [{name: r}]\n")
    proc = run_reproduce("--data", str(tmp_path), "--tables-dir", str(tables), "--out", str(out))
    where = tables / "bad.published.yaml"
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"{where}: source: is required", f"{where}: columns[0]: must be a mapping with name and metric",
        f"{where}: rows[0]: must be a mapping with name and match (a mapping)"]
