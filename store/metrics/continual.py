"""The metrics over the continual-evaluation series A(j, n) (De Lange et al., ICLR 2023): min-ACC,
WC-ACC, windowed forgetting and plasticity, and the same as curves over every evaluation step (the
stability gap is ``store.metrics.gap``). Pure functions over (steps, A, spans), and one registry entry
(``Metric``) each computing them over a run view."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from store.metrics.base import Spans, Value, average
from store.metrics.metric import Metric, MetricsView

WINDOWS = (10, 100)          # WF^w / WP^w windows, in evaluations (De Lange et al. report 10 and 100)


def series_from_pairs(per_task: Mapping[int, Sequence[tuple[int, float]]],
                      n_tasks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``{task: [(step, acc), ...]}`` -> (steps, A) with A[m, j-1] = acc of task j at steps[m]."""
    T = n_tasks or max(per_task, default=0)
    steps = np.array(sorted({s for pts in per_task.values() for s, _ in pts}), dtype=np.int64)
    A = np.full((steps.size, T), np.nan)
    for j, pts in per_task.items():
        for s, v in pts:
            A[np.searchsorted(steps, s), j - 1] = v
    return steps, A


def step_or_last(steps: np.ndarray, t: int | None) -> int | None:
    if t is not None:
        return int(t)
    return int(steps[-1]) if len(steps) else None


def current_task(spans: Spans, t: int) -> int | None:
    """The task being trained at step t: the one with start < t <= end (end None: still training);
    after the last end, the last task; None before any training."""
    inside = [j for j, (s, e) in spans.items() if s < t and (e is None or t <= e)]
    if inside:
        return max(inside)
    started = [j for j, (s, _) in spans.items() if s < t]
    return max(started) if started else None


def _task_starts(spans: Spans, T: int) -> np.ndarray:
    """Start step of each task 1..T: its own boundary, else that of the next boundary row above it
    (a Joint run in mode "all" has one row, task T, whose span covers every task). NaN if none."""
    starts = np.full(T, np.nan)
    for j in range(1, T + 1):
        above = [s for task, (s, _) in spans.items() if task >= j]
        if j in spans:
            starts[j - 1] = spans[j][0]
        elif above:
            starts[j - 1] = min(above)
    return starts


def _at(steps, A, t) -> tuple[int | None, str | None]:
    if A.shape[0] == 0:
        return None, "no continual evaluation recorded (no 'acc' rows; set eval.every)"
    m = int(np.searchsorted(steps, t, side="right")) - 1
    return (m, None) if m >= 0 else (None, f"no continual evaluation at or before step {t}")


def _where(steps, A, spans: Spans, t: int | None):
    """The common start of the metrics at a step t (default: the last evaluation): the arrays, t, the
    row m of the last evaluation at or before t, the task k trained at t; or the reason there is none."""
    steps, A = np.asarray(steps), np.asarray(A, dtype=float)
    t = step_or_last(steps, t)
    m, why = _at(steps, A, t if t is not None else 0)
    if why:
        return None, why
    k = current_task(spans, t)
    if k is None:
        return None, "training has not started at the last evaluation"
    return (steps, A, t, m, k), None


def min_acc_per_task(steps, A, spans: Spans, t: int | None = None, cache=None) -> tuple[dict | None, str | None]:
    """De Lange et al. 2023: for each earlier task i < k (k = task trained at t),
    min_{end_i < n <= t} A(i, n), the lowest it has fallen to since it was learned. ``cache``
    (``store.metrics.run_cache``, t the last evaluation only): the minima kept from the last refresh."""
    if cache is not None and t is not None:
        raise ValueError("the cache holds the minima up to the last evaluation only")
    where, why = _where(steps, A, spans, t)
    if where is None:
        return None, why
    steps, A, t, m, k = where
    if k < 2:
        return None, "no earlier task yet (task 1 is training)"
    out = {}
    for i in range(1, k):
        end = spans.get(i, (None, None))[1]
        if end is None:
            return None, f"task {i} has no end step of its own (trained jointly with later tasks)"
        if cache is not None:
            low, count = cache.min_after(i, end)
        else:
            low, count = min_after(steps, A[:, i - 1], end, m + 1)
        if count == 0:
            return None, f"no evaluation of task {i} after its end (step {end})"
        out[i] = low
    return out, None


