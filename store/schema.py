"""The DuckDB schema of a lab file, and the migrations that bring an older file up to date.

Tables:
- ``runs``: one row a run: its config as JSON, status, times, error, owner, software versions, the
  device it trained on (``cpu`` or ``cuda:N``) and the cluster node (NULL: the lab's own machine).
- ``metrics``: every measurement in long form, ``(run_id, step, task, metric, value)``.
  ``metric`` is one of ``train_loss`` (every step, ``task`` = the task being trained),
  ``acc`` / ``loss`` (continual evaluation every ``eval.every`` steps, on each task's held-out set,
  or a fixed subset of it) and ``boundary_acc`` / ``boundary_loss`` (a full evaluation at step 0,
  before training, and at the last step of each task: the rows of the accuracy matrix), and for a
  class-incremental run ``boundary_masked_acc`` (the same evaluations with the logits masked to each
  sample's task at test time: Mammoth's Task-IL figure).
  Tasks are numbered from 1; step 0 is before the first training iteration.
- ``task_boundaries``: task ``task`` is trained over the steps ``(start_step, end_step]``;
  ``end_step`` is NULL while the task is training.
- ``sweeps``: a group of runs queued together (``runs.sweep_id``, ``runs.sweep_phase``).
- ``audit``: who (email and role) launched, cancelled, resumed, renamed or annotated, deleted or exported
  which run or sweep, and when; ``allowed`` false for a refused attempt, with the reason in ``detail``.
- ``tradeoffs``: accuracy on each ``task`` of the model interpolated with weight ``alpha`` between a
  run's weights after task ``from_task`` (alpha 0) and after task ``from_task + 1`` (alpha 1).

A run's ``name``, ``notes`` and ``tags`` are the user's to change (``Store.annotate_run``).

Model weights after each task are files beside the database (``artifacts_dir``), not rows.
"""

from __future__ import annotations

from enum import StrEnum

SCHEMA_VERSION = 7


class RunStatus(StrEnum):
    """A run's status, the one spelling (each equals its text, as stored in ``runs.status``)."""
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DIVERGED = "diverged"


# plain text, as widgets, JSON and SQL parameters take it
RUN_STATUSES = tuple(s.value for s in RunStatus)
FINAL_STATUSES = tuple(s.value for s in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DIVERGED))
UNFINISHED_ENDS = tuple(s for s in FINAL_STATUSES if s != RunStatus.FINISHED)  # ended without finishing


