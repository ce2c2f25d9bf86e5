"""Sweeps through a real RunManager (worker processes, a DuckDB file, real training on tiny configs):
a grid as one group, group cancel, an Optuna search, a two-phase reality check, the CLI."""

import re
import subprocess
import sys
import time

import pytest

from engine.runs.manager import RunManager
from engine.sweeps.reality import reality_rankings
from engine.sweeps.results import config_results
from engine.sweeps.search import best_trials, study_path
from engine.sweeps.sweep import advance, cancel_sweep, launch_sweep, parse_sweep, sweep_progress, wait_sweep
from store import Store
from tests.conftest import ROOT

TINY = {"scenario": {"dataset": "digits", "n_tasks": 2}, "model": {"hidden": [32]},
        "train": {"epochs_per_task": 1, "save_weights": False}, "eval": {"every": 5}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("sweeps") / "lab.duckdb")
    manager = RunManager(store, max_parallel=2, warm_workers=2)
    yield manager
    manager.shutdown()
    store.close()


def test_a_grid_sweep_runs_as_one_group(lab):
    spec = parse_sweep({"name": "g", "base": TINY, "seeds": [0, 1],
                        "grid": {"strategy.name": ["naive", "replay"], "strategy.buffer_size": [40]}})
    sweep_id = launch_sweep(lab, spec, owner="tester")
    store = lab.store
    assert store.sql("SELECT name, kind, owner FROM sweeps WHERE id = ?", [sweep_id]) == [("g", "grid", "tester")]
    seen = []
    assert wait_sweep(lab, sweep_id, timeout=120, on_progress=seen.append) == "done"
    assert seen[-1]["counts"]["finished"] == 4 and seen[-1]["done_fraction"] == 1.0
    rows = store.sql("SELECT name, status, sweep_phase FROM runs WHERE sweep_id = ? ORDER BY id", [sweep_id])
    assert rows == [("g/naive seed=0", "finished", None), ("g/naive seed=1", "finished", None),
                    ("g/replay buffer_size=40 seed=0", "finished", None),
                    ("g/replay buffer_size=40 seed=1", "finished", None)]
    groups = config_results(store, sweep_id, "acc")
    assert [(g["strategy"], g["n"], g["seeds"]) for g in groups] == [("naive", 2, [0, 1]), ("replay", 2, [0, 1])]
    assert all(0.0 <= g["mean"] <= 1.0 for g in groups)


def test_an_optuna_search_runs_its_trials_as_runs_with_the_study_beside_the_db(lab):
    spec = parse_sweep({"name": "opt", "base": TINY, "search": {
        "trials": 3, "objectives": ["acc", "min_acc"], "sampler": "nsga2", "population_size": 2, "seed": 1,
        "space": {"train.lr": {"log_uniform": [0.01, 0.1]}, "strategy.name": {"choice": ["naive", "replay"]},
                  "strategy.buffer_size": {"int": [20, 60]}}}})
    sweep_id = launch_sweep(lab, spec)
    assert wait_sweep(lab, sweep_id, timeout=120) == "done"
    store = lab.store
    runs = store.sql("SELECT id, name, status, config FROM runs WHERE sweep_id = ? ORDER BY id", [sweep_id])
    assert len(runs) == 3 and all(r[2] == "finished" for r in runs)
    assert all(re.fullmatch(r"opt/(naive|replay) lr=[\d.]+( buffer_size=\d+)? seed=0 trial=\d", r[1]) for r in runs)
    assert store.sql("SELECT kind FROM sweeps WHERE id = ?", [sweep_id]) == [("search",)]
    assert study_path(store.path).exists() and study_path(store.path).parent == store.path.parent
    import optuna

    study = optuna.load_study(study_name=f"sweep-{sweep_id}", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_path(store.path)))))
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert sorted(t.user_attrs["run_id"] for t in trials) == [r[0] for r in runs]
    for t in trials:  # buffer_size only where the strategy has it
        assert ("strategy.buffer_size" in t.params) == (t.params["strategy.name"] == "replay")
        assert len(t.values) == 2
    assert best_trials(store, sweep_id)
    assert advance(lab, sweep_id) == "done"
    assert sweep_progress(store, sweep_id)["total"] == 3


def test_a_tiny_reality_check_tunes_picks_and_tests(lab):
    spec = parse_sweep({"name": "rc", "base": TINY, "reality_check": {
        "metric": "acc", "strategies": ["naive", "replay"],
        "tune": {"scenario": {"dataset": "digits"}, "grid": {"train.lr": [0.005, 0.1]}, "seeds": [0]},
        "test": {"scenario": {"dataset": "mnist1d"}, "seeds": [5]}}})
    sweep_id = launch_sweep(lab, spec)
    assert wait_sweep(lab, sweep_id, timeout=120) == "done"
    runs = lab.store.sql("SELECT sweep_phase, name, status FROM runs WHERE sweep_id = ? ORDER BY id", [sweep_id])
    assert [r[0] for r in runs] == ["tune"] * 4 + ["test"] * 2 and all(r[2] == "finished" for r in runs)
    rows = reality_rankings(lab.store, sweep_id)
    by = {r["strategy"]: r for r in rows}
    for s in ("naive", "replay"):
        tuned = [g for g in config_results(lab.store, sweep_id, "acc", "tune") if g["strategy"] == s]
        winner = max(tuned, key=lambda g: g["mean"])
        assert by[s]["hparams"]["train.lr"] == winner["config"]["train"]["lr"]  # the best tune config was tested
        assert f"rc/test/{s} lr={winner['config']['train']['lr']:g}" in {r[1].rsplit(' seed', 1)[0] for r in runs}
        assert by[s]["tune_rank"] in (1, 2) and by[s]["test_rank"] in (1, 2) and by[s]["test_n"] == 1
    assert sorted(r["tune_rank"] for r in rows) in ([1, 2], [1, 1])