def min_after(steps, column, end: int, stop: int, lo: int = 0) -> tuple[float, int]:
    """(the minimum, the number) of the measured values of ``column`` at rows lo..stop-1 whose step
    is after ``end`` (steps increase); (inf, 0) if none."""
    vals = column[max(lo, int(np.searchsorted(steps, end, side="right"))):stop]
    vals = vals[np.isfinite(vals)]
    return (float(vals.min()), int(vals.size)) if vals.size else (math.inf, 0)


def min_acc(steps, A, spans: Spans, t: int | None = None) -> Value:
    """min-ACC_t = 1/(k-1) sum_{i<k} min_{end_i < n <= t} A(i, n) (De Lange et al. 2023)."""
    return average(min_acc_per_task(steps, A, spans, t))


def wc_acc(steps, A, spans: Spans, t: int | None = None, min_acc_t: Value | None = None) -> Value:
    """WC-ACC_t = 1/k A(k, t) + (1 - 1/k) min-ACC_t (De Lange et al. 2023). For k = 1 the min-ACC term
    has weight 0, so WC-ACC = A(1, t). ``min_acc_t``: min-ACC at t if already computed."""
    where, why = _where(steps, A, spans, t)
    if where is None:
        return None, why
    steps, A, t, m, k = where
    if steps[m] != t or not math.isfinite(A[m, k - 1]):
        return None, f"no evaluation of the current task {k} at step {t}"
    cur = float(A[m, k - 1])
    if k == 1:
        return cur, None
    mn, why = min_acc(steps, A, spans, t) if min_acc_t is None else min_acc_t
    return (None, why) if mn is None else (cur / k + (1 - 1 / k) * mn, None)


def _sliding_max(P: np.ndarray, L: int) -> np.ndarray:
    """out[i] = max(P[i:i+L]) along axis 0, in O(n log L): maxima over doubling spans, then two
    overlapping spans of length p (the largest power of 2 <= L) cover each window."""
    M, p = P, 1
    while 2 * p <= L:
        M = np.maximum(M[:-p], M[p:])       # M[i] = max(P[i:i+2p])
        p *= 2
    n = P.shape[0] - L + 1
    return np.maximum(M[:n], M[L - p:L - p + n])


def window_drops(V: np.ndarray, w: int, lo: int = 0) -> np.ndarray:
    """For each row n >= lo of V (evaluations x tasks, NaN where not measured): the largest
    V[m] - V[n] over the measured m with n - w < m < n; NaN or -inf where there is no such pair.
    Rows before lo serve only as the window of the rows after them."""
    X = np.where(np.isnan(V), -np.inf, V)
    if X.shape[0] <= w:                     # every pair is inside the window: a running maximum
        prev = np.concatenate([np.full((1, X.shape[1]), -np.inf), np.maximum.accumulate(X, axis=0)[:-1]])
    else:                                   # the maximum of the w-1 evaluations before each one
        P = np.concatenate([np.full((w - 1, X.shape[1]), -np.inf), X])[:-1]
        prev = _sliding_max(P, w - 1)
    with np.errstate(invalid="ignore"):
        return prev[lo:] - V[lo:]


def windowed_per_task(steps, A, spans: Spans, w: int, t: int | None = None,
                      increase: bool = False, cache=None) -> tuple[dict | None, str | None]:
    """Per task j <= k (the tasks whose training has started by t): the largest drop
    max_{m<n, n-m<w} (A(j,m) - A(j,n)) (or, with ``increase``, the largest rise A(j,n) - A(j,m)) over
    its evaluation history from the start of its training (the evaluation at start_j, the model
    before training j, included) to t; m, n count evaluations. Floored at 0, as the reference code
    initialises the maximum to 0. A task with fewer than two evaluations has no pair and is left out.
    ``cache`` (``store.metrics.run_cache``, t the last evaluation only): the drops kept from the last refresh."""
    if w < 2:
        raise ValueError("the window must span at least 2 evaluations")
    if cache is not None and t is not None:
        raise ValueError("the cache holds the drops up to the last evaluation only")
    where, why = _where(steps, A, spans, t)
    if where is None:
        return None, why
    steps, A, t, m, k = where
    starts = _task_starts(spans, A.shape[1])[:k]
    if cache is not None:                   # the largest drops kept from the last refresh
        found = [cache.largest_drop(j + 1, starts[j], w, increase) for j in range(k)]
        best, ok = np.array([b for b, _ in found]), np.array([[a for _, a in found]])
    else:
        V = A[: m + 1, :k].copy()
        V[steps[: m + 1, None] < starts[None, :]] = np.nan
        drops = window_drops(-V if increase else V, w)
        ok = np.isfinite(drops)
        best = np.where(ok, drops, -np.inf).max(axis=0)
    out = {j + 1: max(0.0, float(best[j])) for j in range(k) if ok[:, j].any()}
    if not out:
        return None, "fewer than two evaluations of any trained task"
    return out, None


