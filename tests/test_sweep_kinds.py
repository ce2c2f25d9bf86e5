"""The sweep-kind seam: a kind is one class and one registry line; each kind has one name (older rows'
names still load); the check child's small import set."""

import json
import subprocess
import sys

import pytest

from engine.config import ConfigError
from engine.runs.manager import RunManager
from engine.report.content import compare_report
from engine.report.document import Heading, Table, fmt
from engine.sweeps import SWEEP_KINDS, SweepKind
from engine.sweeps.outcome import Outcome
from engine.sweeps.reality import reality_rankings
from engine.sweeps.spec import SweepSpec, check_counted, parse_grid, sweep_seeds
from engine.sweeps.sweep import (launch_sweep, parse_sweep, planned_runs, sweep_outcome, sweep_progress,
                                 wait_sweep)
from store.sweeps import list_sweeps, sweep_runs
from tests.conftest import ROOT

TINY = {"scenario": {"dataset": "digits", "n_tasks": 2}, "model": {"hidden": [32]},
        "train": {"epochs_per_task": 1, "save_weights": False}, "eval": {"every": 5}}


class LearningRates(SweepKind):
    """A kind made here: ``learning_rates: [0.01, 0.05]`` runs the base with each, times the seeds; its
    outcome lists each run's rate and status."""

    name = "learning_rates"
    summary = "learning rates"
    shown_in = ("cli", "page", "report")

    def parse(self, data, base, name, problems):
        spec = SweepSpec(name, self.name, base, sweep_seeds(data, base, problems), prefix=name)
        spec.grid = parse_grid({"train.lr": data["learning_rates"]}, "learning_rates", problems)
        check_counted(spec, problems, "learning_rates")
        return spec

    def outcome(self, store, sweep_id):
        rows = [[run_id, (json.loads(c) if isinstance(c, str) else c)["train"]["lr"], status]
                for run_id, status, c, _ in sweep_runs(store, sweep_id)]
        return Outcome("Learning rates", "each run's rate and how it ended", ["run", "lr", "status"], rows,
                       key="learning_rates")


def test_a_new_kind_is_one_class_and_one_registry_line_and_runs_end_to_end(store, monkeypatch):
    monkeypatch.setitem(SWEEP_KINDS, LearningRates.name, LearningRates())  # the registry line
    spec = parse_sweep({"name": "lrs", "base": TINY, "learning_rates": [0.01, 0.05], "seeds": [0]})
    assert spec.kind == "learning_rates" and planned_runs(spec) == 2
    with pytest.raises(ConfigError) as err:  # its section is checked by its own parse
        parse_sweep({"name": "bad", "base": TINY, "learning_rates": [-1], "seeds": [0]})
    assert err.value.problems == ["learning_rates.train.lr = -1: must be greater than 0"]
    manager = RunManager(store, max_parallel=2, warm_workers=2)
    try:
        sweep_id = launch_sweep(manager, spec)
        assert wait_sweep(manager, sweep_id, timeout=180) == "done"
    finally:
        manager.shutdown()
    progress = sweep_progress(store, sweep_id)
    assert progress["kind"] == "learning_rates" and progress["total"] == progress["ended"] == 2
    assert store.sql("SELECT kind FROM sweeps WHERE id = ?", [sweep_id]) == [("learning_rates",)]
    outcome = sweep_outcome(store, sweep_id, "cli")
    assert [row[1:] for row in outcome.rows] == [[0.01, "finished"], [0.05, "finished"]]
    assert outcome.text().splitlines()[1].split() == ["run", "lr", "status"]
    report = compare_report(store, sweep_id=sweep_id)  # a report shows any kind's outcome
    at = next(i for i, b in enumerate(report.blocks) if isinstance(b, Heading) and b.text == "Learning rates")
    table = report.blocks[at + 2]
    assert isinstance(table, Table) and table.rows == [[fmt(v) for v in row] for row in outcome.rows]


def test_sweeps_stored_with_the_old_kind_names_load_under_the_one_name(store):
    old_search = {"name": "old-search", "base": TINY, "search": {"trials": 3, "space": {"train.lr": {"log_uniform": [0.001, 0.1]}}}}
    old_reality = {"name": "old-rc", "base": TINY, "reality_check": {
        "metric": "acc", "strategies": ["naive", "replay"],
        "tune": {"scenario": {"dataset": "digits", "n_tasks": 2}, "grid": {"train.lr": [0.01, 0.05]}, "seeds": [0]},
        "test": {"scenario": {"dataset": "mnist1d"}, "seeds": [10]}}}
    search_id = store.create_sweep("old-search", "optuna", old_search)  # as rows were written before
    reality_id = store.create_sweep("old-rc", "reality-check", old_reality)
    assert sweep_progress(store, search_id)["kind"] == "search" and sweep_progress(store, search_id)["total"] == 3
    assert sweep_progress(store, reality_id)["kind"] == "reality_check"
    assert sweep_progress(store, reality_id)["total"] == 2 * 1  # no tune runs in this file: the test phase's
    assert list(list_sweeps(store)["kind"]) == ["reality_check", "search"]
    assert [r["strategy"] for r in reality_rankings(store, reality_id)] == ["naive", "replay"]
    assert sweep_outcome(store, reality_id, "page").columns[-1] == "rank moved"


def test_the_sweep_check_child_keeps_its_small_import_set():
    """The Launch page's check child (``python -m engine.sweeps.check``) imports no trainer, no Optuna,
    no run manager, no report and no page: its memory cap is what parsing needs, not the lab's."""
    sweep = "name: s\nbase: {model: {hidden: [32]}}\nsearch: {trials: 2, space: {train.lr: {uniform: [0.01, 0.1]}}}\n"
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.sweeps.check"], input=sweep.encode(),
                          capture_output=True, cwd=ROOT, timeout=120)
    answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert answer["ok"] and answer["kind"] == "search" and answer["runs"] == 2, answer
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "engine.sweeps.sweep" in imported
    for heavy in ("optuna", "lightning", "streamlit", "engine.runs.manager", "engine.training.train", "engine.report", "pages"):
        assert heavy not in imported, heavy
