"""Sweep files: expansion (pure, deterministic), the strategy rule, validation, the CLI's exit 2."""

import subprocess
import sys

import pytest

from engine.config import ConfigError, TrainConfig
from engine.core.inputs import cut_text
from engine.sweeps.spec import labels
from engine.sweeps.sweep import expand, load_sweep, parse_sweep, planned_runs
from engine.strategies import STRATEGIES
from tests.conftest import ROOT

BASE = {"scenario": {"dataset": "digits", "setting": "class", "n_tasks": 2}, "model": {"name": "mlp", "hidden": [32]},
        "strategy": {"name": "naive"}, "train": {"optimizer": "sgd", "lr": 0.05, "epochs_per_task": 1},
        "eval": {"every": 5}}


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_sweep(data)
    return err.value.problems


def test_the_issue_example_expands_to_strategies_times_lrs_times_seeds(tmp_path):
    path = tmp_path / "lr-by-strategy.yaml"
    path.write_text(
        "name: lr-by-strategy\n"
        "base: {scenario: {dataset: digits, setting: class, n_tasks: 5}, model: {name: mlp, hidden: [256, 256]},\n"
        "       strategy: {name: naive}, train: {optimizer: sgd, lr: 0.05, batch_size: 32, epochs_per_task: 5},\n"
        "       eval: {every: 10, subset: null}}\n"
        "grid: {strategy.name: [naive, replay, ewc], train.lr: [0.01, 0.05]}\n"
        "seeds: [0, 1, 2]\n")
    spec = load_sweep(path)
    assert spec.kind == "grid" and planned_runs(spec) == 18
    configs = expand(spec)
    assert [c.name for c in configs[:4]] == [
        "lr-by-strategy/naive lr=0.01 seed=0", "lr-by-strategy/naive lr=0.01 seed=1",
        "lr-by-strategy/naive lr=0.01 seed=2", "lr-by-strategy/naive lr=0.05 seed=0"]
    assert configs[-1].name == "lr-by-strategy/ewc lr=0.05 seed=2"
    assert [(c.strategy["name"], c.train.lr, c.seed) for c in configs] == [
        (s, lr, seed) for s in ("naive", "replay", "ewc") for lr in (0.01, 0.05) for seed in (0, 1, 2)]
    assert all(c.model.hidden == [256, 256] and c.scenario.n_tasks == 5 for c in configs)
    assert [c.model_dump() for c in expand(load_sweep(path))] == [c.model_dump() for c in configs]  # deterministic


def test_strategy_keys_apply_only_to_strategies_that_declare_them_and_duplicates_collapse():
    spec = parse_sweep({"name": "s", "base": {**BASE, "strategy": {"name": "naive", "ewc_lambda": 10.0}},
                        "grid": {"strategy.name": ["naive", "replay", "ewc"], "strategy.buffer_size": [50, 100],
                                 "train.lr": [0.01]}, "seeds": [0]})
    configs = expand(spec)
    by = [(c.strategy["name"], c.strategy.get("buffer_size"), c.strategy.get("ewc_lambda")) for c in configs]
    # naive and ewc ignore buffer_size: one run each, not two; base's ewc_lambda reaches ewc only
    assert by == [("naive", None, None), ("replay", 50, None), ("replay", 100, None), ("ewc", None, 10.0)]
    assert configs[1].name == "s/replay buffer_size=50 lr=0.01 seed=0"
    assert configs[0].name == "s/naive lr=0.01 seed=0"


def test_a_list_of_grids_gives_each_row_its_own_settings_as_a_papers_table(tmp_path):
    # DER's Table 2 has one lr (and alpha, minibatch) per method and buffer: no single product gives that
    path = tmp_path / "rows.yaml"
    path.write_text(
        "name: rows\n"
        f"base: {BASE}\n"
        "grid:\n"
        "  - {strategy.name: [naive], train.lr: [0.03]}\n"
        "  - {strategy.name: [replay], strategy.buffer_size: [200], train.lr: [0.01]}\n"
        "  - {strategy.name: [replay], strategy.buffer_size: [500], train.lr: [0.1], strategy.replay_batch_size: [10, 20]}\n"
        "seeds: [0, 1]\n")
    spec = load_sweep(path)
    assert spec.kind == "grid" and planned_runs(spec) == 8
    rows = [(c.strategy["name"], c.strategy.get("buffer_size"), c.strategy.get("replay_batch_size"), c.train.lr, c.seed)
            for c in expand(spec)]
    assert rows == [("naive", None, None, 0.03, 0), ("naive", None, None, 0.03, 1),
                    ("replay", 200, 32, 0.01, 0), ("replay", 200, 32, 0.01, 1),
                    ("replay", 500, 10, 0.1, 0), ("replay", 500, 10, 0.1, 1),
                    ("replay", 500, 20, 0.1, 0), ("replay", 500, 20, 0.1, 1)]
    assert expand(spec)[4].name == "rows/replay buffer_size=500 lr=0.1 replay_batch_size=10 seed=0"
    assert problems({"base": BASE, "grid": []}) == [
        "grid = []: must be a mapping of dotted keys to lists of values, or a non-empty list of such mappings"]
    assert problems({"base": BASE, "grid": [{"train.lr": [0.1]}, {"train.lr": [-1]}, 3]}) == [
        "grid[2] = 3: must be a non-empty mapping of dotted keys to lists of values, e.g. {{train.lr: [0.01, 0.05]}}",
        "grid.train.lr = -1: must be greater than 0"]


