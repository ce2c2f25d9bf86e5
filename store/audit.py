"""The audit table (``audit``, schema version 6): who did what to which run or sweep, and when, and
what was refused and why. Written by ``Store`` and ``RunManager`` (store/policy.py); read here."""

from __future__ import annotations

import pandas as pd

from store.policy import ACTIONS

COLUMNS = "id, happened_at, who, role, action, run_id, sweep_id, allowed, detail"


def audit_rows(store, *, who: str | None = None, action: str | None = None, run_id: int | None = None,
               allowed: bool | None = None, limit: int = 1000) -> pd.DataFrame:
    """The newest ``limit`` audit rows first, filtered by any of: the principal's email, the action (a key
    of ``store.policy.ACTIONS``), the run, allowed (False: the refusals only)."""
    if action is not None and action not in ACTIONS:
        raise ValueError(f"action = {action!r}: must be one of {', '.join(ACTIONS)}")
    where, params = [], []
    for column, value in (("who", who), ("action", action), ("run_id", run_id), ("allowed", allowed)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return store.df(f"SELECT {COLUMNS} FROM audit{clause} ORDER BY id DESC LIMIT ?", [*params, max(0, int(limit))])
