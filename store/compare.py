"""Comparing runs: curves grouped by strategy or by any hyperparameter (mean and a band over the
runs of a group, typically seeds), the summary metrics as mean and standard deviation, and the
scenario each run belongs to (runs of different scenarios are not put on one axis by default).

Speed: the curves of every selected run come from ONE DuckDB query that buckets the evaluations
before anything is fetched (a few thousand rows however long the runs), and what a run that has
ended can no longer change (its buckets, its summary) is kept in memory, so a page refreshing
during a sweep only queries the runs still training."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

from store.metrics import METRICS
from store.metrics.references import JOINT_CUMULATIVE, JOINT_STRATEGY
from store.metrics.summary import summaries, summary
from store.queries import _cur
from store.schema import FINAL_STATUSES

# the curves a comparison overlays, panel by panel
COMPARE_SERIES = {
    "seen_acc": "Accuracy on the tasks seen so far",
    "stability": "Stability: mean accuracy on earlier tasks",
    "plasticity": "Plasticity: accuracy on the task being trained",
    "train_loss": "Training loss",
}
# the metrics of the Compare table and of comparison reports: those the registry marks (compare_table)
TABLE_METRICS = METRICS.where(lambda m: m.compare_table)

# x axes of the curves. Task progress is the default: runs of different lengths (epochs, batch size,
# dataset size) line up task by task, and a switch is at the same x in every run.
X_AXES = {
    "progress": "task progress (task k spans k-1 to k)",
    "step": "global step",
}
DEFAULT_X_AXIS = "progress"
ROWS_PER_CHART = 4000  # every group's buckets together stay under Altair's 5,000-row limit

# Datasets whose identity is the user's own file or folder (scenario.root), not their name.
FILE_DATASETS = ("image_folder", "npz")


# ---- scenarios -----------------------------------------------------------------------------------
def scenario_key(config: dict) -> str:
    """What makes runs comparable on one axis: the dataset, the setting (class-, task- or
    domain-incremental), the domain shift of a domain-incremental run (permuted or rotated), the
    number of tasks, the tasks trained when only some are (single-task experts), and the data file of
    a dataset read from the user's own files. Left out, as sources of variance one averages over
    like the seed: ``scenario.seed`` (the split, the permutations), ``class_seed`` (the class order)
    and ``test_size``. Defaults are those of ``engine.config.ScenarioConfig``."""
    s = config.get("scenario") if isinstance(config, dict) else None
    s = s if isinstance(s, dict) else {}
    setting = s.get("setting", "class")
    parts = [str(s.get("dataset", "digits"))]
    if s.get("dataset") in FILE_DATASETS and s.get("root"):
        parts.append(str(s["root"]))
    parts.append(f"{setting}-IL" + (f" ({s.get('domain', 'permuted')})" if setting == "domain" else ""))
    parts.append(f"{s.get('n_tasks', 5)} tasks")
    if s.get("tasks"):
        parts.append("trains task " + ", ".join(str(t) for t in s["tasks"]))
    return " · ".join(parts)


def scenario_counts(runs: pd.DataFrame) -> dict[str, int]:
    """{scenario: number of runs} of a selection, the most frequent first (then by name)."""
    counts = pd.Series([scenario_key(c) for c in runs["config"]], dtype=object).value_counts()
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def in_scenario(runs: pd.DataFrame, scenario: str) -> pd.DataFrame:
    return runs[[scenario_key(c) == scenario for c in runs["config"]]]


# ---- grouping --------------------------------------------------------------------------------------
def config_value(config: dict, key: str) -> Any:
    """A value of a run config by dotted key (``train.lr``); ``strategy`` means the strategy's name."""
    if key == "strategy":
        key = "strategy.name"
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def group_label(config: dict, group_by: str) -> str:
    value = config_value(config, group_by)
    if group_by in ("strategy", "strategy.name"):
        return str(value)
    return f"{group_by.split('.')[-1]}={json.dumps(value) if not isinstance(value, str) else value}"