def test_a_sweep_is_cancelled_as_a_group(lab):
    slow = {**TINY, "train": {**TINY["train"], "epochs_per_task": 30}}
    spec = parse_sweep({"name": "c", "base": slow, "seeds": [0, 1, 2, 3, 4]})
    sweep_id = launch_sweep(lab, spec)
    store = lab.store
    first = store.sql("SELECT min(id) FROM runs WHERE sweep_id = ?", [sweep_id])[0][0]
    for _ in range(200):
        if store.sql("SELECT status FROM runs WHERE id = ?", [first])[0][0] == "running":
            break
        lab.wait(first, timeout=0.05)
    assert cancel_sweep(lab, sweep_id) == 5
    assert wait_sweep(lab, sweep_id, timeout=60) == "cancelled"
    progress = sweep_progress(store, sweep_id)
    assert progress["counts"]["cancelled"] == 5 and progress["active"] == 0 and progress["done_fraction"] == 1.0


def test_a_cancelled_search_asks_no_more_trials_and_stays_cancelled(lab):
    slow = {**TINY, "train": {**TINY["train"], "epochs_per_task": 30}}
    spec = parse_sweep({"name": "oc", "base": slow, "search": {
        "trials": 6, "objectives": "acc", "space": {"train.lr": {"uniform": [0.01, 0.1]}}}})
    sweep_id = launch_sweep(lab, spec)
    store = lab.store
    for _ in range(200):
        if store.sql("SELECT 1 FROM runs WHERE sweep_id = ? AND status = 'running'", [sweep_id]):
            break
        time.sleep(0.05)
    cancel_sweep(lab, sweep_id)
    assert wait_sweep(lab, sweep_id, timeout=60) == "cancelled"
    statuses = [r[0] for r in store.sql("SELECT status FROM runs WHERE sweep_id = ?", [sweep_id])]
    assert 1 <= len(statuses) <= 2 and set(statuses) == {"cancelled"}
    assert advance(lab, sweep_id) == "cancelled"  # not resumed


def cli_sweep(tmp_path, text: str, parallel: int, timeout: float) -> tuple[list[str], object]:
    """``python -m engine sweep`` on a file of ``text``: its stdout lines (it exited 0) and the database."""
    path, db = tmp_path / "sweep.yaml", tmp_path / "lab.duckdb"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "engine", "sweep", str(path), "--db", str(db), "--parallel",
                           str(parallel)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines(), db


def test_the_cli_queues_a_sweep_prints_its_id_and_progress_and_waits(tmp_path):
    lines, db = cli_sweep(tmp_path, "name: cli\nbase: {scenario: {n_tasks: 2}, model: {hidden: [32]}, train: "
                                    "{epochs_per_task: 1}, eval: {every: 5}}\ngrid: {train.lr: [0.01, 0.05]}\nseeds: [0]\n",
                          parallel=1, timeout=120)
    assert lines[0] == f"sweep 1 queued: cli (grid, 2 runs, up to 1 at once) in {db}"
    assert "sweep 1 cli: 2/2 ended (finished 2), 0 running, 0 queued, 100.0%" in lines
    assert any(line.strip().startswith("mean acc") for line in lines)


def test_the_cli_prints_a_reality_checks_outcome_as_the_report_tabulates_it(tmp_path):
    """The outcome is one table: the CLI's lines are the report's columns and rows (the CLI with 4
    decimals, the report with 3)."""
    lines, db = cli_sweep(tmp_path, "name: rc-cli\nbase: {model: {hidden: [32]}, train: {epochs_per_task: 1}, eval: "
                                    "{every: 5}}\nreality_check:\n  metric: acc\n  strategies: [naive, replay]\n"
                                    "  tune: {scenario: {dataset: digits, n_tasks: 2}, grid: {train.lr: [0.05]}, seeds: [0]}\n"
                                    "  test: {scenario: {dataset: mnist1d}, seeds: [10]}\n", parallel=2, timeout=300)
    assert lines[0] == f"sweep 1 queued: rc-cli (reality_check, 4 runs, up to 2 at once) in {db}"
    from engine.report.content import compare_report
    from engine.report.document import Heading, Table

    with Store(db) as store:
        report = compare_report(store, sweep_id=1)
    at = next(i for i, b in enumerate(report.blocks) if isinstance(b, Heading) and b.text == "Reality check")
    table = report.blocks[at + 2]
    assert isinstance(table, Table) and table.columns[-1] == "rank moved" and len(table.rows) == 2
    start = lines.index(next(line for line in lines if line.startswith("Reality check: Each strategy tuned")))
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1:start + 4]]
    assert cells[0] == table.columns
    for printed, row in zip(cells[1:], table.rows):
        printed = ["" if c == "-" else c for c in printed]  # an empty cell
        assert len(printed) == len(row) and [printed[i] for i in (0, 1, 4, 7, 8)] == [row[i] for i in (0, 1, 4, 7, 8)]
        assert all(float(printed[i]) == pytest.approx(float(row[i]), abs=6e-4) for i in (2, 3, 5, 6)
                   if row[i] != "n/a")  # the means and sds