def test_random_sample_is_deterministic_in_range_and_respects_the_strategy_rule():
    data = {"name": "r", "base": BASE, "seeds": [0, 1],
            "random": {"samples": 6, "seed": 3, "space": {
                "train.lr": {"log_uniform": [0.001, 0.1]}, "strategy.buffer_size": {"int": [50, 500]},
                "strategy.name": {"choice": ["replay", "ewc"]}, "model.hidden": {"choice": [[16], [32, 32]]},
                "train.momentum": {"uniform": [0.0, 0.9]}, "strategy.ewc_lambda": {"log_uniform": [1, 10000]}}}}
    configs = expand(parse_sweep(data))
    assert len(configs) == 12 and [c.seed for c in configs] == [0, 1] * 6
    assert [c.model_dump() for c in configs] == [c.model_dump() for c in expand(parse_sweep(data))]
    assert {c.strategy["name"] for c in configs} == {"replay", "ewc"}
    for c in configs:
        assert 0.001 <= c.train.lr <= 0.1 and 0 <= c.train.momentum <= 0.9 and c.model.hidden in ([16], [32, 32])
        if c.strategy["name"] == "replay":
            assert 50 <= c.strategy["buffer_size"] <= 500 and "ewc_lambda" not in c.strategy
        else:
            assert "buffer_size" not in c.strategy and 1 <= c.strategy["ewc_lambda"] <= 10000
    more = expand(parse_sweep({**data, "random": {**data["random"], "samples": 8}}))
    assert [c.model_dump() for c in more[:12]] == [c.model_dump() for c in configs]  # a sample more changes none
    other = expand(parse_sweep({**data, "random": {**data["random"], "seed": 4}}))
    assert [c.train.lr for c in other] != [c.train.lr for c in configs]


def test_no_grid_means_the_base_times_the_seeds_and_labels_disambiguate():
    configs = expand(parse_sweep({"name": "b", "base": {**BASE, "seed": 7}}))
    assert [(c.name, c.seed) for c in configs] == [("b/naive seed=7", 7)]
    assert labels(["train.lr", "scenario.seed", "strategy.mode", "eval.every"]) == {
        "train.lr": "lr", "scenario.seed": "scenario.seed", "strategy.mode": "mode", "eval.every": "every"}


def test_a_search_is_not_expanded_ahead():
    spec = parse_sweep({"name": "s", "base": BASE, "search": {"trials": 3, "objectives": ["acc", "min_acc"],
                                                              "space": {"train.lr": {"log_uniform": [0.01, 0.1]}}}})
    assert spec.kind == "search" and spec.search.directions == ["maximize", "maximize"]
    with pytest.raises(ValueError):
        expand(spec)


def test_bad_sweeps_get_one_line_per_problem_naming_field_value_and_what_is_allowed():
    lines = problems({"name": "bad", "base": BASE, "colour": 1, "seeds": [0, 0],
                      "grid": {"train.lrr": [1], "strategy.buffer_size": [10], "seed": [1, 2],
                               "train.lr": [0.1, -0.5], "scenario.n_tasks": [2, 20], "eval.every": 3}})
    assert lines == [
        "colour: is not a known field (allowed: name, base, grid, random, search, reality_check, seeds)",
        "seeds = [0, 0]: every seed may appear once",
        "grid.eval.every = 3: must be a non-empty list of values, e.g. [0.01, 0.05]",
        f"grid.train.lrr: train has no field lrr (fields: {', '.join(TrainConfig.model_fields)})",
        "grid.strategy.buffer_size: no strategy of this sweep declares buffer_size (naive: none)",
        "grid.seed: cannot be swept (the run seed comes from seeds: [...])",
        "grid.scenario.n_tasks = 20: must be at most 10: digits has 10 classes to share out",
        "grid.train.lr = -0.5: must be greater than 0",
    ]
    assert problems({"name": "b", "base": {**BASE, "train": {"lr": -1}}}) == ["base.train.lr = -1: must be greater than 0"]
    assert problems({"name": "b", "base": BASE, "grid": {"strategy.name": ["replay", "foo"]}}) == [
        "grid.strategy.name = 'foo': must be one of " + ", ".join(STRATEGIES)]
    assert problems({"name": "b", "base": BASE, "grid": {"train.lr": [0.1]}, "random": {"samples": 1}})[0] == \
        "grid, random: give one of grid, random, search, reality_check, not several"


