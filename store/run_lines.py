"""The reads behind the command line's lines about runs (engine/cli/): a run's progress while it
trains, its outcome, and the list of runs."""

from __future__ import annotations


def run_exists(source, run_id: int) -> bool:
    return bool(source.sql("SELECT 1 FROM runs WHERE id = ?", [run_id]))


def run_outcome(source, run_id: int) -> tuple:
    """(status, error, last step, total steps) of a run."""
    return source.sql("SELECT status, error, last_step, total_steps FROM runs WHERE id = ?", [run_id])[0]


def is_running(source, run_id: int) -> bool:
    return source.sql("SELECT status = 'running' FROM runs WHERE id = ?", [run_id])[0][0]


def run_progress(source, run_id: int) -> tuple:
    """(status, last step, total steps, tasks configured, the task being trained (None before the first
    starts), the mean accuracy at the latest evaluation on the tasks trained up to now (None before one))."""
    status, step, total, n_tasks = source.sql(
        "SELECT status, coalesce(last_step, 0), total_steps, config->'scenario'->>'n_tasks' FROM runs WHERE id = ?",
        [run_id])[0]
    task = source.sql("SELECT max(task) FROM task_boundaries WHERE run_id = ?", [run_id])[0][0]
    seen_acc = source.sql(
        """SELECT avg(value) FROM metrics WHERE run_id = $run AND metric = 'acc' AND task <= $task
           AND step = (SELECT max(step) FROM metrics WHERE run_id = $run AND metric = 'acc')""",
        {"run": run_id, "task": task or 0})[0][0]
    return status, step, total, n_tasks, task, seen_acc


def run_list(source) -> list[tuple]:
    """Every run, by id: (id, name, strategy, status, last step, total steps, created, error, tags)."""
    return source.sql(
        """SELECT id, name, config->>'$.strategy.name', status, last_step, total_steps,
                  strftime(created_at, '%Y-%m-%d %H:%M:%S'), coalesce(error, ''),
                  array_to_string(coalesce(tags, []), ',')
           FROM runs ORDER BY id"""
    )


def known_runs(source, run_ids: list[int]) -> set[int]:
    """Those of ``run_ids`` that are runs of the database."""
    return {r[0] for r in source.sql("SELECT id FROM runs WHERE id IN (SELECT unnest(?::INTEGER[]))", [list(run_ids)])}