def _v1(cur) -> None:
    cur.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    cur.execute("CREATE SEQUENCE IF NOT EXISTS run_id_seq START 1")
    cur.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY DEFAULT nextval('run_id_seq'),
            name VARCHAR NOT NULL,
            config JSON NOT NULL,
            status VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            error VARCHAR,
            owner VARCHAR,
            python_version VARCHAR,
            torch_version VARCHAR,
            lightning_version VARCHAR,
            lab_version VARCHAR
        )
        """
    )
    cur.execute(
        "CREATE TABLE metrics (run_id INTEGER NOT NULL, step BIGINT NOT NULL, task SMALLINT,"
        " metric VARCHAR NOT NULL, value DOUBLE)"
    )
    cur.execute(
        "CREATE TABLE task_boundaries (run_id INTEGER NOT NULL, task SMALLINT NOT NULL,"
        " start_step BIGINT NOT NULL, end_step BIGINT, PRIMARY KEY (run_id, task))"
    )


def _v2(cur) -> None:
    # Progress for the runs table without scanning metrics: the steps a run will take, the last step
    # it reported, and the step at which a run stopped early (diverged, cancelled, died).
    cur.execute("ALTER TABLE runs ADD COLUMN total_steps BIGINT")
    cur.execute("ALTER TABLE runs ADD COLUMN last_step BIGINT DEFAULT 0")
    cur.execute("ALTER TABLE runs ADD COLUMN error_step BIGINT")


def _v3(cur) -> None:
    # Comparing runs: sweeps (a group of runs queued together), and the trade-off curves made by
    # interpolating a run's weights between two task boundaries.
    cur.execute("CREATE SEQUENCE IF NOT EXISTS sweep_id_seq START 1")
    cur.execute(
        """
        CREATE TABLE sweeps (
            id INTEGER PRIMARY KEY DEFAULT nextval('sweep_id_seq'),
            name VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,          -- grid, random, optuna, reality-check
            spec JSON NOT NULL,             -- the sweep as given
            created_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            owner VARCHAR
        )
        """
    )
    cur.execute("ALTER TABLE runs ADD COLUMN sweep_id INTEGER")
    cur.execute("ALTER TABLE runs ADD COLUMN sweep_phase VARCHAR")  # reality check: tune or test
    cur.execute(
        "CREATE TABLE tradeoffs (run_id INTEGER NOT NULL, from_task SMALLINT NOT NULL, alpha DOUBLE NOT NULL,"
        " task SMALLINT NOT NULL, acc DOUBLE, loss DOUBLE)"
    )


def _v4(cur) -> None:
    # The device a run trained on: cpu or cuda:N (the machine's GPU index), for comparing timings.
    cur.execute("ALTER TABLE runs ADD COLUMN device VARCHAR")


def _v5(cur) -> None:
    # What the user writes on a run (the Runs page): free-text notes and tags; runs before have none.
    cur.execute("ALTER TABLE runs ADD COLUMN notes VARCHAR")
    cur.execute("ALTER TABLE runs ADD COLUMN tags VARCHAR[] DEFAULT []")


def _v6(cur) -> None:
    # A hosted lab (engine/core/access.py): who did what, and what was refused; local actions are kept too.
    cur.execute("CREATE SEQUENCE IF NOT EXISTS audit_id_seq START 1")
    cur.execute(
        """
        CREATE TABLE audit (
            id BIGINT PRIMARY KEY DEFAULT nextval('audit_id_seq'),
            happened_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            who VARCHAR NOT NULL,           -- the principal's email ('' when nobody was logged in)
            role VARCHAR,                   -- admin, member, viewer; NULL when unknown
            action VARCHAR NOT NULL,        -- launch, cancel, resume, annotate, delete, export
            run_id INTEGER,
            sweep_id INTEGER,
            allowed BOOLEAN NOT NULL,
            detail VARCHAR                  -- what was done, or why it was refused
        )
        """
    )


def _v7(cur) -> None:
    # Runs beyond one machine (engine/runs/executors): the node a run trained on (a Ray node's IP and
    # id); NULL for a run trained on the lab's own machine.
    cur.execute("ALTER TABLE runs ADD COLUMN node VARCHAR")


# MIGRATIONS[i] brings a file from version i to version i + 1.
MIGRATIONS = [_v1, _v2, _v3, _v4, _v5, _v6, _v7]
assert len(MIGRATIONS) == SCHEMA_VERSION


def schema_version(cur) -> int:
    has_meta = cur.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
    ).fetchone()[0]
    if not has_meta:
        return 0
    row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


class NotALabFile(ValueError):
    """A DuckDB database the lab must not open: another program's, or a newer lab's. The message is one
    line, without the path."""


def check_lab_file(cur) -> int:
    """The file's schema version (0: a new, empty file), after checking it is a lab's that this CL Lab
    may open: a database holding tables but no lab version is another program's (never migrated: that
    would add the lab's tables to it); a newer version is refused."""
    version = schema_version(cur)
    if version == 0:
        tables = [r[0] for r in cur.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY table_name LIMIT 6").fetchall()]
        if tables:
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise NotALabFile(f"is a DuckDB database but not a CL Lab's (its tables: {shown}); expected the "
                              "lab's DuckDB database file, or the name of a new one")
    if version > SCHEMA_VERSION:
        raise NotALabFile(f"has schema version {version}, newer than this CL Lab knows ({SCHEMA_VERSION}): "
                          "upgrade CL Lab to open it")
    return version


def migrate(cur, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Upgrade the file to ``target``, one transaction a step. Returns (version before, after).
    ``NotALabFile`` for a file that is not a lab's, or is newer (``check_lab_file``)."""
    before = check_lab_file(cur)
    for version in range(before, target):
        cur.execute("BEGIN TRANSACTION")
        try:
            MIGRATIONS[version](cur)
            cur.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(version + 1)]
            )
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
    return before, max(before, target)


def artifacts_dir(db_path, run_id: int):
    """Where a run's files live: ``<db>.artifacts/run-<id>/`` (weights after each task)."""
    from pathlib import Path

    db_path = Path(db_path)
    return db_path.with_name(db_path.name + ".artifacts") / f"run-{run_id}"
