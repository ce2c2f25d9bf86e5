"""Long runs between refreshes: each run's continual series kept in memory, per process.

A run page refreshes every second; a run evaluated every step for a million steps has 11 M metric
rows. Reading and recomputing them all at each refresh takes seconds, yet a finished run never
changes and a live one only gains steps at its end. ``RunState`` holds a run's series (the arrays
``store.metrics.loader.load_runs`` builds) and extends it with the rows of the steps since the last refresh.
What summarises a whole history (each task's minimum since its end, the windowed drops, the
continual curves, the chart's bucket extremes) is kept for the settled rows, every row but the last
evaluation; only the rows after them are computed at a refresh.

What makes it correct: each refresh reads, in one transaction (one snapshot), the number of the
run's metric rows, and the rows its series is made of (acc, boundary_acc, train_loss) from its last
evaluated step on (``open``). What it holds is reused only if

- it is the same run: the same file and id, the same ``created_at`` and ``started_at`` (resuming a
  run sets ``started_at`` anew; a deleted run has no row, and its state is dropped);
- the rows before ``open`` are all still there and no more came: their count is the one counted last
  time (a rewind deletes later metrics; a row arriving late for an earlier step adds one).

Otherwise the run is read afresh. What this does not see: rows deleted and as many written again
before ``open`` between two refreshes with no new ``started_at``. The lab's one deleter,
``Store.rewind_run``, is followed by the run being set running again (``RunManager``), which stamps
a new ``started_at``; a stronger check (the largest rowid before ``open``) costs a scan of the
run's rows, 60 ms at 11 M rows. A finished result (the summary, the chart rows) is served again as
long as the run's data version is unchanged: its ``runs`` row, its task boundaries and its number of
metric rows.
"""

from __future__ import annotations

from contextlib import contextmanager

import math
import threading
from collections import OrderedDict

import numpy as np

from store.metrics.continual import continual_curves, min_after, window_drops
from store.metrics.loader import RunData, accuracy_matrix, continual_series, run_config, task_count

MAX_VALUES = 40_000_000  # numbers held for all runs together (about 320 MB); least recently used dropped
LOCK = threading.RLock()  # sessions share the states: one refresh at a time
_STATES: OrderedDict[tuple, "RunState"] = OrderedDict()
_FIRST = -(2 ** 62)

# What a run's series is made of, coded as small numbers (strings would cost more than the rest).
ACC, BOUNDARY_ACC, TRAIN_LOSS, BOUNDARY_MASKED_ACC = 1, 2, 3, 4
_TAIL_SQL = """
SELECT step, CASE metric WHEN 'acc' THEN 1 WHEN 'boundary_acc' THEN 2 WHEN 'train_loss' THEN 3 ELSE 4 END::TINYINT
       AS metric, coalesce(task, 0)::SMALLINT AS task, coalesce(value, 'NaN'::DOUBLE) AS value
FROM metrics WHERE run_id = $run AND step >= $open
  AND metric IN ('acc', 'boundary_acc', 'train_loss', 'boundary_masked_acc')
"""


_IN_SNAPSHOT: set[int] = set()  # the cursors inside a ``read_snapshot``, by id


@contextmanager
def read_snapshot(cur):
    """Every query on ``cur`` inside sees one moment (DuckDB's transactions are snapshots). Nests: an
    inner one joins the outer (a failed BEGIN inside a transaction would abort it, so it is not tried)."""
    if id(cur) in _IN_SNAPSHOT:
        yield cur
        return
    cur.execute("BEGIN TRANSACTION")
    _IN_SNAPSHOT.add(id(cur))
    try:
        yield cur
    finally:
        _IN_SNAPSHOT.discard(id(cur))
        cur.execute("ROLLBACK")  # it only read


def _count(cur, run_id: int, since: int | None = None) -> int:
    if since is None:
        return cur.execute("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id]).fetchone()[0]
    return cur.execute("SELECT count(*) FROM metrics WHERE run_id = ? AND step >= ?", [run_id, since]).fetchone()[0]


def state(cur, run_id: int) -> "RunState | None":
    """The run's state, brought up to date; None if there is no such run. Hold ``LOCK``."""
    path = cur.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0]
    key = (path, int(run_id))
    st = _STATES.get(key) if path else None  # an in-memory database is not cached
    if st is None:
        st = RunState(int(run_id))
    if not st.refresh(cur):
        _STATES.pop(key, None)
        return None
    if path:
        _STATES[key] = st
        _STATES.move_to_end(key)
        total = sum(s.size() for s in _STATES.values())
        while len(_STATES) > 1 and total > MAX_VALUES:
            _, dropped = _STATES.popitem(last=False)
            total -= dropped.size()
    return st


def clear() -> None:
    with LOCK:
        _STATES.clear()


