"""The runs other runs' metrics read: the Joint reference of intransigence and the single-task experts
of the L2M metrics, found by rule among the stored runs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from store.metrics.loader import IDS, cursor_of, run_config

JOINT_STRATEGY = "joint"     # config.strategy.name of the Joint baseline (case-insensitive)
JOINT_CUMULATIVE = "cumulative"  # config.strategy.mode of the Joint reference for intransigence


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _is_joint_cumulative(cfg: dict) -> bool:
    st = cfg.get("strategy") or {}
    return (str(st.get("name", "")).lower() == JOINT_STRATEGY
            and str(st.get("mode", "")).lower() == JOINT_CUMULATIVE)


def _expert_task(cfg: dict) -> int | None:
    tasks = (cfg.get("scenario") or {}).get("tasks")
    return int(tasks[0]) if isinstance(tasks, list) and len(tasks) == 1 else None


# Scenario settings added after runs were first stored, with the value every earlier run had: a
# run stored without one and a run stored with its old value describe the same scenario. (A new
# scenario setting whose default keeps the old behaviour gets a line here.)
SCENARIO_KEYS_ADDED = {"normalize": True}


def _scenario_key(cfg: dict, drop: tuple[str, ...] = ()) -> str:
    """The scenario object as a reference lookup compares it (``drop``: keys ignored on both sides)."""
    sc = {k: v for k, v in (cfg.get("scenario") or {}).items() if k not in drop}
    for key, old_value in SCENARIO_KEYS_ADDED.items():
        if key in sc and sc[key] == old_value:
            del sc[key]
    return _canon(sc)


def _scenario_sans_tasks(cfg: dict) -> str:
    return _scenario_key(cfg, drop=("tasks",))


def runs_and_references(cur, ids: Sequence[int]) -> dict[int, tuple]:
    """{id: (name, status, config, last_step)} of the runs asked for and of every candidate
    reference run (Joint cumulative runs, single-task experts), in one query."""
    rows = cur.execute(
        f"""SELECT id, name, status, config, last_step FROM runs
            WHERE id IN ({IDS})
               OR (lower(config->'strategy'->>'name') = ? AND lower(config->'strategy'->>'mode') = ?)
               OR json_array_length(config->'scenario'->'tasks') = 1""",
        [list(ids), JOINT_STRATEGY, JOINT_CUMULATIVE]).fetchall()
    return {rid: (name, status, run_config(cfg), last) for rid, name, status, cfg, last in rows}


def _pick(cands: list[tuple], prefer_seed=None) -> int | None:
    """Finished first, then (for experts) the same seed, then the newest."""
    if not cands:
        return None
    return max(cands, key=lambda c: (c[1] == "finished", c[2] == prefer_seed, c[0]))[0]


class References:
    """The candidate reference runs of a store, indexed once (``runs_and_references`` fetched them all)."""

    def __init__(self, meta: Mapping[int, tuple]):
        self.meta = meta
        self.joint: dict[tuple, list] = {}
        self.experts: dict[tuple, list] = {}
        for rid, (_, status, cfg, _) in meta.items():
            if _is_joint_cumulative(cfg):
                key = (_scenario_key(cfg), _canon(cfg.get("seed")))
                self.joint.setdefault(key, []).append((rid, status, None))
            j = _expert_task(cfg)
            if j is not None and status == "finished":
                self.experts.setdefault((_scenario_sans_tasks(cfg), j), []).append((rid, status, cfg.get("seed")))
        self.expert_tasks: dict[str, set[int]] = {}
        for sc, j in self.experts:
            self.expert_tasks.setdefault(sc, set()).add(j)

    def joint_for(self, run_id: int) -> int | None:
        """The Joint reference for intransigence, by rule: a run whose config has strategy.name
        "joint" and strategy.mode "cumulative", with the same scenario object and the same seed; a
        finished one first, then the newest. (A reference run is its own: intransigence 0.)"""
        cfg = self.meta[run_id][2]
        return _pick(self.joint.get((_scenario_key(cfg), _canon(cfg.get("seed"))), []))

    def experts_for(self, run_id: int) -> dict[int, int]:
        """Single-task experts, by rule: for task j, a FINISHED run (not this one) whose config has
        ``scenario.tasks == [j]`` and otherwise the same scenario object (key ``tasks`` ignored on
        both sides); the same seed first, then the newest. Its curve is its accuracy on its one
        trained task (the task of its boundary row: the engine may number it j or 1)."""
        cfg = self.meta[run_id][2]
        sc = _scenario_sans_tasks(cfg)
        out = {}
        for j in sorted(self.expert_tasks.get(sc, ())):
            rid = _pick([c for c in self.experts[(sc, j)] if c[0] != run_id], cfg.get("seed"))
            if rid is not None:
                out[j] = rid
        return out


def find_joint_reference(cursor_or_store, run_id: int) -> int | None:
    """The id of the run's Joint-cumulative reference by the rule of ``References.joint_for``."""
    cur, own = cursor_of(cursor_or_store)
    try:
        return References(runs_and_references(cur, [run_id])).joint_for(run_id)
    finally:
        if own:
            cur.close()


def find_experts(cursor_or_store, run_id: int) -> dict[int, int]:
    """{task: run id} of the run's single-task experts by the rule of ``References.experts_for``."""
    cur, own = cursor_of(cursor_or_store)
    try:
        return References(runs_and_references(cur, [run_id])).experts_for(run_id)
    finally:
        if own:
            cur.close()

