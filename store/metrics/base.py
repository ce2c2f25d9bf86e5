"""What every metric family shares: the ``(value, reason)`` convention and the accuracy-matrix helpers.

Data model (what the loader builds; tests build the same by hand):

- ``R``, the accuracy matrix: a ``(T+1) x T`` float array, ``R[i, j-1]`` = accuracy on task ``j``
  after training task ``i`` (row 0 = before training, ``b``), NaN where not measured. Built from the
  ``boundary_acc`` rows at step 0 and at each task's ``end_step``. In docstrings ``R[i][j]`` uses
  1-based task numbers.
- the continual-evaluation series: ``steps`` (n,) increasing global steps and ``A`` (n, T) with
  ``A[m, j-1]`` = accuracy ``A(j, steps[m])`` (metric ``acc``), NaN where missing.
  ``series_from_pairs`` builds both from per-task ``[(step, acc), ...]`` lists. The store's series
  is the ``acc`` rows plus, when ``eval.subset`` is null (the periodic and the boundary evaluations
  then use the same samples), the ``boundary_acc`` rows at step 0 and at task ends, so that the level
  just before a task switch is measured at the switch itself.
- ``spans``: ``{task: (start_step, end_step or None)}`` from ``task_boundaries``; task i trained over
  ``(start_i, end_i]``, ``end`` None while training.

Conventions (where the published definitions leave room):

- Every function returns ``(value, reason)``: ``value`` None exactly when the metric cannot be
  computed and ``reason`` says why. Nothing unavailable is ever reported as 0.
- A run still running (or stopped early) is summarised over what it has done: boundary metrics use
  ``k`` = the last task with an end-of-task evaluation, i.e. the formula with ``T := k`` (ACC averages
  R[k][j] over j <= k, BWT over i < k, FWT over i = 2..k, ...). Continual-evaluation metrics are
  taken at ``t`` = the last evaluated step, with ``k`` = the task being trained at ``t``.
- A matrix metric needs every cell its formula reads; a missing cell (e.g. no step-0 evaluation, or a
  Joint run in mode "all" with rows 0 and T only) makes it unavailable, naming the cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

Value = tuple[float | None, str | None]
Spans = Mapping[int, tuple[int, int | None]]

DEFAULT_TOLERANCE = 0.05     # stability-gap recovery: back within 0.05 absolute accuracy


def padded(R) -> tuple[np.ndarray, int]:
    """R as a (T+1) x (T+1) array M with M[i, j] = R[i][j] for 1-based j (column 0 unused)."""
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] + 1:
        raise ValueError(f"the accuracy matrix must be (T+1) x T, got {R.shape}")
    T = R.shape[1]
    M = np.full((T + 1, T + 1), np.nan)
    M[:, 1:] = R
    return M, T


def tasks_done(R) -> int:
    """The last row i >= 1 of R with a measurement: the tasks finished so far (0 if none)."""
    R = np.asarray(R, dtype=float)
    rows = np.flatnonzero(np.isfinite(R[1:]).any(axis=1))
    return int(rows[-1]) + 1 if rows.size else 0


def setup_matrix(R, k: int | None, at_least: int = 1) -> tuple[np.ndarray, int, str | None]:
    M, T = padded(R)
    k = tasks_done(R) if k is None else int(k)
    if k > T:
        raise ValueError(f"k={k} > T={T}")
    if k < at_least:
        if k == 0:
            return M, k, "no task finished yet (no evaluation at the end of a task)"
        return M, k, f"needs at least {at_least} finished tasks (this run has {k})"
    return M, k, None


def missing_cells(M: np.ndarray, cells: Iterable[tuple[int, int]], what: str = "accuracy matrix") -> str | None:
    """None if every cell is measured, else a reason naming the missing cells and why."""
    missing = [(i, j) for i, j in cells if not math.isfinite(M[i, j])]
    if not missing:
        return None
    rows = sorted({i for i, _ in missing})
    why = "; ".join("no evaluation before training (step 0)" if i == 0
                    else f"no full evaluation at the end of task {i}" for i in rows)
    shown = ", ".join(f"R[{i}][{j}]" for i, j in missing[:6]) + (", ..." if len(missing) > 6 else "")
    return f"{what} lacks {shown} ({why})"


def average(res: tuple) -> Value:
    """The mean of a per-task result (array or {task: value}), keeping its reason."""
    per, why = res
    if per is None:
        return None, why
    vals = list(per.values()) if isinstance(per, dict) else per
    return mean(vals), None


def mean(xs) -> float:
    if isinstance(xs, np.ndarray):
        return float(xs.mean())
    xs = list(xs)
    return float(sum(xs)) / len(xs)



def finite(x):
    """x as a float, None where it is missing or not finite (a summary holds no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def listed(res: tuple) -> list | None:
    """A per-task result (array) as a JSON-able list, None where it is unavailable."""
    return None if res[0] is None else [finite(x) for x in res[0]]
