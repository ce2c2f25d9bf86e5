"""The run page's queries: the continual curves, and downsampling that never smooths a dip away."""

import math

import numpy as np

from engine.runs.manager import run_in_process
from store.metrics.continual import continual_curves, min_acc, wc_acc
from store.queries import downsampled_long, run_series
from tests.conftest import small_config


def test_curves_equal_min_acc_and_wc_acc_at_every_step():
    # two tasks: task 1 over (0, 4], task 2 over (4, 8]; evaluations at steps 2, 4, 6, 8
    steps = np.array([2, 4, 6, 8])
    A = np.array([[0.5, 0.0],
                  [0.9, 0.1],
                  [0.6, 0.7],   # task 1 dips right after the switch...
                  [0.8, 0.9]])  # ...and recovers
    spans = {1: (0, 4), 2: (4, 8)}
    c = continual_curves(steps, A, spans)
    assert c["task"].tolist() == [1, 1, 2, 2]
    assert c["plasticity"].tolist() == [0.5, 0.9, 0.7, 0.9]
    assert np.isnan(c["stability"][:2]).all() and c["stability"][2:].tolist() == [0.6, 0.8]
    # min-ACC at 6: min over (4, 6] of task 1 = 0.6; at 8: min(0.6, 0.8) = 0.6
    assert c["min_acc"][2:].tolist() == [0.6, 0.6]
    # WC-ACC at 8 = 0.9 / 2 + (1 - 1/2) * 0.6 = 0.75; while k = 1 it is A(1, t)
    assert math.isclose(c["wc_acc"][3], 0.75) and c["wc_acc"][:2].tolist() == [0.5, 0.9]
    for m, t in enumerate(steps):
        expected_min, _ = min_acc(steps, A, spans, t=int(t))
        expected_wc, _ = wc_acc(steps, A, spans, t=int(t))
        assert (np.isnan(c["min_acc"][m]) and expected_min is None) or math.isclose(c["min_acc"][m], expected_min)
        assert math.isclose(c["wc_acc"][m], expected_wc)


def test_a_real_runs_series_ends_where_its_summary_does(store):
    from store.metrics.summary import summary
    run_id = run_in_process(store, small_config("replay", eval={"every": 3}))
    series = run_series(store, run_id)
    totals = store.sql("SELECT count(DISTINCT step) FROM metrics WHERE run_id = ? AND metric IN ('acc', 'boundary_acc')", [run_id])[0][0]
    assert len(series) == totals  # short: nothing dropped; step 0 and the task ends included
    assert series["step"].iloc[0] == 0
    s = summary(store, run_id)
    assert math.isclose(series["min_acc"].iloc[-1], s["min_acc"]) and math.isclose(series["wc_acc"].iloc[-1], s["wc_acc"])
    assert series["train_loss"].iloc[1:].notna().all()


def test_downsampling_keeps_a_one_step_dip_and_the_row_limit(store):
    run_id = store.create_run({"eval": {"every": 1, "subset": 5}}, name="long")
    n, T = 60_000, 3
    rng = np.random.default_rng(1)
    acc = 0.8 + rng.uniform(-0.02, 0.02, size=(n, T))
    dip_step = 43_211
    acc[dip_step - 1, 0] = 0.05  # one evaluation where task 1 collapses
    steps = np.repeat(np.arange(1, n + 1), T)
    store.add_metrics({"run_id": np.full(n * T, run_id), "step": steps, "task": np.tile(np.arange(1, T + 1), n),
                       "metric": ["acc"] * (n * T), "value": acc.ravel()})
    store.add_metrics({"run_id": np.full(n, run_id), "step": np.arange(1, n + 1), "task": np.ones(n, dtype=int),
                       "metric": ["train_loss"] * n, "value": np.where(np.arange(1, n + 1) == 777, 50.0, 1.0)})
    for task in range(1, T + 1):
        store.start_task(run_id, task, (task - 1) * n // T)
        store.end_task(run_id, task, task * n // T)
    series = run_series(store, run_id, points=2000)
    assert len(series) <= 2000 + 2 * (T + 4)
    assert series.loc[series["task 1"].idxmin(), "step"] == dip_step and series["task 1"].min() == 0.05
    # every bucket keeps each series' extremes: the overall maximum of each task survives too
    for j in range(T):
        assert series[f"task {j + 1}"].max() == acc[:, j].max()
    loss = downsampled_long(store, run_id, "train_loss", points=1000)
    assert len(loss) <= 1002 and loss["value"].max() == 50.0 and 777 in loss["step"].tolist()
