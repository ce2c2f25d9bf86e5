"""Pareto dominance (worked examples), the frontier of real runs and of configs averaged over seeds,
the frontier CLI and the Pareto chart's spec."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from engine.runs.manager import run_in_process
from engine.charts.pareto import pareto_chart
from store import Store
from store import pareto
from store.metrics.summary import summaries
from store.pareto import frontier_table, pareto_analysis, pareto_front, resolve_sweep
from tests.conftest import ROOT, small_config


# ---- dominance, worked by hand -------------------------------------------------------------------

def test_a_point_is_dominated_only_by_one_at_least_as_good_on_both_and_better_on_one():
    #            0        1        2        3        4        5
    points = [(1, 1), (1, 1), (0, 2), (2, 0), (0.5, 0.5), (1, 0.5)]
    mask, why = pareto_analysis(points)
    # 0 and 1 are equal: neither dominates the other, both kept (duplicates stay on the front)
    # 2 and 3 are the extremes; 4 is below 0 on both; 5 ties 0 on x and is lower on y: dominated
    assert mask.tolist() == [True, True, True, True, False, False]
    assert why[:4] == [None] * 4
    assert why[4] == "dominated by point 0" and why[5] == "dominated by point 0"


def test_ties_on_one_axis_are_broken_by_the_other():
    # same y, better x dominates; same x, better y dominates; equal on both: both kept
    assert pareto_front([(1, 5), (2, 5)]).tolist() == [False, True]
    assert pareto_front([(3, 1), (3, 2)]).tolist() == [False, True]
    assert pareto_front([(3, 2), (3, 2), (3, 1)]).tolist() == [True, True, False]
    # a staircase: every step is non-dominated
    assert pareto_front([(1, 4), (2, 3), (3, 2), (4, 1)]).all()


def test_a_single_point_is_its_own_front_and_no_points_give_an_empty_mask():
    assert pareto_front([(0.3, 0.7)]).tolist() == [True]
    assert pareto_front([]).tolist() == []
    assert pareto_front(np.empty((0, 2))).tolist() == []


def test_missing_and_infinite_values_are_excluded_with_a_reason_and_dominate_nothing():
    points = [(None, 1.0), (0.5, float("nan")), (float("inf"), 0.0), (0.2, 0.2)]
    mask, why = pareto_analysis(points)
    assert mask.tolist() == [False, False, False, True]   # (0.2, 0.2) is not beaten by an excluded point
    assert why[0] == "excluded: x is missing (None or NaN)"
    assert why[1] == "excluded: y is missing (None or NaN)"
    assert why[2].startswith("excluded: x is not finite")
    assert why[3] is None


def test_lower_is_better_axes_flip_the_direction():
    points = [(0.9, 0.1), (0.9, 0.3), (0.8, 0.1)]     # x higher is better, y (say forgetting) lower
    assert pareto_front(points, maximize=(True, False)).tolist() == [True, False, False]
    assert pareto_front(points, maximize=(False, False)).tolist() == [False, False, True]


def test_matches_brute_force_dominance_on_random_points_with_many_ties():
    rng = np.random.default_rng(0)
    P = rng.integers(0, 6, size=(300, 2)).astype(float)   # a coarse grid: many ties and duplicates
    P[rng.random(300) < 0.05, 1] = np.nan
    for maximize in ((True, True), (True, False), (False, True)):
        Q = P * np.where(maximize, 1, -1)
        expected = [bool(np.isfinite(p).all()) and not any(
            np.isfinite(q).all() and (q >= p).all() and (q > p).any() for q in Q) for p in Q]
        assert pareto_front(P, maximize).tolist() == expected


# ---- the frontier of real runs -------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Four small real runs: naive, replay (two seeds) and EWC, finished, in one store."""
    path = tmp_path_factory.mktemp("pareto") / "lab.duckdb"
    store = Store(path)
    every = {"weights": "every"}  # the weights after each task: trade-off curves are drawn from them
    ids = [run_in_process(store, small_config("naive", train=every)),
           run_in_process(store, small_config("replay", strategy={"name": "replay", "buffer_size": 50}, train=every)),
           run_in_process(store, small_config("replay", seed=1, strategy={"name": "replay", "buffer_size": 50},
                                              train=every)),
           run_in_process(store, small_config("ewc", strategy={"name": "ewc", "ewc_lambda": 1000.0}, train=every))]
    yield store, ids
    store.close()