def hyperparameter_keys(configs: list[dict]) -> list[str]:
    """The dotted keys whose value differs between these configs (what one can group by)."""
    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = json.dumps(v)
        return out
    flats = [flat(c) for c in configs]
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if k != "name" and len({f.get(k) for f in flats}) > 1]


def select_runs(source, statuses=None, strategies=None, sweep_id: int | None = None,
                run_ids: list[int] | None = None) -> pd.DataFrame:
    """Runs by filter, by sweep, or by hand: id, name, strategy, status, sweep_id, seed, config (a dict)."""
    df = _cur(source).execute(
        """
        SELECT id, name, config->'strategy'->>'name' AS strategy, status, sweep_id, sweep_phase,
               CAST(config->>'seed' AS INTEGER) AS seed, config
        FROM runs
        WHERE ($statuses IS NULL OR list_contains($statuses, status))
          AND ($strategies IS NULL OR list_contains($strategies, config->'strategy'->>'name'))
          AND ($sweep IS NULL OR sweep_id = $sweep)
          AND ($ids IS NULL OR list_contains($ids, id))
        ORDER BY id
        """,
        {"statuses": statuses or None, "strategies": strategies or None, "sweep": sweep_id,
         "ids": [int(i) for i in run_ids] if run_ids else None},
    ).df()
    df["config"] = [json.loads(c) for c in df["config"]]
    return df


def any_live(runs: pd.DataFrame) -> bool:
    """Whether a run of the selection is queued or running (its curves can still change)."""
    return bool(len(runs)) and not runs["status"].isin(FINAL_STATUSES).all()


# ---- what an ended run can no longer change, kept -----------------------------------------------------
class _Cache:
    """A bounded, thread-safe LRU of values computed from runs that have ended."""

    def __init__(self, size: int):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_BUCKETS = _Cache(4000)    # (database, run, version, x axis, bucket width) -> that run's buckets
_SUMMARIES = _Cache(4000)  # (database, run, version, references, metrics) -> its summary


def clear_caches() -> None:
    _BUCKETS.clear()
    _SUMMARIES.clear()


def _database(cur) -> str:
    return cur.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0] or ""


def _run_state(cur, run_ids: list[int]) -> pd.DataFrame:
    """What a run's curves depend on besides its metric rows: status, the version of an ended run
    (a resumed run ends again with a new finished_at), and its evaluation settings."""
    return cur.execute(
        """SELECT id, status, CAST(finished_at AS VARCHAR) AS finished_at, coalesce(last_step, 0) AS last_step,
                  total_steps, coalesce(CAST(config->'eval'->>'every' AS BIGINT), 1) AS every,
                  (config->'eval'->>'subset') IS NULL AS full_eval,
                  coalesce(json_array_length(config->'scenario'->'tasks'),
                           CAST(config->'scenario'->>'n_tasks' AS BIGINT)) AS planned_tasks
           FROM runs WHERE list_contains($ids, id) ORDER BY id""",
        {"ids": [int(i) for i in run_ids]}).df()


def _version(row) -> tuple | None:
    """The cache version of a run: None while it can still change."""
    return (row.status, row.finished_at, int(row.last_step)) if row.status in FINAL_STATUSES else None


# ---- curves -----------------------------------------------------------------------------------------
def _spans(cur, state: pd.DataFrame) -> pd.DataFrame:
    """Each task's span (start, end], with the span length the task progress divides by. A task
    still training has no end yet: its length is taken as the previous task's, else the run's planned
    steps shared out over the tasks left, else the steps done so far (the fraction is capped at 1)."""
    b = cur.execute("SELECT run_id, task, start_step, end_step FROM task_boundaries WHERE list_contains($ids, run_id)"
                    " ORDER BY run_id, task", {"ids": state["id"].tolist()}).df()
    rows = []
    info = state.set_index("id")
    for run_id, g in b.groupby("run_id", sort=True):
        r = info.loc[run_id]
        previous = None
        for i, (task, start, end) in enumerate(zip(g["task"], g["start_step"], g["end_step"])):
            if pd.notna(end):
                length = float(end - start)
            elif previous is not None:
                length = previous
            elif pd.notna(r.total_steps) and pd.notna(r.planned_tasks):
                length = (float(r.total_steps) - start) / max(1.0, float(r.planned_tasks) - i)
            else:
                length = float(r.last_step - start)
            previous = float(end - start) if pd.notna(end) else previous
            rows.append((int(run_id), int(task), int(start), int(end) if pd.notna(end) else np.iinfo(np.int64).max,
                         max(int(round(length)), 1), int(r.every), bool(r.full_eval)))
    return pd.DataFrame(rows, columns=["run_id", "task", "start", "stop", "length", "every", "full_eval"])