def _grow(buffer: np.ndarray, n: int) -> np.ndarray:
    if buffer.shape[0] >= n:
        return buffer
    # a quarter more each time: appends stay cheap on average, and a long run holds little spare
    out = np.zeros((max(n, buffer.shape[0] * 5 // 4, 1024), *buffer.shape[1:]), dtype=buffer.dtype)
    out[: buffer.shape[0]] = buffer
    return out


class RunState:
    def __init__(self, run_id: int):
        self.id = run_id
        self.identity = self.identity_run = None
        self.data_tasks = 0  # the highest task evaluated (T grows with it)
        self.version = None
        self.results: dict = {}  # name -> (key, value), served while the key is unchanged
        self._reset(0)

    def _reset(self, T: int) -> None:
        self.T = T
        self.version, self.results = None, {}
        self.open, self.below = _FIRST, 0  # rows at steps >= open are read again at each refresh
        self.n = self.settled = 0  # rows of the series; rows before ``settled`` are final
        self.series_tasks = 0  # the highest task with a row in the series (full_series' columns)
        self._steps = np.empty(0, dtype=np.int64)
        self._A = np.empty((0, T))
        self._loss = np.empty(0)
        self.boundary = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0))
        self.boundary_masked = self.boundary  # Mammoth's Task-IL evaluations (class-incremental runs)
        self.mins: dict = {}  # task -> [end, rows done, lowest, count]
        self.drops: dict = {}  # (w, increase, task) -> [start, rows done, largest, any pair]
        self.curves: dict | None = None  # computed for the first ``curves_done`` rows, under ``curves_spans``
        self.curves_done, self.curves_spans, self.curves_seed = 0, None, None
        self.memos: dict = {}  # results over settled rows only (ended switches, ended tasks' curves)
        self.buckets: dict = {}  # (points, W, columns) -> [first open bucket, kept rows before it]

    def size(self) -> int:
        return self._A.size + 10 * self._steps.size

    @property
    def steps(self) -> np.ndarray:
        return self._steps[: self.n]

    @property
    def A(self) -> np.ndarray:
        return self._A[: self.n]

    @property
    def loss(self) -> np.ndarray:
        return self._loss[: self.n]

    # ---- reading -------------------------------------------------------------------------------
    def refresh(self, cur) -> bool:
        with read_snapshot(cur):  # one snapshot for every query below
            return self._refresh(cur)

    def _refresh(self, cur) -> bool:
        result = cur.execute("SELECT * FROM runs WHERE id = ?", [self.id])
        names = [d[0] for d in result.description]
        row = result.fetchone()
        if row is None:
            return False
        run = dict(zip(names, row))
        spans = {int(t): (int(s), None if e is None else int(e)) for t, s, e in cur.execute(
            "SELECT task, start_step, end_step FROM task_boundaries WHERE run_id = ? ORDER BY task", [self.id]).fetchall()}
        cfg = run_config(run["config"])
        same = (cfg.get("eval") or {}).get("subset") is None
        if (run["created_at"], run["started_at"]) != self.identity_run:
            self.identity_run, self.data_tasks = (run["created_at"], run["started_at"]), 0
        total = _count(cur, self.id)
        for _ in range(3):  # a second pass reads the whole run; a third only with a task beyond T
            T = task_count(cfg, spans, np.array([self.data_tasks]))
            identity = (run["created_at"], run["started_at"], T, same)
            if identity != self.identity:
                self._reset(T)
                self.identity = identity
            if total - _count(cur, self.id, self.open) != self.below:  # rows before ``open`` came or went
                self.identity = None
                continue
            version = (tuple(run.values()), tuple(sorted(spans.items())), total)
            if version == self.version:
                return True
            rows = cur.execute(_TAIL_SQL, {"run": self.id, "open": self.open}).fetchnumpy()
            top = int(rows["task"][rows["metric"] != TRAIN_LOSS].max(initial=0))
            if top > T:
                self.data_tasks, self.identity = top, None
                continue
            break
        else:
            raise RuntimeError(f"run {self.id} changed while it was read")
        self.run, self.spans, self.config, self.same = run, spans, cfg, same
        self._extend({k: np.asarray(v) for k, v in rows.items()}, T)
        self.version = version
        self.below = total - _count(cur, self.id, self.open)
        self.R = accuracy_matrix(*self.boundary, spans, self.T)
        self.R_masked = accuracy_matrix(*self.boundary_masked, spans, self.T) if self.boundary_masked[0].size else None
        self._settle()
        return True

    def _extend(self, rows: dict, T: int) -> None:
        """Replace the rows from ``open`` on with those just read."""
        metric, step, task, value = rows["metric"], rows["step"], rows["task"].astype(np.int64), rows["value"]
        ok = task >= 1
        b = ok & (metric == BOUNDARY_ACC)
        a = ok & (metric == ACC)
        keep = self.boundary[0] < self.open
        self.boundary = tuple(np.concatenate([old[keep], new[b]]) for old, new in zip(self.boundary, (step, task, value)))
        bm = ok & (metric == BOUNDARY_MASKED_ACC)
        keep = self.boundary_masked[0] < self.open
        self.boundary_masked = tuple(np.concatenate([old[keep], new[bm]])
                                     for old, new in zip(self.boundary_masked, (step, task, value)))
        steps, A = continual_series(step[a], task[a], value[a], step[b], task[b], value[b], T, self.same)
        loss = np.full(steps.size, np.nan)
        lm = metric == TRAIN_LOSS
        if lm.any() and steps.size:
            ls, first = _firsts(step[lm])  # the first row of a step, as full_series
            at = np.searchsorted(steps, ls)
            found = (at < steps.size) & (steps[np.minimum(at, steps.size - 1)] == ls)
            loss[at[found]] = value[lm][first][found]
        i0 = int(np.searchsorted(self.steps, self.open, side="left"))
        n = i0 + steps.size
        self._steps, self._A, self._loss = _grow(self._steps, n), _grow(self._A, n), _grow(self._loss, n)
        self._steps[i0:n], self._A[i0:n], self._loss[i0:n] = steps, A, loss
        self.n = n
        if i0 < self.settled:  # not the case while only the last row is read again; to be safe
            self.mins, self.drops, self.buckets, self.memos, self.curves = {}, {}, {}, {}, None
        self.settled = min(self.settled, i0)
        if ok.any():
            self.series_tasks = max(self.series_tasks if i0 else 0, int(task[a | (b if self.same else False)].max(initial=0)))
        self.open = int(self.steps[-1]) if n else _FIRST

    def _settle(self) -> None:
        """Every row but the last is final: fold the rows up to it into what is kept."""
        target = max(0, self.n - 1)
        for i, s in self.mins.items():
            self._fold_min(i, s, target)
        for (w, increase, j), s in self.drops.items():
            self._fold_drop(j, w, increase, s, target)
        self.settled = target

    def data(self) -> RunData:
        run = self.run
        return RunData(self.id, run["name"], run["status"], self.config, self.T, self.R, self.steps, self.A,
                         self.spans, run["last_step"], self.R_masked)

    # ---- the continual metrics, kept for the settled rows ---------------------------------------
    def _fold_min(self, i: int, s: list, upto: int) -> None:
        if s[1] < upto:
            low, count = min_after(self.steps, self.A[:, i - 1], s[0], upto, lo=s[1])
            s[1:] = [upto, min(s[2], low), s[3] + count]

    def min_after(self, i: int, end: int) -> tuple[float, int]:
        """(lowest, count) of the measured accuracies of task i at the steps after ``end``."""
        s = self.mins.get(i)
        if s is None or s[0] != end:
            s = self.mins[i] = [end, 0, math.inf, 0]
        self._fold_min(i, s, self.settled)
        low, count = min_after(self.steps, self.A[:, i - 1], end, self.n, lo=self.settled)
        return min(s[2], low), s[3] + count

    def _drops(self, j: int, start: float, w: int, increase: bool, lo: int, hi: int) -> tuple[float, bool]:
        if hi <= lo:
            return -math.inf, False
        h = max(0, lo - (w - 1))  # the window before row lo
        V = self.A[h:hi, j - 1].copy()
        if not math.isnan(start):
            V[self.steps[h:hi] < start] = np.nan
        d = window_drops((-V if increase else V)[:, None], w, lo - h)[:, 0]
        ok = np.isfinite(d)
        return (float(d[ok].max()) if ok.any() else -math.inf), bool(ok.any())

    def _fold_drop(self, j: int, w: int, increase: bool, s: list, upto: int) -> None:
        if s[1] < upto:
            best, found = self._drops(j, s[0], w, increase, s[1], upto)
            s[1:] = [upto, max(s[2], best), s[3] or found]

    def largest_drop(self, j: int, start: float, w: int, increase: bool) -> tuple[float, bool]:
        """(the largest drop within w evaluations, whether task j has any pair), as windowed_per_task."""
        s = self.drops.get((w, increase, j))
        if s is None or not (s[0] == start or (math.isnan(s[0]) and math.isnan(start))):
            first = 0 if math.isnan(start) else int(np.searchsorted(self.steps, start, side="left"))
            s = self.drops[(w, increase, j)] = [start, min(first, self.settled), -math.inf, False]
        self._fold_drop(j, w, increase, s, self.settled)
        best, found = self._drops(j, start, w, increase, max(s[1], self.settled), self.n)
        return max(s[2], best), s[3] or found

    # ---- the run page's curves ------------------------------------------------------------------
    def memo(self, key, last_step: int, compute):
        """``compute()``, kept while the data lasts once every row up to ``last_step`` is settled."""
        if key in self.memos:
            return self.memos[key]
        value = compute()
        if self.settled < self.n and self.steps[self.settled] > last_step:
            self.memos[key] = value
        return value

    def curve_table(self) -> dict[str, np.ndarray]:
        """``continual_curves`` and ``seen_acc`` of every row, computed from the last settled row on."""
        spans = dict(self.spans)
        T = self.T
        if self.curves is None or self.curves_spans != spans:
            self.curves, self.curves_done, self.curves_spans = {}, 0, spans
            self.curves_seed = np.full(T, np.inf)  # each task's lowest after its end before row curves_done
            self.buckets = {}
        lo, n = self.curves_done, self.n
        chunk = continual_curves(self.steps[lo:n], self.A[lo:n], spans, seed_min=self.curves_seed)
        chunk["seen_acc"] = seen_acc(self.A[lo:n], chunk["task"])
        for name, values in chunk.items():
            if name == "step":
                continue
            buffer = _grow(self.curves.get(name, np.empty(0, dtype=values.dtype)), n)
            buffer[lo:n] = values
            self.curves[name] = buffer
        for j, (_, e) in spans.items():  # carry the seed on to the settled rows
            if e is not None and 1 <= j <= T:
                low, _ = min_after(self.steps, self.A[:, j - 1], e, self.settled, lo=lo)
                self.curves_seed[j - 1] = min(self.curves_seed[j - 1], low)
        self.curves_done = self.settled
        return {name: values[:n] for name, values in self.curves.items()}

    def kept_rows(self, columns, width_of: int, points: int) -> np.ndarray:
        """The rows the chart keeps: the first and the last (the newest evaluation), and each of
        ``width_of`` series (``columns(lo, hi)``: their rows lo..hi-1) keeps its first minimum and last
        maximum in every bucket of steps;
        buckets 2^i steps wide, as many as fit in ``points`` rows, so a settled bucket never changes
        until the width doubles."""
        n = self.n
        if n <= points:
            return np.arange(n)
        buckets = max(1, points // (2 * width_of))
        steps, first = self.steps, int(self.steps[0])
        width = 1
        while (int(steps[-1]) - first) // width + 1 > buckets:
            width *= 2
        key = (points, width, width_of)
        if key not in self.buckets:  # a wider bucket (the run grew): start again
            self.buckets = {key: [0, np.empty(0, dtype=np.int64)]}
        kept = self.buckets[key]
        open_bucket = (int(steps[self.settled]) - first) // width  # buckets before it are final
        if kept[0] < open_bucket:
            lo = int(np.searchsorted(steps, first + kept[0] * width, side="left"))
            hi = int(np.searchsorted(steps, first + open_bucket * width, side="left"))
            kept[1] = np.concatenate([kept[1], lo + bucket_extremes((steps[lo:hi] - first) // width, columns(lo, hi))])
            kept[0] = open_bucket
        lo = int(np.searchsorted(steps, first + open_bucket * width, side="left"))
        return np.unique(np.concatenate([kept[1], lo + bucket_extremes((steps[lo:] - first) // width, columns(lo, n)),
                                         [0, n - 1]]))


def _firsts(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(steps, return_index=True), without its sort when the steps come in order."""
    if steps.size > 1 and (steps[1:] < steps[:-1]).any():
        return np.unique(steps, return_index=True)
    first = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]]) if steps.size else np.zeros(0, dtype=np.int64)
    return steps[first], first


def seen_acc(A: np.ndarray, task: np.ndarray) -> np.ndarray:
    """ACC_t: the mean accuracy on the tasks trained so far (1..k(t)), NaN before training."""
    n_tasks = A.shape[1]
    seen = np.arange(1, n_tasks + 1)[None, :] <= np.nan_to_num(task, nan=0)[:, None]
    with np.errstate(invalid="ignore"):
        return np.where(seen.any(1), np.where(seen, A, 0).sum(1) / np.maximum(seen.sum(1), 1), np.nan)


def bucket_extremes(bucket: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row positions, sorted, of each column's first minimum and last maximum among its measured
    values in each bucket (``bucket`` non-decreasing)."""
    n = bucket.shape[0]
    if not n:
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, n]))
    keep = []
    for column in np.asarray(values, dtype=float).T:
        measured = np.isfinite(column)
        for lowest in (True, False):
            filled = np.where(measured, column, np.inf if lowest else -np.inf)
            extreme = (np.minimum if lowest else np.maximum).reduceat(filled, starts)
            rows = np.flatnonzero(measured & (column == extreme[group]))
            if not rows.size:
                continue
            g = group[rows]
            edge = np.r_[True, g[1:] != g[:-1]] if lowest else np.r_[g[1:] != g[:-1], True]
            keep.append(rows[edge])
    return np.unique(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64)
