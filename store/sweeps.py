"""The sweeps' SQL: reading a sweep row and the counts and rows of its runs (``create_sweep`` is the
store's, beside the other writes).

A sweep kind has one name, the key of its sweep file (grid, random, search, reality_check), written
to ``sweeps.kind``. Sweeps stored before that have another name for two kinds (optuna,
reality-check): ``kind_name`` maps it, and every reader of ``sweeps.kind`` here goes through it, so
an old database loads as a new one without a migration.
"""

from __future__ import annotations

import json
from typing import Any

# sweeps.kind as written before each kind had one name -> the name
OLD_KIND_NAMES = {"optuna": "search", "reality-check": "reality_check"}


def kind_name(stored: str) -> str:
    """A kind's name from ``sweeps.kind``, old rows' names mapped."""
    return OLD_KIND_NAMES.get(stored, stored)


def sweep_row(store, sweep_id: int) -> tuple[str, str, dict]:
    """(name, kind, spec as given) of a sweep; ``KeyError`` if there is none."""
    rows = store.sql("SELECT name, kind, spec FROM sweeps WHERE id = ?", [sweep_id])
    if not rows:
        raise KeyError(f"no sweep with id {sweep_id}")
    name, kind, spec = rows[0]
    return name, kind_name(kind), json.loads(spec) if isinstance(spec, str) else spec


def sweep_owner(store, sweep_id: int) -> str | None:
    return next(iter(store.sql("SELECT owner FROM sweeps WHERE id = ?", [sweep_id])), (None,))[0]


def sweep_ids(store) -> list[int]:
    return [i for (i,) in store.sql("SELECT id FROM sweeps ORDER BY id")]


def list_sweeps(store):
    """Every sweep, the newest first: a DataFrame of id, name, kind."""
    sweeps = store.df("SELECT id, name, kind FROM sweeps ORDER BY id DESC")
    return sweeps.assign(kind=sweeps["kind"].map(kind_name))


def status_counts(store, sweep_id: int) -> list[tuple[str, str, int]]:
    """(phase, status, runs) of a sweep's runs; the phase is '' for a sweep of one phase."""
    return store.sql("SELECT coalesce(sweep_phase, ''), status, count(*) FROM runs WHERE sweep_id = ? "
                     "GROUP BY ALL", [sweep_id])


def first_active_run(store, sweep_id: int) -> int | None:
    """The oldest queued or running run of a sweep, if any."""
    rows = store.sql("SELECT id FROM runs WHERE sweep_id = ? AND status IN ('queued', 'running') "
                     "ORDER BY id LIMIT 1", [sweep_id])
    return rows[0][0] if rows else None


def sweep_runs(store, sweep_id: int, phase: str | None = None) -> list[tuple[int, str, Any, int]]:
    """(id, status, config, seed) of a sweep's runs (of one phase), in order."""
    query = "SELECT id, status, config, CAST(config->>'$.seed' AS BIGINT) FROM runs WHERE sweep_id = ?"
    params: list[Any] = [sweep_id]
    if phase is not None:
        query += " AND sweep_phase = ?"
        params.append(phase)
    return store.sql(query + " ORDER BY id", params)


def run_statuses(store, run_ids: list[int]) -> list[tuple[int, str]]:
    """(id, status) of the runs still in the store among ``run_ids``."""
    marks = ", ".join("?" for _ in run_ids)
    return store.sql(f"SELECT id, status FROM runs WHERE id IN ({marks})", list(run_ids))
