"""Loading runs set-based: their accuracy matrices, continual series and spans from the stored rows
(``store.metrics.run_cache`` builds the same from the rows it holds, with the same functions)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from store.metrics.base import Spans


@dataclass
class RunData:
    id: int
    name: str
    status: str
    config: dict
    n_tasks: int
    R: np.ndarray            # (T+1) x T
    steps: np.ndarray        # (n,)
    A: np.ndarray            # (n, T)
    spans: dict[int, tuple[int, int | None]]
    last_step: int | None
    R_masked: np.ndarray | None = None  # (T+1) x T from boundary_masked_acc rows; None: none recorded


IDS = "SELECT unnest(?::INTEGER[])"


def cursor_of(obj) -> tuple:
    """(a cursor, whether the caller closes it) of a DuckDB connection or a Store."""
    if isinstance(obj, duckdb.DuckDBPyConnection):
        return obj, False
    return obj.cursor(), True


def load_runs(cur, ids: Sequence[int], meta: Mapping[int, tuple]) -> dict[int, RunData]:
    """Accuracy matrices, continual series and spans of many runs: set-based queries. ``meta``: {id:
    (name, status, config, last_step)} (``store.metrics.references.runs_and_references``)."""
    ids = sorted({int(i) for i in ids})
    spans: dict[int, dict[int, tuple[int, int | None]]] = {i: {} for i in ids}
    for rid, task, s, e in cur.execute(
            f"SELECT run_id, task, start_step, end_step FROM task_boundaries WHERE run_id IN ({IDS})",
            [ids]).fetchall():
        spans[rid][int(task)] = (int(s), None if e is None else int(e))
    d = cur.execute(
        f"""SELECT run_id, metric = 'acc' AS cont, step, task, coalesce(value, 'NaN'::DOUBLE) AS value
            FROM metrics WHERE metric IN ('acc', 'boundary_acc') AND task IS NOT NULL
              AND run_id IN ({IDS})
            ORDER BY run_id, cont, step, task""", [ids]).fetchnumpy()
    masked: dict[int, list[tuple]] = {}  # run -> [(step, task, value)] of its boundary_masked_acc rows
    for rid, s, t, v in cur.execute(
            f"""SELECT run_id, step, task, coalesce(value, 'NaN'::DOUBLE) FROM metrics
                WHERE metric = 'boundary_masked_acc' AND task IS NOT NULL AND run_id IN ({IDS})""",
            [ids]).fetchall():
        masked.setdefault(rid, []).append((s, t, v))
    rid_a = np.asarray(d["run_id"])
    uniq, first = np.unique(rid_a, return_index=True)
    bounds = dict(zip(uniq.tolist(), zip(first.tolist(), [*first[1:].tolist(), rid_a.size])))
    out = {}
    for rid in ids:
        name, status, cfg, last_step = meta[rid]
        lo, hi = bounds.get(rid, (0, 0))
        cont, step = d["cont"][lo:hi], d["step"][lo:hi]
        task, val = d["task"][lo:hi].astype(np.int64), d["value"][lo:hi]
        sp = spans[rid]
        T = task_count(cfg, sp, task)
        ok = (task >= 1) & (task <= T)
        nb = int(np.searchsorted(cont, True))            # boundary rows first (cont False)
        bs, bt, bv = step[:nb][ok[:nb]], task[:nb][ok[:nb]], val[:nb][ok[:nb]]
        steps, A = continual_series(step[nb:][ok[nb:]], task[nb:][ok[nb:]], val[nb:][ok[nb:]], bs, bt, bv, T,
                                    (cfg.get("eval") or {}).get("subset") is None)
        rows = masked.get(rid)
        out[rid] = RunData(rid, name, status, cfg, T, accuracy_matrix(bs, bt, bv, sp, T), steps, A, sp, last_step,
                           accuracy_matrix(*(np.asarray(c) for c in zip(*rows)), sp, T) if rows else None)
    return out


def accuracy_matrix(steps, tasks, values, spans: Spans, T: int) -> np.ndarray:
    """The accuracy matrix R (T+1) x T from a run's boundary rows (step, task, value): row 0 from
    step 0, row i from the end step of task i; tasks outside 1..T left out, NaN where not measured.
    The one builder: of the boundary_acc rows and of the task-masked boundary_masked_acc rows."""
    steps, tasks, values = np.asarray(steps), np.asarray(tasks), np.asarray(values)
    ok = (tasks >= 1) & (tasks <= T)
    steps, tasks, values = steps[ok], tasks[ok].astype(np.int64), values[ok]
    R = np.full((T + 1, T), np.nan)
    for r, e in [(0, 0)] + [(j, e) for j, (_, e) in spans.items() if e is not None]:
        sel = steps == e
        R[r, tasks[sel] - 1] = values[sel]
    return R


def continual_series(cs, ct, cv, bs, bt, bv, T: int, same_samples: bool) -> tuple[np.ndarray, np.ndarray]:
    """(steps, A) from acc rows (cs, ct, cv) and boundary_acc rows (bs, bt, bv), tasks in 1..T.
    With ``same_samples`` (eval.subset null: periodic and boundary evaluations use the same samples)
    the boundary ones (step 0, task ends) join the series where no periodic evaluation has that step."""
    if cs.size > 1 and (cs[1:] < cs[:-1]).any():  # rows come in step order as a rule: no sort then
        order = np.argsort(cs, kind="stable")
        cs, ct, cv = cs[order], ct[order], cv[order]
    first = np.r_[True, cs[1:] != cs[:-1]] if cs.size else np.zeros(0, dtype=bool)
    periodic = cs[first]
    extra = np.zeros(bs.size, dtype=bool)
    if same_samples:  # the boundary rows at steps without a periodic evaluation
        at = np.minimum(np.searchsorted(periodic, bs), max(periodic.size - 1, 0))
        extra = ~(periodic[at] == bs) if periodic.size else ~extra
    bs, bt, bv = bs[extra], bt[extra], bv[extra]
    only = np.unique(bs)  # boundary-only steps: none of them is periodic
    steps = np.insert(periodic, np.searchsorted(periodic, only), only) if only.size else periodic
    A = np.full((steps.size, T), np.nan)
    # a periodic row's place: the periodic steps up to it, plus the boundary-only steps before it
    A[np.cumsum(first) - 1 + np.searchsorted(only, cs), ct - 1] = cv
    A[np.searchsorted(steps, bs), bt - 1] = bv
    return steps, A


def run_config(cfg) -> dict:
    """A run's config as a dict whose scenario, strategy and eval sections are dicts (tolerating odd
    configs: a user's own runs)."""
    cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
    cfg = cfg if isinstance(cfg, dict) else {}
    for section in ("scenario", "strategy", "eval"):
        if not isinstance(cfg.get(section), dict):
            cfg = {**cfg, section: {}}
    return cfg


def task_count(cfg: dict, spans: Spans, tasks) -> int:
    """T: the config's n_tasks, or more where the boundaries or the evaluated tasks say so."""
    T = int((cfg.get("scenario") or {}).get("n_tasks") or 0)
    return max(T, max(spans, default=0), int(tasks.max()) if tasks.size else 0)

