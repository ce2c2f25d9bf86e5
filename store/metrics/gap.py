"""The stability gap (De Lange et al., ICLR 2023): at each task switch, how far the earlier tasks fall
and how long they take to climb back, from the continual-evaluation series. Pure functions over
(steps, A, spans), and the registry entries computing them over a run view."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from store.metrics.base import DEFAULT_TOLERANCE, Spans, Value, mean
from store.metrics.continual import continual_curves, step_or_last
from store.metrics.metric import Metric, MetricsView


def stability_gaps(steps, A, spans: Spans, tolerance: float = DEFAULT_TOLERANCE,
                   t: int | None = None, cache=None) -> list[dict]:
    """Per task switch s = start_k (k >= 2) and per earlier task i < k:

    - before = A(i, n_s), the last evaluation at or before the switch;
    - min, min_step over the evaluations in (s, min(end_k, t)] (task k's span, so far if training);
    - depth = max(0, before - min): the drop, as De Lange et al. (2023) define the gap. When the task
      never fell below ``before`` (it held or improved) depth is 0 and ``reason`` says "no dip": a
      rise is not a negative gap, and must not offset another task's dip in the means;
    - recovery_steps = (first evaluation step >= min_step with A(i, n) >= before - tolerance) - s,
      0 if the accuracy never left the band; None with ``reason`` if not back within the span.

    Each record: {switch_step, from_task, to_task, depth (mean over old tasks), recovery_steps (mean,
    None unless all recovered), tasks: [{task, before, min, min_step, depth, recovered_step,
    recovery_steps, reason}], reason}. ``cache`` (``store.metrics.run_cache``): the records of the switches
    whose task has ended, kept from the last refresh."""
    steps, A = np.asarray(steps), np.asarray(A, dtype=float)
    t = step_or_last(steps, t)
    records: list[dict] = []
    if t is None:
        return records
    for k in sorted(spans):
        if k < 2 or (k - 1) not in spans or spans[k - 1][1] is None:
            continue
        s, end_k = spans[k]
        if s >= t:
            continue
        if cache is not None and end_k is not None and end_k <= t:  # final once task k has ended
            records.append(cache.memo(("gap", k, s, end_k, tolerance), end_k,
                                      lambda: _switch_gap(steps, A, k, s, end_k, t, tolerance)))
        else:
            records.append(_switch_gap(steps, A, k, s, end_k, t, tolerance))
    return records


def _switch_gap(steps, A, k: int, s: int, end_k: int | None, t: int, tolerance: float) -> dict:
    """The record of ``stability_gaps`` for the switch to task k at step s."""
    hi = t if end_k is None else min(end_k, t)
    rec: dict[str, Any] = {"switch_step": int(s), "from_task": k - 1, "to_task": k,
                           "depth": None, "recovery_steps": None, "tasks": [], "reason": None}
    lo, up = int(np.searchsorted(steps, s, side="right")), int(np.searchsorted(steps, hi, side="right"))
    pre = lo - 1  # the last evaluation at or before the switch
    if pre < 0:
        rec["reason"] = f"no evaluation at or before the switch (step {s})"
        return rec
    if up == lo:
        rec["reason"] = f"no evaluation after the switch (step {s}) yet"
        return rec
    still = end_k is None or t < end_k
    for i in range(1, k):
        before = A[pre, i - 1]
        vals = A[lo:up, i - 1]                   # the evaluations in (s, hi]: steps increase
        ok = np.isfinite(vals)
        item: dict[str, Any] = {"task": i, "before": None, "min": None, "min_step": None,
                                "depth": None, "recovered_step": None, "recovery_steps": None,
                                "reason": None}
        rec["tasks"].append(item)
        if not math.isfinite(before) or not ok.any():
            item["reason"] = f"task {i} not evaluated around the switch"
            continue
        v = np.where(ok, vals, np.inf)
        a = int(v.argmin())                       # first minimum (ties: earliest)
        thr = before - tolerance
        item.update(before=float(before), min=float(v[a]), min_step=int(steps[lo + a]),
                    depth=max(0.0, float(before - v[a])))
        if v[a] >= before:
            item.update(recovered_step=int(s), recovery_steps=0,
                        reason=f"no dip: never below {before:.3f}, its accuracy at the switch")
            continue
        if v[a] >= thr:
            item.update(recovered_step=int(s), recovery_steps=0)
            continue
        back = np.flatnonzero(ok[a:] & (vals[a:] >= thr))
        if back.size:
            n = int(steps[lo + a + back[0]])
            item.update(recovered_step=n, recovery_steps=n - int(s))
        else:
            item["reason"] = (f"task {i} not back within {tolerance:g} of {before:.3f} by step "
                              f"{int(steps[up - 1])}" + (f" (task {k} still training)" if still
                                                          else f" (end of task {k})"))
    depths = [x["depth"] for x in rec["tasks"] if x["depth"] is not None]
    rec["depth"] = mean(depths) if depths else None
    recs = [x["recovery_steps"] for x in rec["tasks"]]
    if recs and all(r is not None for r in recs):
        rec["recovery_steps"] = mean(recs)
    elif not depths:
        rec["reason"] = "no earlier task evaluated around the switch"
    else:
        rec["reason"] = f"{sum(r is None for r in recs)} of {len(recs)} earlier tasks not recovered"
    return rec


def switch_dips(steps, A, spans: Spans, early: float = 0.25) -> list[dict]:
    """The stability gap of the earlier tasks taken together, one record a task switch (to task k >= 2):
    ``before``, the mean accuracy of tasks 1..k-1 at the switch; ``lowest``, its minimum over the first
    ``early`` share of task k's steps; ``end``, its value when task k ends; ``fall`` = before - lowest;
    ``recovered`` = (end - lowest) / fall, the share of the fall won back (None without a fall).
    The demo's workload is chosen so that the falls average at least 0.10 and half is recovered."""
    curves = continual_curves(steps, A, spans)
    st, old = curves["step"], curves["stability"]
    out = []
    for k in sorted(spans):
        s, e = spans[k]
        if k < 2 or e is None:
            continue
        at_or_before = np.flatnonzero((st <= s) & np.isfinite(A[:, :k - 1]).all(1))
        window = (st > s) & (st <= s + max(1, math.ceil(early * (e - s))))
        at_end = np.flatnonzero(st == e)
        if not at_or_before.size or not window.any() or not at_end.size:
            continue
        before = float(np.nanmean(A[at_or_before[-1], :k - 1]))
        lowest, end = float(np.nanmin(old[window])), float(old[at_end[0]])
        fall = before - lowest
        out.append({"to_task": k, "switch_step": int(s), "before": before, "lowest": lowest, "end": end,
                    "fall": fall, "recovered": (end - lowest) / fall if fall > 0 else None})
    return out


def stability_gap(records: Sequence[dict]) -> Value:
    """Mean gap depth over every (switch, earlier task) pair of ``stability_gaps``."""
    depths = [x["depth"] for r in records for x in r["tasks"] if x["depth"] is not None]
    if not depths:
        return None, ("no task switch with continual evaluation around it" if not records
                      else "; ".join(r["reason"] or "" for r in records))
    return mean(depths), None


def recovery_time(records: Sequence[dict]) -> Value:
    """Mean recovery_steps over every (switch, earlier task) pair of ``stability_gaps``; None (with the
    count) when any pair did not recover, since a mean over the recovered ones would flatter."""
    items = [x for r in records for x in r["tasks"] if x["depth"] is not None]
    if not items:
        return None, stability_gap(records)[1]
    bad = [x for x in items if x["recovery_steps"] is None]
    if bad:
        return None, f"{len(bad)} of {len(items)} (switch, task) pairs never recovered: {bad[0]['reason']}"
    return mean([x["recovery_steps"] for x in items]), None


# ---- the registry entries ------------------------------------------------------------------------

def switch_gaps(v: MetricsView) -> list[dict]:
    """The run's ``stability_gaps`` records (what the Run page and reports draw), computed once."""
    return v.shared("stability_gaps", lambda: stability_gaps(v.steps, v.A, v.spans, v.tolerance, cache=v.cache))


STABILITY_GAP = Metric(
    "stability_gap", "Stability gap depth",
    r"\mathrm{gap}_{s,i} = \max\Big(0, A(i, n_s) - \min_{s < n \le \mathrm{end}_{k}} A(i, n)\Big)",
    "De Lange, van de Ven & Tuytelaars, ICLR 2023 (per-switch figure, CL Lab)", False,
    "Stability right after a task switch: the transient drop of earlier tasks. 0 (\"no dip\") where "
    "an earlier task never fell below its accuracy at the switch: a gap is a drop, so a rise counts "
    "as none and never offsets another task's dip in the mean.",
    "continual", "continual evaluation around a task switch",
    compute=lambda v: stability_gap(switch_gaps(v)), costly="stability gaps",
    compare_table=True)

RECOVERY_STEPS = Metric(
    "recovery_steps", "Stability gap recovery time",
    r"\rho_{s,i} = \min\{n \ge n^{\min}_{s,i} : A(i,n) \ge A(i,n_s) - \tau\} - s",
    "De Lange, van de Ven & Tuytelaars, ICLR 2023 (per-switch figure, CL Lab)", False,
    "How many steps earlier tasks take to climb back after a switch.",
    "continual", "continual evaluation around a task switch",
    compute=lambda v: recovery_time(switch_gaps(v)), costly="stability gaps")