# Two stages: the big scan only sums per (run, task being trained k, bucket, kind of row), kinds being
# the training loss, the accuracy on task k, and on an earlier task (tasks after k are not needed);
# the means and the x position are worked out on those few sums.
_BUCKET_SQL = """
WITH sp AS (
    SELECT unnest($run::INTEGER[]) AS run_id, unnest($task::INTEGER[]) AS k, unnest($start::BIGINT[]) AS s,
           unnest($stop::BIGINT[]) AS e, unnest($length::BIGINT[]) AS len, unnest($every::BIGINT[]) AS every,
           unnest($full::BOOLEAN[]) AS full_eval
),
sums AS (
    SELECT m.run_id, sp.k, any_value(sp.s) AS s, any_value(sp.len) AS len, {bucket} AS bucket,
           -- kinds: 0 the training loss, 1 accuracy on task k, 2 on an earlier task, 3 not used (a later
           -- task; a full evaluation at a task's end where a periodic one measured the same step).
           -- A CASE rather than a WHERE: the join then only compares run and step
           CASE WHEN m.metric = 'train_loss' THEN 0
                WHEN m.task > sp.k OR (m.metric = 'boundary_acc' AND NOT (sp.full_eval AND m.step % sp.every <> 0)) THEN 3
                WHEN m.task = sp.k THEN 1 ELSE 2 END AS kind,
           sum(m.value) AS total, count(*) AS n, sum(m.step) AS steps
    FROM (SELECT run_id, step, task, metric, value FROM metrics
          WHERE metric IN ('acc', 'boundary_acc', 'train_loss')) m
    JOIN sp ON m.run_id = sp.run_id AND m.step > sp.s AND m.step <= sp.e
    GROUP BY ALL
)
SELECT run_id, k AS task, bucket,
       {x} AS x,
       sum(total) FILTER (kind = 1) / sum(n) FILTER (kind = 1) AS plasticity,
       sum(total) FILTER (kind = 2) / sum(n) FILTER (kind = 2) AS stability,
       sum(total) FILTER (kind IN (1, 2)) / sum(n) FILTER (kind IN (1, 2)) AS seen_acc,
       sum(total) FILTER (kind = 0) / sum(n) FILTER (kind = 0) AS train_loss
FROM sums GROUP BY run_id, k, bucket
"""
# the mean step of a bucket's evaluations (of its training steps where it has none), as x
_MEAN_STEP = ("coalesce(sum(steps) FILTER (kind IN (1, 2)) / sum(n) FILTER (kind IN (1, 2)),"
              " sum(steps) FILTER (kind = 0) / sum(n) FILTER (kind = 0))")
_X_SQL = {
    # task k spans (k-1, k]: step t of the span (start, end] is at (k-1) + (t-start)/(end-start)
    "progress": (f"(k - 1) + least(({_MEAN_STEP} - any_value(s)) / any_value(len), 1.0)",
                 "least((m.step - sp.s - 1) * $per // sp.len, $per - 1)"),
    "step": (_MEAN_STEP, "m.step // $per"),
}


def _pow2(n: float) -> int:
    return 1 << max(0, int(np.ceil(np.log2(max(n, 1.0)))))


