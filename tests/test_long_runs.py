"""Long runs: the run page's series and summary held between refreshes (store/metrics/run_cache.py) are
always what a fresh read of the file gives, exactly, and never stale after new rows, a rewind or a
delete."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from engine.runs.manager import run_in_process
from store import Store
from store.metrics import run_cache
from store.metrics.summary import summaries, summary
from store.queries import downsampled_long, full_series, keep_extremes, run_series
from tests.conftest import small_config

_spec = importlib.util.spec_from_file_location("run_page", Path(__file__).resolve().parent.parent / "bench" / "run_page.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SERIES = ["plasticity", "stability", "min_acc", "wc_acc"]


def fresh(store, run_id):
    """The summary as read afresh from the file (``summaries`` does not use the cache)."""
    return summaries(store, [run_id])[0]


def same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def check_series(store, run_id, points):
    """run_series is full_series at the rows it keeps, value for value, and every bucket of 2^i steps
    (as many as fit in ``points`` rows) keeps each series' minimum and maximum."""
    series, full = run_series(store, run_id, points=points), full_series(store, run_id)
    assert list(series.columns) == list(full.columns)
    assert series["step"].is_monotonic_increasing and len(series) <= points + 2
    assert series["step"].iloc[-1] == full["step"].iloc[-1]  # the newest evaluation
    at = full.set_index("step").loc[series["step"]].reset_index()
    for column in full.columns:
        assert np.array_equal(at[column].to_numpy(float), series[column].to_numpy(float), equal_nan=True), column
    columns = [c for c in full.columns if c.startswith("task ")] + SERIES
    if len(full) > points:
        steps = full["step"].to_numpy()
        width = 1
        while (steps[-1] - steps[0]) // width + 1 > points // (2 * len(columns)):
            width *= 2
        for name, values in ((c, full[c].to_numpy(float)) for c in columns):
            kept = series[name].to_numpy(float)
            for bucket in np.unique((steps - steps[0]) // width):
                inside = (steps - steps[0]) // width == bucket
                kept_inside = (series["step"].to_numpy() - steps[0]) // width == bucket
                if np.isfinite(values[inside]).any():
                    assert np.nanmin(kept[kept_inside]) == np.nanmin(values[inside]), (name, bucket)
                    assert np.nanmax(kept[kept_inside]) == np.nanmax(values[inside]), (name, bucket)
    return series


def check_loss(store, run_id, points):
    """downsampled_long keeps, in every bucket of 2^i steps (as many as fit in points / 2), the
    training loss's minimum and maximum, with the rows as written."""
    loss = downsampled_long(store, run_id, "train_loss", points=points)
    rows = store.df("SELECT step, task, value FROM metrics WHERE run_id = ? AND metric = 'train_loss' ORDER BY step",
                    [run_id])
    assert len(loss) <= points and loss["step"].is_monotonic_increasing
    assert loss.merge(rows, on=["step", "task", "value"]).shape[0] == len(loss)  # rows as written
    width = 1
    while rows["step"].max() // width + 1 > points // 2:
        width *= 2
    for bucket, inside in rows.groupby(rows["step"] // width):
        kept = loss[loss["step"] // width == bucket]["value"]
        assert kept.min() == inside["value"].min() and kept.max() == inside["value"].max()


def test_a_real_run_evaluated_every_step_gets_the_summary_and_series_of_a_fresh_read(store):
    run_id = run_in_process(store, small_config("replay", n_tasks=3, eval={"every": 1}))
    first = summary(store, run_id)
    assert first["stability_gaps"] and first["wf10"] is not None and first["min_acc"] is not None
    assert same(first, fresh(store, run_id))
    again = summary(store, run_id)  # unchanged: served again, an equal copy the caller may change
    assert same(again, first) and again is not first
    check_series(store, run_id, points=24)
    check_series(store, run_id, points=2000)  # short: every row


def test_a_live_run_refreshed_as_it_grows_matches_a_fresh_read_at_every_refresh(store):
    points, n_tasks = 3000, 5
    run = bench.synthetic(points, n_tasks)
    run_id = bench.fill(store, points, n_tasks, upto=450)
    done = 450
    for chunk in (1, 1, 7, 140, 1, 600, 350, 1000, 449, 1):  # across every task switch (every 600 steps)
        bench.append(store, run_id, run, done, done + chunk)
        done += chunk
        s = summary(store, run_id)
        assert same(s, fresh(store, run_id)), f"after step {done}"
        series = check_series(store, run_id, points=200)
        assert series["step"].iloc[-1] == done
        check_loss(store, run_id, points=100)
    assert done == points
    # the dips after each switch (the stability gap) are in the summary and in the kept rows
    full = full_series(store, run_id)
    for record in s["stability_gaps"]:
        for item in record["tasks"]:
            assert item["depth"] > 0.2
    assert series["task 1"].min() == full["task 1"].min()
    store.set_status(run_id, "finished")
    assert same(summary(store, run_id), fresh(store, run_id))


def test_rows_of_a_step_arriving_in_two_batches_and_late_rows_are_read(store):
    points, n_tasks = 1000, 5
    run = bench.synthetic(points, n_tasks)
    run_id = bench.fill(store, points, n_tasks, upto=500)
    summary(store, run_id), run_series(store, run_id)
    # step 501's evaluation arrives task by task: the page sees it half-written, then whole
    for tasks in ([1, 2], [3, 4, 5]):
        store.add_metrics({"run_id": [run_id] * len(tasks), "step": [501] * len(tasks), "task": tasks,
                           "metric": ["acc"] * len(tasks), "value": [0.123 + t for t in tasks]})
        store.flush()
        assert same(summary(store, run_id), fresh(store, run_id))
        check_series(store, run_id, points=100)
    # a row for a step long settled (step 0 evaluated periodically, after the fact)
    store.add_metrics({"run_id": [run_id] * n_tasks, "step": [0] * n_tasks, "task": range(1, n_tasks + 1),
                       "metric": ["acc"] * n_tasks, "value": [0.5] * n_tasks})
    store.flush()
    assert same(summary(store, run_id), fresh(store, run_id))
    assert run_series(store, run_id, points=100)["task 1"].iloc[0] == 0.5


def test_a_rewind_and_a_rerun_to_the_same_row_count_and_a_delete_are_never_served_stale(store):
    points, n_tasks = 1000, 5
    run_id = bench.fill(store, points, n_tasks)  # finished: 200 steps a task
    before = summary(store, run_id)
    series_before = run_series(store, run_id, points=100)
    check_loss(store, run_id, points=60)
    rows = store.sql("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id])[0][0]
    # resume from the end of task 2: later metrics deleted, the run queued
    store.rewind_run(run_id, 400, task=2)
    after = summary(store, run_id)
    assert same(after, fresh(store, run_id)) and after["tasks_done"] == 2 and before["tasks_done"] == 5
    check_series(store, run_id, points=100)
    # the resumed run (started again, as the manager does) writes as many rows, with other values
    store.set_status(run_id, "running")
    bench.append(store, run_id, bench.synthetic(points, n_tasks, seed=7), 400, points)
    store.set_status(run_id, "finished")
    assert store.sql("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id])[0][0] == rows
    again = summary(store, run_id)
    assert same(again, fresh(store, run_id)) and not same(again, before)
    series = check_series(store, run_id, points=100)
    assert not series[["task 1", "task 2"]].equals(series_before[["task 1", "task 2"]])
    check_loss(store, run_id, points=60)
    # deleted: no summary, no series, nothing held
    store.delete_run(run_id)
    with pytest.raises(KeyError):
        summary(store, run_id)
    assert run_series(store, run_id).empty
    assert not any(key[1] == run_id and key[0] == str(store.path) for key in run_cache._STATES)


def test_two_files_with_the_same_run_id_and_a_joint_reference_are_kept_apart(tmp_path):
    with Store(tmp_path / "a.duckdb", serve=False) as a, Store(tmp_path / "b.duckdb", serve=False) as b:
        ra = bench.fill(a, 500, 5, seed=1)
        rb = bench.fill(b, 500, 5, seed=2)
        assert ra == rb
        sa, sb = summary(a, ra), summary(b, rb)
        assert same(sa, fresh(a, ra)) and same(sb, fresh(b, rb)) and not same(sa, sb)
        assert sa["intransigence"] is None
        # a Joint reference (cumulative, same scenario and seed) appears: the summary follows
        joint = bench.fill(a, 500, 5, seed=3, config={"strategy": {"name": "joint", "mode": "cumulative"}})
        with_ref = summary(a, ra)
        assert with_ref["references"]["joint"] == joint and with_ref["intransigence"] is not None
        assert same(with_ref, fresh(a, ra))


def test_keep_extremes_keeps_each_buckets_first_minimum_and_last_maximum():
    import pandas as pd

    steps = np.arange(1, 21)
    values = np.array([3, 1, 1, 5, 5, 2, 9, 9, np.nan, 4, 4, 4, 0, 7, 7, 1, 8, 8, 2, 6], dtype=float)
    df = pd.DataFrame({"step": steps, "v": values})
    kept = keep_extremes(df, ["v"], points=8)  # 4 buckets of 5 steps
    # bucket 1: min 1 first at row 1, max 5 last at row 4; bucket 2: min 2 at 5, max 9 last at 7 (NaN
    # skipped); bucket 3: min 0 at 12, max 7 last at 14; bucket 4: min 1 at 15, max 8 last at 17
    assert kept.tolist() == [1, 4, 5, 7, 12, 14, 15, 17]
    rng = np.random.default_rng(0)  # against a plain loop over buckets, with ties and gaps
    for _ in range(50):
        n, points = int(rng.integers(1, 300)), int(rng.integers(2, 40))
        df = pd.DataFrame({"step": np.sort(rng.choice(5000, n, replace=False)),
                           "a": rng.integers(0, 4, n).astype(float), "b": rng.random(n)})
        df.loc[rng.random(n) < 0.2, "a"] = np.nan
        expected = set(range(n)) if n <= points else set()
        if n > points:
            s = df["step"].to_numpy()
            buckets = max(1, points // 4)
            bucket = (s - s.min()) * buckets // (s.max() - s.min() + 1)
            for column in ("a", "b"):
                for b in np.unique(bucket):
                    rows = [i for i in np.flatnonzero(bucket == b) if np.isfinite(df[column].iloc[i])]
                    if rows:
                        v = df[column].to_numpy()[rows]
                        expected |= {rows[int(np.argmin(v))], rows[len(v) - 1 - int(np.argmax(v[::-1]))]}
        assert keep_extremes(df, ["a", "b"], points).tolist() == sorted(expected)


def test_the_series_arrays_are_those_of_the_plain_definition():
    """continual_series (one sort at most, none when rows come in step order) against its definition:
    the union of the steps, the periodic rows, and the boundary rows at steps without a periodic one."""
    from store.metrics.loader import continual_series

    def plain(cs, ct, cv, bs, bt, bv, T, same):
        if same:
            extra = ~np.isin(bs, cs)
            cs, ct, cv = np.r_[cs, bs[extra]], np.r_[ct, bt[extra]], np.r_[cv, bv[extra]]
        steps, row = np.unique(cs, return_inverse=True)
        A = np.full((steps.size, T), np.nan)
        A[row, ct - 1] = cv
        return steps, A

    rng = np.random.default_rng(0)
    for _ in range(500):  # repeated steps and (step, task) pairs, sorted or not, boundary-only steps
        T, n, nb = int(rng.integers(1, 6)), int(rng.integers(0, 40)), int(rng.integers(0, 12))
        cs = rng.integers(0, 30, n)
        cs = np.sort(cs) if rng.random() < 0.5 else cs
        args = (cs, rng.integers(1, T + 1, n), rng.random(n), rng.integers(0, 35, nb), rng.integers(1, T + 1, nb),
                rng.random(nb), T)
        for same in (True, False):
            (s1, A1), (s2, A2) = continual_series(*args, same), plain(*args, same)
            assert np.array_equal(s1, s2) and np.array_equal(A1, A2, equal_nan=True)
