"""Summaries: every registered metric of a run (``METRICS``), with its reason where it is unavailable,
the accuracy matrices, the stability-gap records, the per-task values and the references used. The
summary is a loop over the registry; a metric is computed by its entry over a ``MetricsView``."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from store.metrics import METRICS
from store.metrics import run_cache
from store.metrics.base import DEFAULT_TOLERANCE, finite
from store.metrics.continual import current_task, step_or_last
from store.metrics.gap import switch_gaps
from store.metrics.loader import RunData, cursor_of, load_runs
from store.metrics.metric import MetricsView
from store.metrics.references import References, runs_and_references


def _summarize(run: RunData, ref: RunData | None, experts: Mapping[int, RunData],
               tolerance: float, only: set[str] | None = None, cache=None) -> dict:
    view = MetricsView(run, ref, experts, tolerance, cache)
    # the costly computations some key of ``only`` asked for; the metrics of the others are left out
    asked = None if only is None else {m.costly for m in METRICS.values() if m.key in only}
    out: dict[str, Any] = {}
    why: dict[str, str] = {}
    per_task: dict[str, Any] = {}
    for m in METRICS.values():
        if m.costly and asked is not None and m.costly not in asked:
            continue
        value, reason = m.compute(view)
        out[m.key] = finite(value)
        if out[m.key] is None:
            why[m.key] = reason or "not computable"
        if m.per_task is not None:
            per_task[m.per_task_key or m.key] = m.per_task(view)

    R, T, sp = run.R, run.n_tasks, run.spans
    t = step_or_last(run.steps, None)
    eval_cfg = run.config.get("eval") or {}
    return {
        "run_id": run.id, "name": run.name, "status": run.status, "n_tasks": T, "tasks_done": view.k,
        "current_task": current_task(sp, t) if t is not None else None, "eval_step": t,
        "last_step": run.last_step, "eval_every": eval_cfg.get("every"),
        "partial": run.status != "finished" or view.k < T,
        **out,
        "accuracy_matrix": [[finite(x) for x in row] for row in R],
        "task_il_matrix": None if run.R_masked is None else [[finite(x) for x in row] for row in run.R_masked],
        "stability_gaps": switch_gaps(view) if "stability_gap" in out or "recovery_steps" in out else [],
        "per_task": per_task,
        "references": {"joint": None if ref is None else ref.id,
                       "experts": {j: e.id for j, e in experts.items()}},
        "tolerance": tolerance,
        "unavailable": why,
    }


def summaries(cursor_or_store, run_ids: Iterable[int], *, tolerance: float = DEFAULT_TOLERANCE,
              references: Mapping[int, int] | None = None,
              experts: Mapping[int, Mapping[int, int]] | None = None,
              only: Iterable[str] | None = None) -> list[dict]:
    """Summaries of many runs (in the order given) from three set-based queries: the runs with the
    candidate reference runs, their boundaries, and their boundary_acc + acc rows.
    ``references`` {run_id: joint_run_id} and ``experts`` {run_id: {task: expert_run_id}} override
    the automatic lookups (``find_joint_reference``, ``find_experts``). ``only``: the metric keys
    wanted; the costly groups (windowed, stability gaps, L2M) are skipped unless asked for, and
    their keys are then absent."""
    only = None if only is None else set(only)
    ids = [int(i) for i in run_ids]
    if not ids:
        return []
    cur, own = cursor_of(cursor_or_store)
    try:
        explicit = set((references or {}).values())
        for m in (experts or {}).values():
            explicit |= set(m.values())
        meta = runs_and_references(cur, sorted(set(ids) | explicit))
        missing = [i for i in ids if i not in meta]
        if missing:
            raise KeyError(f"no run with id {missing[0]}")
        index = References(meta)
        refs, exps = {}, {}
        for rid in ids:
            refs[rid] = (references or {}).get(rid) or index.joint_for(rid)
            exps[rid] = dict((experts or {}).get(rid) or index.experts_for(rid))
        need = set(ids) | {r for r in refs.values() if r} | {e for m in exps.values() for e in m.values()}
        data = load_runs(cur, sorted(need & set(meta)), meta)
    finally:
        if own:
            cur.close()
    return [_summarize(data[rid], data.get(refs[rid]),
                       {j: data[e] for j, e in exps[rid].items() if e in data}, tolerance, only)
            for rid in ids]


def samples_used(config: Mapping) -> str:
    """Which test samples the figures of a run with ``config`` were measured on, in one sentence for the
    pages and reports: the accuracy matrix's on every test sample, the continual-evaluation series' on
    ``eval.subset`` of them per task when it is set."""
    subset = ((config or {}).get("eval") or {}).get("subset")
    if subset is None:
        return "Every figure uses each task's whole test set."
    return (f"Accuracy-matrix figures use each task's whole test set; the curves, min-ACC, WC-ACC, the "
            f"stability gap and windowed figures use the same fixed {subset} test samples per task "
            f"(eval.subset), measured at every evaluation and at each task's last step.")


def summary(cursor_or_store, run_id: int, *, tolerance: float = DEFAULT_TOLERANCE,
            reference_run_id: int | None = None, experts: Mapping[int, int] | None = None) -> dict:
    """Every summary metric of one run, finished or still running (see ``store.metrics.base``), as a
    JSON-able dict: the metric keys of ``METRICS`` (None when unavailable), ``accuracy_matrix``
    (rows 0..T, None where missing), ``stability_gaps``, ``per_task``, ``references`` and
    ``unavailable`` {metric: reason}. ``reference_run_id`` and ``experts`` {task: run_id} override
    the automatic lookups.

    The same as ``summaries`` of this one run, from the series held between calls
    (``store.metrics.run_cache``): a run whose data and references have not changed gets its summary again,
    and a live run's refresh reads and computes only the steps since the last one."""
    run_id = int(run_id)
    cur, own = cursor_of(cursor_or_store)
    try:
        with run_cache.LOCK:
            explicit = ({reference_run_id} if reference_run_id else set()) | set((experts or {}).values())
            meta = runs_and_references(cur, sorted({run_id} | explicit))
            if run_id not in meta:
                raise KeyError(f"no run with id {run_id}")
            index = References(meta)
            ref = reference_run_id or index.joint_for(run_id)
            exps = dict(experts or index.experts_for(run_id))
            states = {}
            for rid in sorted(({run_id, ref} | set(exps.values())) & set(meta)):
                if (found := run_cache.state(cur, rid)) is not None:
                    states[rid] = found
            if run_id not in states:
                raise KeyError(f"no run with id {run_id}")
            own_state = states[run_id]
            key = (tolerance, ref, tuple(sorted(exps.items())), tuple((r, s.version) for r, s in states.items()))
            hit = own_state.results.get("summary")
            if hit is None or hit[0] != key:
                data = {rid: s.data() for rid, s in states.items()}
                result = _summarize(data[run_id], data.get(ref), {j: data[e] for j, e in exps.items() if e in data},
                                    tolerance, cache=own_state)
                hit = own_state.results["summary"] = (key, result)
            return copy.deepcopy(hit[1])
    finally:
        if own:
            cur.close()


def load_run(cursor_or_store, run_id: int) -> RunData:
    """One run's accuracy matrix, continual series and spans (for pages that plot them)."""
    cur, own = cursor_of(cursor_or_store)
    try:
        meta = runs_and_references(cur, [run_id])
        if run_id not in meta:
            raise KeyError(f"no run with id {run_id}")
        return load_runs(cur, [run_id], meta)[run_id]
    finally:
        if own:
            cur.close()