def test_frontier_of_real_runs_uses_the_summaries_and_marks_the_non_dominated(trained):
    store, ids = trained
    table = frontier_table(store)                  # learning_accuracy (plasticity) x min_acc (stability)
    assert table["id"].tolist() == ids
    assert table.attrs["x"] == "learning_accuracy" and table.attrs["y"] == "min_acc"
    assert table.attrs["excluded"] == [] and table.attrs["n_selected"] == 4
    by_id = {s["run_id"]: s for s in summaries(store, ids)}
    for row in table.to_dict("records"):
        assert row["learning_accuracy"] == by_id[row["id"]]["learning_accuracy"]
        assert row["min_acc"] == by_id[row["id"]]["min_acc"]
    assert table["strategy"].tolist() == ["naive", "replay", "replay", "ewc"]
    assert table.loc[1, "hparams"] == "buffer_size=50, replay_batch_size=32, policy=reservoir, memory_per_class=100, weighting=joined, new_weight=0.5"
    assert table.loc[1, "hparams_dict"] == {"buffer_size": 50, "replay_batch_size": 32, "policy": "reservoir",
                                            "memory_per_class": 100, "weighting": "joined", "new_weight": 0.5}
    assert table.loc[0, "hparams"] == "-"          # naive: no hyperparameters, nothing else differs
    expected = pareto_front(table[["learning_accuracy", "min_acc"]].to_numpy())
    assert table["on_front"].tolist() == expected.tolist()
    # replay keeps the old task: its best run is on the frontier; every dominated run names one that is
    replay = table[table["strategy"] == "replay"]
    assert replay["on_front"].any()
    on = dict(zip(table["id"], table["on_front"]))
    for rid, dom in zip(table["id"], table["dominated_by"]):
        assert (dom is None) == on[rid]
        if dom is not None:
            a, b = table.set_index("id").loc[dom], table.set_index("id").loc[rid]
            assert a["learning_accuracy"] >= b["learning_accuracy"] and a["min_acc"] >= b["min_acc"]


def test_derived_stability_from_forgetting_and_lower_is_better_axes(trained):
    store, ids = trained
    table = frontier_table(store, x="acc", y="stability_from_forgetting")
    forgetting = {s["run_id"]: s["forgetting"] for s in summaries(store, ids)}
    for rid, v in zip(table["id"], table["stability_from_forgetting"]):
        assert v == 1 - forgetting[rid]
    low = frontier_table(store, x="acc", y="forgetting")   # forgetting: lower is better
    assert low.attrs["maximize"] == (True, False)
    assert low["on_front"].tolist() == table["on_front"].tolist()   # the same order, flipped twice
    with pytest.raises(pareto.UnknownMetric, match="unknown metric 'nope'; allowed: acc, task_il_acc, bwt"):
        frontier_table(store, x="nope")


def test_selection_by_ids_and_by_sweep_name(trained):
    store, ids = trained
    assert frontier_table(store, run_ids=ids[:2])["id"].tolist() == ids[:2]
    sweep = store.create_sweep("pareto-sweep", "grid", {"grid": {}})
    store.write("UPDATE runs SET sweep_id = ? WHERE id IN (?, ?)", [sweep, ids[1], ids[3]])
    assert resolve_sweep(store, "pareto-sweep") == sweep == resolve_sweep(store, str(sweep))
    assert frontier_table(store, sweep_id=sweep)["id"].tolist() == [ids[1], ids[3]]
    with pytest.raises(LookupError, match="no sweep named 'other'; sweeps: pareto-sweep"):
        resolve_sweep(store, "other")
    store.write("UPDATE runs SET sweep_id = NULL")


def _copy_db(store, db):
    """A copy of the store's file that a CLI process can open while the test holds the original."""
    store.copy_to(db)