def test_bad_spaces_are_rejected_by_kind_and_by_their_bounds():
    lines = problems({"name": "r", "base": BASE, "random": {"samples": 0, "space": {
        "train.lr": {"log_uniform": [0, 1]}, "train.momentum": {"uniform": [0, 2]}, "x.y": {"normal": [0, 1]},
        "strategy.name": {"choice": ["replay"]}, "strategy.buffer_size": {"int": [0, 5.5]},
        "train.batch_size": {"int": [0, 8]}}}})
    assert lines[0] == "random.samples = 0: must be an integer from 1 to 10000"
    assert lines[1] == "random.space.train.lr = {'log_uniform': [0, 1]}: log_uniform must be [low, high], numbers with 0 < low < high"
    assert lines[2].startswith("random.space.x.y = {'normal': [0, 1]}: must be one of {choice: a non-empty list of values}; "
                               "{uniform: [low, high], numbers with low < high}")
    assert lines[3] == "random.space.strategy.buffer_size = {'int': [0, 5.5]}: int must be [low, high], integers with low <= high"
    lines = problems({"name": "r", "base": BASE, "random": {"samples": 3, "space": {
        "train.momentum": {"uniform": [0, 2]}, "train.batch_size": {"int": [0, 8]}}}})
    assert lines == ["random.space.train.momentum = 2.0: must be less than 1",
                     "random.space.train.batch_size = 0: must be greater than or equal to 1"]
    lines = problems({"name": "s", "base": BASE, "seeds": [0, 1], "search": {
        "trials": 0, "objectives": ["acc", "zzz"], "sampler": "cma", "space": {"train.lr": {"log_uniform": [0.01, 1]}}}})
    assert lines[:3] == ["search.trials = 0: must be an integer from 1 to 10000",
                         "search.objectives = 'zzz': must be a metric key of store.metrics: " + lines[1].split(": ", 2)[2],
                         "search.sampler = 'cma': must be tpe (default), nsga2 or random"]
    assert "seeds = [0, 1]: a search runs each trial once: give one seed" in lines


def test_the_cli_rejects_a_bad_sweep_with_exit_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbase: {scenario: {n_tasks: 2}, train: {lr: -1}}\n"
                   "grid: {strategy.buffer_size: [10], train.momentum: [2]}\nseeds: [0]\n")
    db = tmp_path / "lab.duckdb"
    proc = subprocess.run([sys.executable, "-m", "engine", "sweep", str(bad), "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{cut_text(bad)}: the sweep has 3 problem(s):",  # a long temporary path is cut from its start
        "  grid.strategy.buffer_size: no strategy of this sweep declares buffer_size (naive: none)",
        "  base.train.lr = -1: must be greater than 0",
        "  grid.train.momentum = 2: must be less than 1",
    ]
    assert not db.exists() and list(tmp_path.iterdir()) == [bad]


def test_the_cli_in_process_reports_yaml_errors_and_unreadable_files(tmp_path, capsys):
    from engine.cli.main import main

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ngrid: {train.lr: [0.1\n")
    db = tmp_path / "lab.duckdb"
    assert main(["sweep", str(broken), "--db", str(db)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.yaml"), "--db", str(db)]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert not db.exists()


def test_a_sweep_over_the_domain_kinds_includes_split_and_names_a_split_that_cannot_be():
    base = {**BASE, "scenario": {"dataset": "digits", "setting": "domain", "n_tasks": 5}}
    configs = expand(parse_sweep({"name": "d", "base": base, "grid": {"scenario.domain": ["permuted", "split"]}}))
    assert [c.scenario.domain for c in configs] == ["permuted", "split"]
    assert problems({"name": "d", "base": {**base, "scenario": {**base["scenario"], "domain": "split"}},
                     "grid": {"scenario.n_tasks": [2, 3]}}) == [
        "grid.scenario.n_tasks = 3: scenario.domain = 'split' needs as many classes in every task: the 10 classes "
        "of digits do not divide by 3"]


def test_a_sweep_over_iterations_per_task_checks_each_value():
    configs = expand(parse_sweep({"name": "it", "base": BASE, "grid": {"train.iterations_per_task": [5, 2000]}}))
    assert [c.train.iterations_per_task for c in configs] == [5, 2000]
    assert problems({"name": "it", "base": BASE, "grid": {"train.iterations_per_task": [5, 0]}}) == [
        "grid.train.iterations_per_task = 0: must be greater than or equal to 1"]
