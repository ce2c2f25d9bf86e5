"""The reality check: its file, picking each strategy's best config, the phase switch, both rankings."""

import pytest

from engine.config import ConfigError
from engine.runs.manager import RunManager
from engine.sweeps.reality import advance_reality_check, pick_best, rank_strategies, reality_rankings, select_best
from engine.sweeps.sweep import expand, parse_sweep, planned_runs, sweep_progress
from engine.strategies import STRATEGIES

BASE = {"model": {"hidden": [32]}, "train": {"epochs_per_task": 1}, "eval": {"every": 5}}
SPEC = {"name": "rc", "base": BASE, "reality_check": {
    "metric": "acc", "strategies": ["naive", "replay", "ewc"],
    "tune": {"scenario": {"dataset": "digits", "n_tasks": 2},
             "grid": {"train.lr": [0.01, 0.05], "strategy.buffer_size": [50, 100]}, "seeds": [0, 1]},
    "test": {"scenario": {"dataset": "mnist1d"}, "seeds": [10, 11]}}}


@pytest.fixture
def held(store):
    """A real run manager whose queue is held: the runs a reality check queues stay queued, and the
    test finishes them by hand with the accuracies it chose."""
    manager = RunManager(store, max_parallel=1, warm_workers=0, paused=True)
    yield manager
    manager.shutdown()


def finish(store, run_id, final_accs, status="finished"):
    """Hand-made rows of a 2-task run: boundary evaluations at step 0, 10 and 20; ACC = mean(final_accs)."""
    store.write("INSERT INTO task_boundaries VALUES (?, 1, 0, 10), (?, 2, 10, 20)", [run_id, run_id])
    rows = [(0, 1, 0.1), (0, 2, 0.1), (10, 1, 0.9), (10, 2, 0.1), (20, 1, final_accs[0]), (20, 2, final_accs[1])]
    store.add_metrics({"run_id": [run_id] * 6, "step": [r[0] for r in rows], "task": [r[1] for r in rows],
                       "metric": ["boundary_acc"] * 6, "value": [r[2] for r in rows]})
    store.flush()
    store.set_status(run_id, status)


def test_the_file_expands_each_strategy_with_its_own_keys():
    spec = parse_sweep(SPEC)
    assert spec.kind == "reality_check" and spec.reality.test_scenario == {"dataset": "mnist1d", "n_tasks": 2}
    names = [c.name for c in expand(spec)]
    assert len(names) == 2 * 2 + 4 * 2 + 2 * 2 == planned_runs(spec) - 3 * 2
    assert names[0] == "rc/tune/naive lr=0.01 seed=0"
    assert "rc/tune/replay lr=0.05 buffer_size=100 seed=1" in names
    assert all(c.scenario.dataset == "digits" for c in expand(spec))


def test_bad_reality_checks_are_rejected_line_by_line():
    bad = {**SPEC, "reality_check": {**SPEC["reality_check"], "metric": "nope",
                                     "strategies": ["naive", "replay", "foo"],
                                     "tune": {**SPEC["reality_check"]["tune"],
                                              "grid": {"strategy.name": ["naive"], "strategy.alpha": [1.0],
                                                       "strategy.ewc_lambda": [-1]}},
                                     "test": {"scenario": {"setting": "task"}, "seeds": [1]}}}
    with pytest.raises(ConfigError) as err:
        parse_sweep(bad)
    lines = err.value.problems
    assert lines[0].startswith("reality_check.metric = 'nope': must be a metric key with a direction: acc, task_il_acc, bwt")
    assert lines[1:] == [
        "reality_check.strategies = 'foo': must be one of " + ", ".join(STRATEGIES),
        "reality_check.test.seeds = [1]: must be new seeds, none of the tune seeds (reused: [1])",
        "reality_check.test.scenario.setting = 'task': must be the tune phase's setting ('class'): the check moves "
        "to other data, not another setting",
        "reality_check.tune.grid.strategy.name: the strategies come from reality_check.strategies",
        "reality_check.tune.grid.strategy.alpha: no strategy of this sweep declares alpha (naive: none; "
        "replay: " + ", ".join(STRATEGIES["replay"].hparams) + ")",
        "reality_check.tune.grid.strategy.ewc_lambda: no strategy of this sweep declares ewc_lambda (naive: none; "
        "replay: " + ", ".join(STRATEGIES["replay"].hparams) + ")",
    ]
    same = {**SPEC, "reality_check": {**SPEC["reality_check"], "test": {"scenario": {"dataset": "digits"},
                                                                         "seeds": [5]}}}
    with pytest.raises(ConfigError) as err:
        parse_sweep(same)
    assert err.value.problems == ["reality_check.test.scenario = {'dataset': 'digits'}: must differ from the tune "
                                  "scenario (other data: another dataset, split seed or class order)"]


