"""Queries the pages, the CLI and the reports share. Each takes a cursor (or a Store)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _cur(source):
    return source.cursor() if hasattr(source, "cursor") and not hasattr(source, "fetchall") else source


def run_row(source, run_id: int) -> dict | None:
    cur = _cur(source)
    result = cur.execute("SELECT * FROM runs WHERE id = ?", [run_id])
    names = [d[0] for d in result.description]
    row = result.fetchone()
    return dict(zip(names, row)) if row else None


def boundaries(source, run_id: int) -> list[tuple[int, int, int | None]]:
    """(task, start_step, end_step) of each task, in order; end_step None while it trains."""
    return _cur(source).execute(
        "SELECT task, start_step, end_step FROM task_boundaries WHERE run_id = ? ORDER BY task", [run_id]
    ).fetchall()


_LONG_SQL = """
WITH s AS (SELECT step, task, value FROM metrics
           WHERE run_id = $run AND metric = $metric AND step >= $lo AND ($hi IS NULL OR step < $hi)),
keep AS (
    SELECT DISTINCT unnest([arg_min(step, value), arg_max(step, value)]) AS step
    FROM s GROUP BY step // $width
)
SELECT step, task, value FROM s WHERE step IN (SELECT step FROM keep) ORDER BY step
"""


def downsampled_long(source, run_id: int, metric: str, points: int = 2000):
    """One series a task (``step``, ``task``, ``value``), each downsampled to about ``points`` rows
    keeping each bucket's minimum and maximum (the training loss: one task at a time). Buckets are
    2^i steps wide, as many as fit in ``points / 2``; those before the run's last evaluation are
    kept between calls (``store.metrics.run_cache``), so a refresh reads only the rows of the last ones."""
    from store.metrics import run_cache

    cur = _cur(source)
    with run_cache.LOCK:
        st = run_cache.state(cur, run_id)
        if st is not None and (hit := st.results.get(("long", metric, points))) and hit[0] == st.version:
            return hit[1].copy()
        params = {"run": run_id, "metric": metric}
        max_step = cur.execute("SELECT max(step) FROM metrics WHERE run_id = $run AND metric = $metric"
                               " AND step >= $lo", {**params, "lo": st.open if st else 0}).fetchone()[0]
        if max_step is None and st is not None:
            max_step = cur.execute("SELECT max(step) FROM metrics WHERE run_id = $run AND metric = $metric",
                                   params).fetchone()[0]
        width = 1
        while (max_step or 0) // width + 1 > max(1, points // 2):
            width *= 2
        params["width"] = width
        closed = 0  # buckets wholly before the last evaluation are settled: read once
        parts = []
        if st is not None and st.n and st.open > 0:
            closed = st.open // width
            done = st.memos.setdefault(("long", metric, points, width), [0, []])
            if done[0] < closed:
                done[1].append(cur.execute(_LONG_SQL, {**params, "lo": done[0] * width, "hi": closed * width}).df())
                done[0] = closed
            parts = list(done[1])
        parts.append(cur.execute(_LONG_SQL, {**params, "lo": closed * width, "hi": None}).df())
        df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        if st is not None:
            st.results[("long", metric, points)] = (st.version, df)
        return df.copy()


def keep_extremes(df, columns, points: int):
    """Row positions to keep so each of ``columns`` keeps its minimum and maximum in every bucket of
    steps, with about ``points`` rows in all (each kept row carries every column's value)."""
    from store.metrics.run_cache import bucket_extremes

    if len(df) <= points:
        return np.arange(len(df))
    buckets = max(1, points // (2 * max(1, len(columns))))
    step = df["step"].to_numpy()
    bucket = (step - step.min()) * buckets // (step.max() - step.min() + 1)
    order = np.argsort(bucket, kind="stable")  # steps usually come sorted: then this is the identity
    return np.unique(order[bucket_extremes(bucket[order], df[list(columns)].to_numpy(dtype=float)[order])])


SERIES_EMPTY = ["step", "training task", "plasticity", "stability", "min_acc", "wc_acc", "seen_acc", "train_loss"]


def full_series(source, run_id: int):
    """Everything the run page plots against the step, one row an evaluation step: the accuracy on
    every task (``task 1``, ``task 2``, ...), the task being trained, plasticity, stability, min-ACC,
    WC-ACC (``store.metrics.continual.continual_curves``), the mean accuracy on the tasks trained so far
    (``seen_acc``, ACC_t) and the training loss at that step. Not downsampled."""
    from store.metrics.continual import CONTINUAL_SERIES_SQL, continual_curves
    from store.metrics.run_cache import seen_acc

    cur = _cur(source)
    e = cur.execute(f"WITH {CONTINUAL_SERIES_SQL} SELECT step, task, value FROM e", {"run": run_id}).fetchnumpy()
    if not len(e["step"]):
        return pd.DataFrame(columns=SERIES_EMPTY)
    steps, row = np.unique(e["step"], return_inverse=True)
    n_tasks = int(e["task"].max())
    A = np.full((len(steps), n_tasks), np.nan)
    A[row, e["task"].astype(np.int64) - 1] = e["value"]
    spans = {task: (start, end) for task, start, end in boundaries(cur, run_id)}
    curves = continual_curves(steps, A, spans)
    df = pd.DataFrame(A, columns=[f"task {j}" for j in range(1, n_tasks + 1)])
    df.insert(0, "step", steps)
    df["training task"] = curves["task"]
    for name in ("plasticity", "stability", "min_acc", "wc_acc"):
        df[name] = curves[name]
    df["seen_acc"] = seen_acc(A, curves["task"])
    loss = cur.execute("SELECT step, value FROM metrics WHERE run_id = ? AND metric = 'train_loss'", [run_id]).df()
    df["train_loss"] = loss.drop_duplicates("step").set_index("step")["value"].reindex(steps).to_numpy()
    return df


def run_series(source, run_id: int, points: int = 2000):
    """``full_series`` downsampled to about ``points`` rows: the first and the last row (the newest
    evaluation) and, with the steps cut into buckets 2^i steps wide (as many as fit), for each series
    (every task's accuracy, plasticity, stability, min-ACC, WC-ACC) the row of its first minimum and
    of its last maximum in each bucket. A dip (the stability gap) is never averaged away, and the
    table stays under Altair's 5,000-row limit however long the run. The run's series is held
    between calls (``store.metrics.run_cache``): a refresh reads and computes only the steps since the last
    one, and a run whose data has not changed gets the same table again."""
    from store.metrics import run_cache

    cur = _cur(source)
    with run_cache.LOCK:
        st = run_cache.state(cur, run_id)
        if st is None or not st.n:
            return pd.DataFrame(columns=SERIES_EMPTY)
        key = (points, st.version)
        hit = st.results.get("series")
        if hit is not None and hit[0] == key:
            return hit[1].copy()
        curves = st.curve_table()
        tasks = [f"task {j}" for j in range(1, st.series_tasks + 1)]
        A = st.A[:, : st.series_tasks]
        series = [curves[c] for c in ("plasticity", "stability", "min_acc", "wc_acc")]
        rows = st.kept_rows(lambda lo, hi: np.column_stack([A[lo:hi]] + [c[lo:hi] for c in series]),
                            A.shape[1] + len(series), points)
        df = pd.DataFrame(A[rows], columns=tasks)
        df.insert(0, "step", st.steps[rows])
        df["training task"] = curves["task"][rows]
        for name in ("plasticity", "stability", "min_acc", "wc_acc", "seen_acc"):
            df[name] = curves[name][rows]
        df["train_loss"] = st.loss[rows]
        st.results["series"] = (key, df)
        return df.copy()


def status_counts(source) -> dict[str, int]:
    return dict(_cur(source).execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())


def accuracy_matrices(source, run_ids: list[int]) -> dict[int, np.ndarray]:
    """``accuracy_matrix`` for many runs in one query."""
    cur = _cur(source)
    rows = cur.execute(
        """
        WITH ids AS (SELECT unnest($ids::INTEGER[]) AS run_id),
        ends AS (
            SELECT run_id, 0 AS row, 0 AS step FROM ids
            UNION ALL
            SELECT run_id, task, end_step FROM task_boundaries WHERE run_id IN (SELECT run_id FROM ids) AND end_step IS NOT NULL
        )
        SELECT m.run_id, e.row, m.task, m.value
        FROM metrics m JOIN ends e ON m.run_id = e.run_id AND m.step = e.step
        WHERE m.metric = 'boundary_acc'
        """,
        {"ids": list(run_ids)},
    ).fetchall()
    n_tasks: dict[int, int] = {}
    for run_id, _, task, _ in rows:
        n_tasks[run_id] = max(n_tasks.get(run_id, 0), task)
    out = {i: np.full((n_tasks.get(i, 0) + 1, n_tasks.get(i, 0)), np.nan) for i in run_ids}
    for run_id, row, task, value in rows:
        if row <= n_tasks[run_id]:
            out[run_id][row, task - 1] = value
    return out


# the longest search text, unless the caller passes the lab's limit (``max_search_chars`` in lab.toml)
MAX_SEARCH_CHARS = 200


def search_terms(text: str | None, most: int = MAX_SEARCH_CHARS) -> list[str]:
    """The words of a search text, lower-cased: a run matches when each is in its name, notes, tags,
    strategy or dataset. Refused (ValueError, one line) past ``most`` characters."""
    text = text or ""
    if len(text) > most:
        raise ValueError(f"search: {len(text)} characters, at most {most} are allowed")
    return text.lower().split()


def runs_table(source, statuses: list[str] | None = None, strategies: list[str] | None = None,
               search: str | None = None, max_search_chars: int = MAX_SEARCH_CHARS):
    """The runs page's table: one row a run, newest first, with its progress, tags and notes, its sweep
    as text ("" for none) and ``sweep_live`` (the queued or running runs of its sweep, 0 for none),
    and its ``config`` as JSON text. ``search``: words that must each appear (any case) in the run's
    name, notes, tags, strategy, dataset or owner (``search_terms``, at most ``max_search_chars``)."""
    cur = _cur(source)
    return cur.execute(
        """
        WITH live AS (
            SELECT sweep_id, count(*) FILTER (WHERE status IN ('queued', 'running')) AS n
            FROM runs WHERE sweep_id IS NOT NULL GROUP BY sweep_id
        ),
        r AS (
            SELECT *, config->'strategy'->>'name' AS strategy, config->'scenario'->>'dataset' AS dataset
            FROM runs
        )
        SELECT id, name, coalesce(tags, []) AS tags, coalesce(notes, '') AS notes, strategy, dataset,
               coalesce(owner, '') AS owner,
               concat(dataset, ' ', config->'scenario'->>'setting', '-IL, ',
                      config->'scenario'->>'n_tasks', ' tasks') AS scenario,
               status, coalesce(last_step, 0) / greatest(total_steps, 1) AS progress,
               created_at AS created, error, coalesce(CAST(r.sweep_id AS VARCHAR), '') AS sweep,
               coalesce(live.n, 0) AS sweep_live, coalesce(last_step, 0) AS last_step, CAST(config AS VARCHAR) AS config
        FROM r LEFT JOIN live USING (sweep_id)
        WHERE ($statuses IS NULL OR list_contains($statuses, status))
          AND ($strategies IS NULL OR list_contains($strategies, strategy))
          AND ($terms IS NULL OR list_bool_and(list_transform($terms, lambda term: contains(
                lower(concat_ws(chr(10), name, notes, array_to_string(tags, chr(10)), strategy, dataset, owner)), term))))
        ORDER BY id DESC
        """,
        {"statuses": statuses or None, "strategies": strategies or None, "terms": search_terms(search, max_search_chars) or None},
    ).df()
