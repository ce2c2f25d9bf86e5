"""The run queue's SQL: what the run manager and admission read and write of the ``runs`` table.

Each function takes the lab's ``Store`` (its ``sql`` reads, its ``write`` goes through the one writer
thread); nothing here knows of the engine.
"""

from __future__ import annotations


def run_status(store, run_id: int) -> str | None:
    """The run's status, or None when there is no such run."""
    rows = store.sql("SELECT status FROM runs WHERE id = ?", [run_id])
    return rows[0][0] if rows else None


def status_and_config(store, run_id: int) -> tuple[str, str] | None:
    """The run's status and its stored config (JSON text), or None when there is no such run."""
    rows = store.sql("SELECT status, config FROM runs WHERE id = ?", [run_id])
    return rows[0] if rows else None


def active_sweep_runs(store, sweep_id: int) -> list[int]:
    """The sweep's queued and running runs, newest first (cancelled in that order: none starts meanwhile)."""
    return [r[0] for r in store.sql(
        "SELECT id FROM runs WHERE sweep_id = ? AND status IN ('queued', 'running') ORDER BY id DESC", [sweep_id])]


def fail_interrupted_runs(store) -> None:
    """Runs left 'running' by a lab process that stopped: failed, at their last step."""
    store.write(
        "UPDATE runs SET status = 'failed', finished_at = current_localtimestamp(), "
        "error = 'the lab process stopped while this run was training', error_step = last_step "
        "WHERE status = 'running'"
    )


def queued_runs(store) -> list[int]:
    return [r[0] for r in store.sql("SELECT id FROM runs WHERE status = 'queued' ORDER BY id")]


def run_device(store, run_id: int) -> str | None:
    """The run's ``train.device`` as stored (None: not set, or no such run)."""
    rows = store.sql("SELECT json_extract_string(config, '$.train.device') FROM runs WHERE id = ?", [run_id])
    return rows[0][0] if rows else None


def run_owner(store, run_id: int) -> str | None:
    rows = store.sql("SELECT owner FROM runs WHERE id = ?", [run_id])
    return rows[0][0] if rows else None


def queued_job(store, run_id: int) -> tuple[str, int] | None:
    """A queued run's config (JSON text) and the step it reached before (0 unless it was rewound to
    resume); None once it is no longer queued."""
    rows = store.sql("SELECT config, coalesce(last_step, 0) FROM runs WHERE id = ? AND status = 'queued'", [run_id])
    return rows[0] if rows else None


def queued_count(store, owner: str) -> int:
    return store.sql("SELECT count(*) FROM runs WHERE owner = ? AND status = 'queued'", [owner])[0][0]


def active_configs(store, owner: str | None = None) -> list[tuple[int, str]]:
    """(id, config) of the queued and running runs (of ``owner``, if given)."""
    mine = "" if owner is None else " AND owner = ?"
    return store.sql(f"SELECT id, config FROM runs WHERE status IN ('queued', 'running'){mine}",
                     [] if owner is None else [owner])


def owner_runs(store, owner: str) -> list[int]:
    return [r[0] for r in store.sql("SELECT id FROM runs WHERE owner = ?", [owner])]


def run_ids(store) -> set[int]:
    return {r[0] for r in store.sql("SELECT id FROM runs")}


def running_runs_by_node(store) -> dict[str, int]:
    """{node: runs training there}: the runs a cluster's nodes train now (``runs.node``, set when a run starts)."""
    return dict(store.sql("SELECT node, count(*) FROM runs WHERE status = 'running' AND node IS NOT NULL "
                          "GROUP BY node ORDER BY node"))