def test_pick_best_takes_the_best_mean_per_strategy_with_ties_to_more_seeds_then_lower_std():
    groups = [
        {"strategy": "a", "mean": 0.5, "n": 2, "std": 0.1, "run_ids": [1, 2]},
        {"strategy": "a", "mean": 0.7, "n": 1, "std": None, "run_ids": [3]},
        {"strategy": "a", "mean": 0.7, "n": 2, "std": 0.2, "run_ids": [4, 5]},
        {"strategy": "a", "mean": 0.7, "n": 2, "std": 0.05, "run_ids": [6, 7]},
        {"strategy": "b", "mean": None, "n": 0, "std": None, "run_ids": [8]},
        {"strategy": "c", "mean": 0.2, "n": 2, "std": 0.0, "run_ids": [9]},
        {"strategy": "c", "mean": 0.1, "n": 2, "std": 0.0, "run_ids": [10]},
    ]
    best = pick_best(groups)
    assert best["a"]["run_ids"] == [6, 7] and "b" not in best and best["c"]["run_ids"] == [9]
    assert pick_best(groups, higher_is_better=False)["c"]["run_ids"] == [10]


def test_selection_switch_and_rankings_on_hand_made_store_rows(store, held):
    spec = parse_sweep(SPEC)
    manager = held
    from engine.sweeps.reality import launch_reality_check

    sweep_id = launch_reality_check(manager, spec, owner="me")
    tune = store.sql("SELECT id, name FROM runs WHERE sweep_id = ? AND sweep_phase = 'tune' ORDER BY id", [sweep_id])
    assert len(tune) == 16
    assert advance_reality_check(manager, sweep_id) == "tuning"
    # ACC by hand: naive best at lr 0.05; replay best at lr 0.01 buffer 100 (a better mean over the seeds than
    # lr 0.05 buffer 50, which has one lucky seed); ewc's runs all fail
    acc = {("naive", "lr=0.01"): [(0.2, 0.2), (0.2, 0.4)], ("naive", "lr=0.05"): [(0.4, 0.4), (0.4, 0.6)],
           ("replay", "lr=0.01 buffer_size=50"): [(0.5, 0.5), (0.5, 0.5)],
           ("replay", "lr=0.01 buffer_size=100"): [(0.8, 0.8), (0.7, 0.7)],
           ("replay", "lr=0.05 buffer_size=50"): [(1.0, 1.0), (0.3, 0.3)],
           ("replay", "lr=0.05 buffer_size=100"): [(0.6, 0.6), (0.6, 0.6)]}
    for run_id, name in tune:
        strategy, rest = name.split("/")[2].split(" ", 1)
        hp, seed = rest.rsplit(" seed=", 1)
        if strategy == "ewc":
            store.set_status(run_id, "failed", error="by hand")
        else:
            finish(store, run_id, acc[(strategy, hp)][int(seed)])
        if run_id == tune[-1][0] - 1:
            assert advance_reality_check(manager, sweep_id) == "tuning"  # one tune run still queued
    best = select_best(store, sweep_id, "acc")
    assert set(best) == {"naive", "replay"}
    assert best["naive"]["hparams"] == {"train.lr": 0.05} and best["naive"]["mean"] == pytest.approx(0.45)
    assert best["replay"]["hparams"] == {"strategy.buffer_size": 100, "strategy.replay_batch_size": 32,
                                         "strategy.policy": "reservoir", "strategy.memory_per_class": 100,
                                         "strategy.weighting": "joined", "strategy.new_weight": 0.5, "train.lr": 0.01}
    assert best["replay"]["mean"] == pytest.approx(0.75) and best["replay"]["std"] == pytest.approx(0.0707, abs=1e-3)

    assert advance_reality_check(manager, sweep_id) == "testing"
    assert advance_reality_check(manager, sweep_id) == "testing"  # queued once, not twice
    test = store.sql("SELECT id, name, config->>'$.scenario.dataset', CAST(config->>'$.seed' AS INT) FROM runs "
                     "WHERE sweep_id = ? AND sweep_phase = 'test' ORDER BY id", [sweep_id])
    assert [(t[1], t[2], t[3]) for t in test] == [
        ("rc/test/naive lr=0.05 seed=10", "mnist1d", 10), ("rc/test/naive lr=0.05 seed=11", "mnist1d", 11),
        ("rc/test/replay lr=0.01 buffer_size=100 seed=10", "mnist1d", 10),
        ("rc/test/replay lr=0.01 buffer_size=100 seed=11", "mnist1d", 11)]
    progress = sweep_progress(store, sweep_id)
    assert progress["total"] == 16 + 6 and progress["phases"]["test"]["queued"] == 4
    for (run_id, *_), accs in zip(test, [(0.6, 0.6), (0.6, 0.8), (0.3, 0.3), (0.5, 0.5)]):
        finish(store, run_id, accs)
    assert advance_reality_check(manager, sweep_id) == "done"
    rows = reality_rankings(store, sweep_id)
    assert [(r["strategy"], r["tune_rank"], r["test_rank"], r["rank_differs"], r["rank_shift"]) for r in rows] == [
        ("replay", 1, 2, True, 1), ("naive", 2, 1, True, -1), ("ewc", None, None, False, None)]
    assert rows[1]["test_mean"] == pytest.approx(0.65) and rows[1]["test_n"] == 2
    assert rows[0]["test_mean"] == pytest.approx(0.4) and rows[0]["hparams"]["strategy.buffer_size"] == 100
    assert rows[2]["hparams"] is None and rows[2]["tune_n"] == 0


