"""The sentences a report opens with, computed from the numbers (never written by hand): the outcome,
the deepest stability gap, the switch it came at and how long the earlier tasks took to recover, and,
for a comparison, which group leads on which metric and the frontier (a sweep's own, as a reality check's, come
with its outcome: engine/sweeps)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd


def _ok(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def run_findings(result: Mapping[str, Any]) -> list[str]:
    """From ``store.metrics.summary``: the outcome on the accuracy matrix, the stability gaps (deepest
    pair, deepest switch, recovery time) and what the worst case adds to the final figures."""
    T, done, status = result["n_tasks"], result["tasks_done"], result["status"]
    why = result.get("unavailable", {})
    if result.get("eval_step") is None:
        return [f"The run ({status}) has no evaluation yet: there is nothing to report."]
    out = []
    acc = result.get("acc")
    if _ok(acc):
        where = (f"over its {T} tasks" if not result.get("partial")
                 else f"so far: the run is {status} and {done} of its {T} task(s) ended")
        line = f"Average accuracy (ACC) {acc:.3f} {where}"
        extras = [f"backward transfer (BWT) {result['bwt']:+.3f}" if _ok(result.get("bwt")) else "",
                  f"average forgetting {result['forgetting']:.3f}" if _ok(result.get("forgetting")) else ""]
        extras = [e for e in extras if e]
        out.append(line + ("; " + ", ".join(extras) if extras else "") + ".")
    else:
        out.append(f"No accuracy-matrix figure: {why.get('acc', 'no task has ended yet')}.")
    out += gap_findings(result)
    min_acc, wc = result.get("min_acc"), result.get("wc_acc")
    if _ok(min_acc) and _ok(acc) and min_acc < acc - 0.005:
        out.append(f"min-ACC {min_acc:.3f} is {acc - min_acc:.3f} below ACC: during training the earlier tasks fell "
                   f"lower than the final accuracy shows" + (f" (WC-ACC {wc:.3f})." if _ok(wc) else "."))
    return out


def gap_findings(result: Mapping[str, Any]) -> list[str]:
    records = result.get("stability_gaps") or []
    tol = result.get("tolerance", 0.05)
    pairs = [(r, x) for r in records for x in r["tasks"] if x["depth"] is not None]
    if result["n_tasks"] < 2:
        return ["With one task there is no task switch, hence no stability gap."]
    if not records:
        return ["No task switch with continual evaluation around it yet: no stability gap to measure."]
    if not pairs:
        return [f"No earlier task was evaluated around the switches ({records[0]['reason']}): no stability gap "
                "to measure."]
    worst_rec, worst = max(pairs, key=lambda p: p[1]["depth"])
    n = len(records)
    if worst["depth"] <= 0:
        return [f"No stability gap: at none of the {n} task switch(es) did an earlier task fall below its "
                "accuracy at the switch."]
    s = worst_rec["switch_step"]
    line = (f"The deepest stability gap came at the switch to task {worst_rec['to_task']} (step {s}): task "
            f"{worst['task']} fell from {worst['before']:.3f} to {worst['min']:.3f} (depth {worst['depth']:.3f}) at "
            f"step {worst['min_step']}, {worst['min_step'] - s} step(s) after the switch, ")
    if worst["recovery_steps"] is not None:
        line += f"and was back within {tol:g} of its level {worst['recovery_steps']} step(s) after the switch."
    else:
        line += f"and did not recover: {worst['reason']}."
    out = [line]
    switches = [r for r in records if r["depth"] is not None]
    if len(switches) > 1:
        deepest = max(switches, key=lambda r: r["depth"])
        depths = [r["depth"] for r in switches]
        out.append(f"Averaged over the earlier tasks, the gap ranged from {min(depths):.3f} to {max(depths):.3f} over the "
                   f"{len(switches)} switches (mean {sum(depths) / len(depths):.3f}); the deepest switch was the one to "
                   f"task {deepest['to_task']} at step {deepest['switch_step']}.")
    recovery = result.get("recovery_steps")
    if _ok(recovery):
        out.append(f"Earlier tasks took {recovery:.1f} steps on average to come back within {tol:g} of their accuracy "
                   f"at the switch ({len(pairs)} switch-task pair(s)).")
    else:
        out.append(f"No mean recovery time: {result.get('unavailable', {}).get('recovery_steps', 'not computable')}.")
    every = result.get("eval_every")
    if isinstance(every, int) and every > 1:
        out.append(f"Tasks were evaluated every {every} steps: a dip shorter than that can be missed, so the depths "
                   "are lower bounds.")
    return out


def compare_findings(table: pd.DataFrame, higher_is_better: Mapping[str, bool | None],
                     titles: Mapping[str, str]) -> list[str]:
    """From ``store.compare.group_metrics``: the best (and worst) group on each metric of the table,
    as mean ± sd over its runs, and whether the final accuracy and the worst case agree."""
    if table.empty or len(table) < 1:
        return []
    out = []
    leaders = {}
    for key, better in higher_is_better.items():
        if key not in table or better is None:
            continue
        known = table[table[key].notna()]
        if known.empty:
            continue
        ordered = known.sort_values(key, ascending=not better)
        best, worst = ordered.iloc[0], ordered.iloc[-1]
        leaders[key] = best["group"]
        line = f"{titles.get(key, key)}: best {_group_value(best, key)}"
        if len(ordered) > 1:
            line += f", worst {_group_value(worst, key)}"
        out.append(line + ".")
    if "acc" in leaders and "min_acc" in leaders and leaders["acc"] != leaders["min_acc"]:
        out.append(f"The group with the best final accuracy ({leaders['acc']}) is not the one with the best worst "
                   f"case (min-ACC: {leaders['min_acc']}): the final figure hides the dips during training.")
    return out


def _group_value(row: pd.Series, key: str) -> str:
    sd = row.get(f"{key} sd")
    spread = f" ± {sd:.3f}" if _ok(sd) else ""
    return f"{row['group']} {row[key]:.3f}{spread} ({int(row['runs'])} run{'s' if row['runs'] != 1 else ''})"


def frontier_findings(frontier: pd.DataFrame, x_title: str, y_title: str) -> list[str]:
    if frontier.empty:
        return []
    front = frontier[frontier["on_front"]]
    what = "configs" if frontier.attrs.get("by") == "config" else "runs"
    names = ", ".join(f"{r.id} ({r.strategy})" for r in front.head(6).itertuples())
    more = f" and {len(front) - 6} more" if len(front) > 6 else ""
    return [f"{len(front)} of {len(frontier)} {what} are on the Pareto frontier of {x_title} and {y_title}: "
            f"{names}{more}."]