def windowed_forgetting(steps, A, spans: Spans, w: int, t: int | None = None) -> Value:
    """WF^w (De Lange et al. 2023): the mean over tasks of the largest accuracy drop within w
    evaluations (see ``windowed_per_task``)."""
    return average(windowed_per_task(steps, A, spans, w, t))


def windowed_plasticity(steps, A, spans: Spans, w: int, t: int | None = None) -> Value:
    """WP^w (De Lange et al. 2023): the same with the largest increase A(j,n) - A(j,m)."""
    return average(windowed_per_task(steps, A, spans, w, t, increase=True))


# The continual series of a run in SQL: the ``acc`` rows, plus the boundary evaluations (step 0, task
# ends) where no periodic one has that step when both use the same samples (``eval.subset`` null):
# the same series ``load_runs`` builds for the scalar metrics above.
CONTINUAL_SERIES_SQL = """
full_eval AS (SELECT (config->'eval'->>'subset') IS NULL AS same FROM runs WHERE id = $run),
periodic AS (SELECT step, task, value FROM metrics WHERE run_id = $run AND metric = 'acc'),
e AS (
    SELECT * FROM periodic
    UNION ALL
    SELECT step, task, value FROM metrics
    WHERE run_id = $run AND metric = 'boundary_acc' AND (SELECT same FROM full_eval)
      AND step NOT IN (SELECT step FROM periodic)
)"""