def test_a_cancelled_tune_phase_never_starts_the_test_phase(store, held):
    manager = held
    from engine.sweeps.reality import launch_reality_check

    sweep_id = launch_reality_check(manager, parse_sweep(SPEC))
    ids = [r[0] for r in store.sql("SELECT id FROM runs WHERE sweep_id = ? ORDER BY id", [sweep_id])]
    for run_id in ids[:-1]:
        finish(store, run_id, (0.5, 0.5))
    store.set_status(ids[-1], "cancelled")
    assert advance_reality_check(manager, sweep_id) == "cancelled"
    assert not store.sql("SELECT 1 FROM runs WHERE sweep_phase = 'test'")


def test_rank_strategies_shares_ranks_on_equal_means_and_flips_for_lower_is_better():
    tune = [{"strategy": "a", "mean": 0.1, "n": 1, "std": None, "run_ids": [1], "hparams": {}},
            {"strategy": "b", "mean": 0.1, "n": 1, "std": None, "run_ids": [2], "hparams": {}},
            {"strategy": "c", "mean": 0.3, "n": 1, "std": None, "run_ids": [3], "hparams": {}}]
    rows = rank_strategies(tune, [], ["a", "b", "c"], higher_is_better=False)
    assert [(r["strategy"], r["tune_rank"], r["test_rank"]) for r in rows] == [("a", 1, None), ("b", 1, None),
                                                                                ("c", 3, None)]
