"""Queries the pages, the CLI and the reports share. Each takes a cursor (or a Store)."""

from __future__ import annotations

import numpy as np


def _cur(source):
    return source.cursor() if hasattr(source, "cursor") and not hasattr(source, "fetchall") else source


def accuracy_matrix(source, run_id: int) -> np.ndarray:
    """R[i][j]: accuracy on task j after training task i (tasks from 1; row 0 before training), from
    the full evaluations at step 0 and at each task's end. Shape (T + 1, T); NaN where not measured
    (a task not yet ended, a run without the initial evaluation)."""
    cur = _cur(source)
    rows = cur.execute(
        """
        WITH ends AS (
            SELECT 0 AS row, 0 AS step
            UNION ALL
            SELECT task, end_step FROM task_boundaries WHERE run_id = $run AND end_step IS NOT NULL
        )
        SELECT e.row, m.task, m.value
        FROM metrics m JOIN ends e ON m.step = e.step
        WHERE m.run_id = $run AND m.metric = 'boundary_acc'
        """,
        {"run": run_id},
    ).fetchall()
    n_tasks = max((r[1] for r in rows), default=0)
    matrix = np.full((n_tasks + 1, n_tasks), np.nan)
    for row, task, value in rows:
        if row <= n_tasks:
            matrix[row, task - 1] = value
    return matrix


def run_row(source, run_id: int) -> dict | None:
    cur = _cur(source)
    result = cur.execute("SELECT * FROM runs WHERE id = ?", [run_id])
    names = [d[0] for d in result.description]
    row = result.fetchone()
    return dict(zip(names, row)) if row else None