def test_frontier_cli_json_and_text(trained, tmp_path):
    store, ids = trained
    expected = frontier_table(store)
    front = expected.loc[expected["on_front"], "id"].tolist()
    db = tmp_path / "copy.duckdb"
    _copy_db(store, db)
    proc = subprocess.run([sys.executable, "-m", "engine", "frontier", "--db", str(db), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["x"], data["y"], data["by"]) == ("learning_accuracy", "min_acc", "run")
    assert sorted(r["id"] for r in data["front"]) == sorted(front)
    for r in data["front"]:
        row = expected.set_index("id").loc[r["id"]]
        assert r["learning_accuracy"] == row["learning_accuracy"] and r["min_acc"] == row["min_acc"]
        assert r["strategy"] == row["strategy"] and r["hparams"] == row["hparams"]
    bad = subprocess.run([sys.executable, "-m", "engine", "frontier", "--y", "stabilty", "--db", str(db)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "unknown metric 'stabilty'" in bad.stderr and "min_acc" in bad.stderr


def test_frontier_cli_in_process_by_config_and_unknown_sweep(trained, tmp_path, capsys):
    from engine.cli.main import main

    store, ids = trained
    db = tmp_path / "copy.duckdb"
    _copy_db(store, db)
    assert main(["frontier", "--by", "config", "--db", str(db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_points"] == 3                           # the two replay seeds are one config
    configs = frontier_table(store, by="config")
    assert configs.set_index("id").loc[ids[1], "ids"] == [ids[1], ids[2]]
    assert sorted(r["id"] for r in data["front"]) == sorted(configs.loc[configs["on_front"], "id"])
    assert all(isinstance(r["ids"], list) and r["n"] == len(r["ids"]) for r in data["front"])
    assert main(["frontier", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "on the frontier" in text and "learning_accuracy" in text
    assert main(["frontier", "--sweep", "nope", "--db", str(db)]) == 2
    assert "no sweep named 'nope'" in capsys.readouterr().err


# ---- configs averaged over seeds (hand-made rows) ------------------------------------------------

def _hand_run(store, config, R, status="finished"):
    """A finished 2-task run with only its accuracy matrix R (rows 0..2) as boundary_acc rows."""
    rid = store.create_run(config, name=config.get("name", "hand"), status=status)
    ends = {0: 0, 1: 10, 2: 20}
    rows = {"run_id": [], "step": [], "task": [], "metric": [], "value": []}
    for i, row in enumerate(R):
        for j, v in enumerate(row):
            if v is not None:
                rows["run_id"].append(rid); rows["step"].append(ends[i]); rows["task"].append(j + 1)
                rows["metric"].append("boundary_acc"); rows["value"].append(v)
    store.add_metrics(rows)
    store.start_task(rid, 1, 0); store.end_task(rid, 1, 10)
    store.start_task(rid, 2, 10); store.end_task(rid, 2, 20)
    store.flush()
    return rid


def _cfg(strategy, seed, lr=0.05):
    return {"name": f"{strategy}-{seed}", "seed": seed, "scenario": {"dataset": "digits", "setting": "class", "n_tasks": 2},
            "strategy": strategy if isinstance(strategy, dict) else {"name": strategy},
            "train": {"lr": lr}}


def test_by_config_averages_over_seeds_with_sample_std_and_counts_exclusions(store):
    # learning accuracy LA = (R11 + R22) / 2; forgetting F = R11 - R21; stability_from_forgetting = 1 - F
    a = [_hand_run(store, _cfg("naive", s), [[0.1, 0.1], [0.9, 0.0], [r21, 0.8]])
         for s, r21 in ((0, 0.3), (1, 0.5), (2, 0.4))]                       # LA 0.85 each; 1-F = 0.4, 0.6, 0.5
    b = _hand_run(store, _cfg("naive", 0, lr=0.01), [[0.1, 0.1], [0.7, 0.0], [0.7, 0.5]])  # LA 0.6, 1-F = 1.0
    c = _hand_run(store, _cfg({"name": "replay", "buffer_size": 10}, 0), [[0.1, 0.1], [0.9, 0.0], [0.1, 0.9]])
    gone = _hand_run(store, _cfg("naive", 3), [[0.1, 0.1], [None, None], [0.5, 0.8]])     # no R11: excluded
    running = _hand_run(store, _cfg("naive", 4), [[0.1, 0.1], [0.9, 0.0], [0.1, 0.9]], status="running")

    table = frontier_table(store, x="learning_accuracy", y="stability_from_forgetting", by="config")
    assert table.attrs["n_selected"] == 6                          # finished runs only: not `running`
    assert [e["id"] for e in table.attrs["excluded"]] == [gone]
    assert "learning_accuracy unavailable" in table.attrs["excluded"][0]["reason"]
    rows = table.set_index("id")
    first = rows.loc[a[0]]
    assert first["ids"] == a and first["n"] == 3 and first["strategy"] == "naive"
    assert first["learning_accuracy"] == pytest.approx(0.85)
    assert first["stability_from_forgetting"] == pytest.approx(0.5)
    assert first["stability_from_forgetting_std"] == pytest.approx(0.1)     # sample sd of 0.4, 0.5, 0.6
    assert first["learning_accuracy_std"] == pytest.approx(0.0)
    assert first["hparams"] == "train.lr=0.05" and first["hparams_dict"] == {"train.lr": 0.05}
    assert rows.loc[b, "n"] == 1 and math.isnan(rows.loc[b, "learning_accuracy_std"])
    assert rows.loc[c, "hparams"] == "buffer_size=10, train.lr=0.05"
    # means: a (0.85, 0.5), b (0.6, 1.0), c (0.9, 0.2): all three non-dominated
    assert rows["on_front"].tolist() == [True, True, True]
    runs = frontier_table(store, x="learning_accuracy", y="stability_from_forgetting", statuses=None)
    assert running in runs["id"].tolist() and gone not in runs["id"].tolist()


def test_summaries_compute_only_the_metrics_asked_for(store):
    from store.metrics.summary import summaries
    run = _hand_run(store, _cfg("naive", 0), [[0.1, 0.1], [0.9, 0.0], [0.3, 0.8]])
    full, = summaries(store, [run])
    some, = summaries(store, [run], only={"learning_accuracy", "forgetting"})
    assert "wf10" in full and "stability_gap" in full and "relative_performance" in full
    assert "wf10" not in some and "stability_gap" not in some and "relative_performance" not in some
    assert some["learning_accuracy"] == full["learning_accuracy"] and some["forgetting"] == full["forgetting"]
    table = frontier_table(store, x="learning_accuracy", y="stability_from_forgetting")
    assert table.loc[0, "stability_from_forgetting"] == pytest.approx(1 - full["forgetting"])


# ---- the chart -----------------------------------------------------------------------------------

def _layers(spec):
    for key in ("layer", "hconcat", "vconcat"):
        for sub in spec.get(key, []):
            yield sub
            yield from _layers(sub)


def test_pareto_chart_spec_has_the_frontier_the_pick_selection_and_the_tooltip(trained):
    from engine.interpolate import compute_tradeoffs, tradeoff_table

    store, ids = trained
    table = frontier_table(store)
    compute_tradeoffs(store, ids[1])
    curves = tradeoff_table(store, ids[1])
    spec = pareto_chart(table, "learning_accuracy", "min_acc", tradeoffs=curves).to_dict()
    params = [p for p in spec.get("params", []) if p["name"] == "pick"]
    assert len(params) == 1 and params[0]["select"]["fields"] == ["id"] and params[0]["select"]["on"] == "click"
    layers = list(_layers(spec))
    marks = [(l.get("mark", {}) or {}).get("type") if isinstance(l.get("mark"), dict) else l.get("mark") for l in layers]
    frontier = [l for l, m in zip(layers, marks) if m == "line" and any(
        t.get("filter") == "datum.on_front" for t in l.get("transform", []))]
    assert len(frontier) == 1 and frontier[0]["encoding"]["order"]["field"] == "learning_accuracy"
    points = [l for l in layers if "tooltip" in l.get("encoding", {}) and l["encoding"].get("color", {}).get("field") == "strategy"]
    assert len(points) == 1
    fields = [t["field"] for t in points[0]["encoding"]["tooltip"]]
    assert {"id", "strategy", "hparams", "learning_accuracy", "min_acc"} <= set(fields)
    assert points[0]["encoding"]["size"]["condition"]["test"] == "datum.on_front"
    # the trade-off curves beside the runs: lines with small points over plasticity x stability
    curve_layers = [l for l in layers if l.get("encoding", {}).get("x", {}).get("field") == "plasticity"]
    assert {l["mark"]["type"] for l in curve_layers} >= {"line", "point", "text"}
    datasets = spec["datasets"]
    assert max(len(v) for v in datasets.values()) <= 5000
    assert sum(len(v) for v in datasets.values()) == len(table) + len(curves)   # each converted once


def test_pareto_chart_by_config_has_error_bars_and_cuts_to_the_row_limit():
    n = 6000
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"id": np.arange(n), "strategy": "naive", "hparams": "-", "name": "r",
                          "acc": rng.random(n), "min_acc": rng.random(n)})
    table["on_front"] = pareto_front(table[["acc", "min_acc"]].to_numpy())
    spec = pareto_chart(table, "acc", "min_acc").to_dict()             # no MaxRowsError
    (values,) = spec["datasets"].values()
    assert len(values) == 5000 and sum(v["on_front"] for v in values) == table["on_front"].sum()
    assert "of 6,000" in str(spec["title"])
    configs = table.iloc[:5].assign(n=[3, 3, 1, 2, 2], acc_std=[0.1, 0.0, np.nan, 0.2, 0.1],
                                    min_acc_std=[0.1, 0.0, np.nan, 0.2, 0.1])
    spec = pareto_chart(configs, "acc", "min_acc").to_dict()
    rules = [l for l in _layers(spec) if l.get("mark") == "rule" or (isinstance(l.get("mark"), dict) and l["mark"]["type"] == "rule")]
    assert len(rules) == 2