def bucket_width(cur, state: pd.DataFrame, x: str, buckets: int) -> int:
    """Buckets per task (task progress) or steps per bucket (global step).

    Task progress: as many buckets a task as the sparsest run of the selection has evaluations a
    task (so each run has about one evaluation a bucket and a group's runs, however long, average
    bucket by bucket), at most the power of two at most ``buckets`` / tasks. Global step: a power of
    two. Either way a small change of the selection rarely changes it, and so keeps the cached
    buckets of ended runs."""
    tasks = state["planned_tasks"].astype(float)
    if x == "progress":
        most = max(1, _pow2(buckets / max(1.0, float(np.nanmax(tasks)) if tasks.notna().any() else 1.0) + 1) // 2)
        evals = state["total_steps"].astype(float) / tasks / state["every"].astype(float)
        sparsest = float(evals.min()) if evals.notna().any() else float("inf")
        return int(max(1, min(most, np.ceil(sparsest))))
    return _pow2(float(state["last_step"].max() or 1) / buckets)


def run_buckets(source, run_ids: list[int], x: str = DEFAULT_X_AXIS, buckets: int = 1000) -> pd.DataFrame:
    """Each run's curves, bucketed in DuckDB before fetching: one row per (run, task, bucket) with
    ``x`` (the mean position of the bucket's evaluations) and the bucket's MEAN of each series of
    ``COMPARE_SERIES``: plasticity (accuracy on the task k being trained), stability (mean accuracy
    on tasks before k), seen_acc (mean over tasks 1..k) and the training loss. The bucket mean is
    what a mean over seeds needs (an unbiased point of each run's curve); a dip narrower than a
    bucket is softened (the Run page keeps each bucket's minimum of a single run). A bucket never
    straddles a task switch. A run with fewer evaluations than buckets is exact: one evaluation a
    bucket. Ended runs come from memory after their first query; one query fetches the rest."""
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    cur = _cur(source)
    columns = ["run_id", "task", "bucket", "x", *COMPARE_SERIES]
    state = _run_state(cur, run_ids)
    if state.empty:
        return pd.DataFrame(columns=columns)
    per = bucket_width(cur, state, x, buckets)
    db = _database(cur)
    frames, todo, keys = [], [], {}
    for row in state.itertuples():
        version = _version(row)
        key = (db, int(row.id), version, x, per)
        hit = _BUCKETS.get(key) if version else None
        if hit is not None:
            frames.append(hit)
        else:
            todo.append(int(row.id))
            if version:
                keys[int(row.id)] = key
    if todo:
        sp = _spans(cur, state[state["id"].isin(todo)])
        if len(sp):
            xs, bucket = _X_SQL[x]
            fresh = cur.execute(_BUCKET_SQL.format(x=xs, bucket=bucket), {
                "run": sp["run_id"].tolist(), "task": sp["task"].tolist(), "start": sp["start"].tolist(),
                "stop": sp["stop"].tolist(), "length": sp["length"].tolist(), "every": sp["every"].tolist(),
                "full": sp["full_eval"].tolist(), "per": per}).df()
            for run_id, g in fresh.groupby("run_id", sort=False):
                g = g.sort_values(["task", "bucket"]).reset_index(drop=True)
                frames.append(g)
                if int(run_id) in keys:
                    _BUCKETS.put(keys[int(run_id)], g)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def group_curves(source, runs: pd.DataFrame, group_by: str = "strategy", x: str = DEFAULT_X_AXIS,
                 rows: int = ROWS_PER_CHART) -> pd.DataFrame:
    """One row per (group, task, bucket): ``x``, ``n`` (the runs measured there) and, for each
    series of ``COMPARE_SERIES``, its mean over the group's runs (``<s>_mean``) and a band of one
    sample standard deviation (``<s>_lo``, ``<s>_hi``; no band with one run). Runs are bucketed on
    the same grid (``run_buckets``), so seeds align bucket by bucket even when they were evaluated at
    different steps. At most about ``rows`` rows in all."""
    columns = ["group", "task", "bucket", "x", "n"] + [f"{s}_{p}" for s in COMPARE_SERIES for p in ("mean", "lo", "hi")]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    labels = {int(i): group_label(c, group_by) for i, c in zip(runs["id"], runs["config"])}
    per_group = max(50, rows // max(1, len(set(labels.values()))))
    b = run_buckets(source, list(labels), x=x, buckets=per_group)
    if b.empty:
        return pd.DataFrame(columns=columns)
    b = b.assign(group=b["run_id"].map(labels))
    series = list(COMPARE_SERIES)
    grouped = b.groupby(["group", "task", "bucket"], sort=True)
    mean = grouped[["x", *series]].mean()
    std = grouped[series].std().fillna(0.0)
    out = pd.DataFrame({"x": mean["x"], "n": grouped.size()})
    for s in series:
        out[f"{s}_mean"] = mean[s]
        out[f"{s}_lo"] = mean[s] - std[s]
        out[f"{s}_hi"] = mean[s] + std[s]
    out = out.reset_index().sort_values(["group", "x"], kind="stable")
    return out[columns].reset_index(drop=True)


# ---- summary metrics --------------------------------------------------------------------------------
def _references(cur) -> str:
    """A fingerprint of the runs other runs' metrics may read (Joint references, single-task experts)."""
    row = cur.execute(
        """SELECT count(*), CAST(max(finished_at) AS VARCHAR), sum(id * 31 + coalesce(last_step, 0)),
                  string_agg(status, ',' ORDER BY id) FROM runs
           WHERE (lower(config->'strategy'->>'name') = $j AND lower(config->'strategy'->>'mode') = $c)
              OR json_array_length(config->'scenario'->'tasks') = 1""",
        {"j": JOINT_STRATEGY, "c": JOINT_CUMULATIVE}).fetchone()
    return hashlib.sha1(repr(row).encode()).hexdigest()


def cached_summaries(source, run_ids: list[int], only) -> dict[int, dict]:
    """``store.metrics.summary.summaries`` of these runs restricted to the metric keys ``only``, an ended
    run's taken from memory while it and the reference runs are unchanged."""
    ids = [int(i) for i in run_ids]
    if not ids:
        return {}
    cur = _cur(source)
    # the table's metrics always among them: the frontier (two of them) then finds the table's entries
    only = tuple(sorted(set(only) | set(TABLE_METRICS)))
    state = _run_state(cur, ids)
    db, refs = _database(cur), _references(cur)
    out, todo, keys = {}, [], {}
    for row in state.itertuples():
        version = _version(row)
        key = (db, int(row.id), version, refs, only)
        hit = _SUMMARIES.get(key) if version else None
        if hit is not None:
            out[int(row.id)] = hit
        else:
            todo.append(int(row.id))
            keys[int(row.id)] = key if version else None
    live = [i for i in todo if keys[i] is None]
    ended = [i for i in todo if keys[i] is not None]
    for run_id in live:  # from the series held between refreshes (store.metrics.run_cache): only new steps computed
        out[run_id] = {**summary(cur, run_id), "run_id": run_id}
    for s in summaries(cur, ended, only=only) if ended else []:
        out[s["run_id"]] = s
        _SUMMARIES.put(keys[s["run_id"]], s)
    return out


def group_metrics(source, runs: pd.DataFrame, group_by: str = "strategy", keys=TABLE_METRICS) -> pd.DataFrame:
    """The summary metrics of each group: ``<key>`` (mean over its runs) and ``<key> sd`` (sample
    standard deviation; NaN with one run), ``runs`` counted, a metric unavailable for a run left out."""
    if runs.empty:
        return pd.DataFrame(columns=["group", "runs"])
    by_id = cached_summaries(source, [int(i) for i in runs["id"]], keys)
    rows = [{"group": group_label(config, group_by), **{k: by_id[int(i)].get(k) for k in keys}}
            for i, config in zip(runs["id"], runs["config"])]
    df = pd.DataFrame(rows).astype({k: float for k in keys})
    grouped = df.groupby("group", sort=True)
    out = grouped.size().rename("runs").to_frame()
    for k in keys:
        out[k] = grouped[k].mean()
        out[f"{k} sd"] = grouped[k].std()
    return out.reset_index()