def continual_curves(steps, A, spans: Spans, seed_min=None) -> dict[str, np.ndarray]:
    """The continual-evaluation metrics as curves over every evaluation step t, k(t) the task being
    trained at t (``current_task``; NaN before training), vectorised (De Lange et al., ICLR 2023):

    - plasticity A(k, t), the accuracy on the task being learned;
    - stability, the mean of A(i, t) over the earlier tasks i < k;
    - min_acc, min-ACC_t exactly as ``min_acc`` defines it, at every t;
    - wc_acc, WC-ACC_t exactly as ``wc_acc`` defines it (A(1, t) while k = 1).

    NaN where a value is not defined (no earlier task yet, a task without an end of its own).
    Tests pin every point against ``min_acc`` and ``wc_acc``. ``seed_min`` (T,): the lowest accuracy
    of each task after its end in the rows before these (inf where none), when the curves of a
    series are computed a piece at a time (``store.metrics.run_cache``)."""
    steps, A = np.asarray(steps), np.asarray(A, dtype=float)
    n, T = A.shape
    k = np.full(n, np.nan)
    if spans:
        last = max(spans)
        k[steps > spans[last][0]] = last  # after the last end: the last task
        for j in sorted(spans):  # inside a span: that task (the later one where spans touch)
            s, e = spans[j]
            k[(steps > s) & (steps <= (np.inf if e is None else e))] = j
    running_min = np.full((n, T), np.nan)
    for j, (_, e) in spans.items():
        if e is None or not 1 <= j <= T:
            continue
        after = steps > e
        column = np.where(after & np.isfinite(A[:, j - 1]), A[:, j - 1], np.inf)
        lowest = np.minimum.accumulate(column)
        if seed_min is not None:
            lowest = np.minimum(lowest, seed_min[j - 1])
        running_min[:, j - 1] = np.where(after, lowest, np.nan)
    running_min[np.isinf(running_min)] = np.nan
    rows = np.arange(n)
    trained = np.isfinite(k)
    kk = np.where(trained, k, 1).astype(int)
    earlier = np.arange(1, T + 1)[None, :] < kk[:, None]  # task i < k(t)
    plasticity = np.where(trained, A[rows, np.clip(kk - 1, 0, T - 1)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        count = earlier.sum(1)
        stability = np.where(count > 0, np.where(earlier, A, 0).sum(1) / np.maximum(count, 1), np.nan)
        complete = ~(earlier & np.isnan(running_min)).any(1)  # every earlier task has its minimum
        min_acc_t = np.where((count > 0) & complete, np.where(earlier, running_min, 0).sum(1) / np.maximum(count, 1), np.nan)
        wc = np.where(kk == 1, plasticity, plasticity / kk + (1 - 1 / kk) * min_acc_t)
    return {"step": steps, "task": k, "plasticity": plasticity, "stability": stability,
            "min_acc": min_acc_t, "wc_acc": np.where(trained, wc, np.nan)}


# ---- the registry entries ------------------------------------------------------------------------

def _min_acc(v: MetricsView):
    return v.shared("min_acc", lambda: min_acc_per_task(v.steps, v.A, v.spans, cache=v.cache))


def _windowed(v: MetricsView, w: int, increase: bool = False):
    return v.shared(f"windowed {w} {increase}",
                    lambda: windowed_per_task(v.steps, v.A, v.spans, w, increase=increase, cache=v.cache))


MIN_ACC = Metric(
    "min_acc", "Average minimum accuracy (min-ACC)",
    r"\min\text{-}\mathrm{ACC}_t = \frac{1}{k-1}\sum_{i=1}^{k-1}\min_{\mathrm{end}_i < n \le t} A(i, n)",
    "De Lange, van de Ven & Tuytelaars, ICLR 2023", True,
    "Worst-case stability: the lowest each earlier task fell to, exposing the stability gap.",
    "continual", "continual evaluation (acc rows)",
    compute=lambda v: average(_min_acc(v)), per_task=lambda v: _min_acc(v)[0], compare_table=True,
    figure="min-ACC", figure_at=4)

WC_ACC = Metric(
    "wc_acc", "Worst-case accuracy (WC-ACC)",
    r"\mathrm{WC\text{-}ACC}_t = \frac{1}{k}A(k, t) + \Big(1 - \frac{1}{k}\Big)\min\text{-}\mathrm{ACC}_t",
    "De Lange, van de Ven & Tuytelaars, ICLR 2023", True,
    "Trade-off: current task accuracy with the worst case of earlier tasks.",
    "continual", "continual evaluation (acc rows)",
    compute=lambda v: wc_acc(v.steps, v.A, v.spans, min_acc_t=average(_min_acc(v))),
    compare_table=True, figure="WC-ACC", figure_at=5)

WF = {w: Metric(
    f"wf{w}", f"Windowed forgetting WF^{w}",
    r"\mathrm{WF}^{" + str(w) + r"} = \frac{1}{k}\sum_{j=1}^{k}\max\Big(0, \max_{m<n,\ n-m<" + str(w)
      + r"} A(j,m) - A(j,n)\Big)",
    "De Lange, van de Ven & Tuytelaars, ICLR 2023", False,
    f"Stability: the largest drop of a task within {w} evaluations (transient forgetting).",
    "continual", "continual evaluation (acc rows)",
    compute=lambda v, w=w: average(_windowed(v, w)), per_task=lambda v, w=w: _windowed(v, w)[0],
    costly=f"windowed {w}", compare_table=w == 10) for w in WINDOWS}

WP = {w: Metric(
    f"wp{w}", f"Windowed plasticity WP^{w}",
    r"\mathrm{WP}^{" + str(w) + r"} = \frac{1}{k}\sum_{j=1}^{k}\max\Big(0, \max_{m<n,\ n-m<" + str(w)
      + r"} A(j,n) - A(j,m)\Big)",
    "De Lange, van de Ven & Tuytelaars, ICLR 2023", True,
    f"Plasticity: the largest gain of a task within {w} evaluations.",
    "continual", "continual evaluation (acc rows)",
    compute=lambda v, w=w: average(_windowed(v, w, increase=True)),
    per_task=lambda v, w=w: _windowed(v, w, increase=True)[0], costly=f"windowed {w}") for w in WINDOWS}
