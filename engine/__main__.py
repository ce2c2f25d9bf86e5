"""The command line: ``python -m engine run CONFIG.yaml|BUNDLE.zip [--db PATH]``, ``python -m engine resume RUN_ID``,
``python -m engine runs``, ``python -m engine metrics RUN_ID [--json]``, ``python -m engine datasets
[--root DIR]``, ``python -m engine report RUN_ID... -o PATH.html`` (engine/report/cli.py). ``runs``,
``metrics``, ``frontier``, ``export`` and ``report`` also work while a lab holds the database: they read
a snapshot it serves.

Exit codes: 0 done, 1 the run did not finish (failed, diverged, cancelled), 2 bad input (config or
arguments, a --db that is not a DuckDB database; nothing written), 3 the database is held by another process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from engine.config import ConfigError, load_config
from store import DEFAULT_DB, DatabaseLocked, NotADatabase, Store


def _open_store(path: Path, read_only: bool = False, create: bool = True) -> Store:
    """The store at ``path``; exit 3 with the lock's message if another process holds it. A
    ``read_only`` command opens the file read-only (it must be a current lab's: nothing is created or
    migrated), or reads a snapshot that the holding process serves (store/snapshot.py). A command
    about runs already there (``create`` False) refuses a path with no file, creating none."""
    if not create and not path.exists():
        print(f"error: --db {path}: there is no such file; expected the lab's DuckDB database file", file=sys.stderr)
        sys.exit(2)
    from engine.limits import limits

    try:
        return Store(path, serve=not read_only, read_only=read_only, disk_wait_s=limits().disk_wait_s)
    except DatabaseLocked as err:
        if read_only:
            from store.store import open_snapshot

            if (snapshot := open_snapshot(path)) is not None:
                return snapshot
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    except NotADatabase as err:
        print(f"error: --db {err}", file=sys.stderr)
        sys.exit(2)


def cmd_run(args) -> int:
    from engine.report.bundle import BundleError, config_from_bundle, is_bundle

    try:  # a report bundle (a zip) gives its config.yaml, read through the bundle's guards
        config = config_from_bundle(args.config) if is_bundle(args.config) else load_config(args.config)
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        err.report(args.config)
        return 2
    from engine.runs.admission import check_runs

    try:
        check_runs([config])  # what it would cost, before the database is opened
    except ConfigError as err:
        err.report(args.config)
        return 2

    def submit(manager) -> int | None:
        try:
            run_id = manager.submit(config)  # checks the weights budget of the lab's disk
        except ConfigError as err:
            err.report(args.config)
            return None
        print(f"run {run_id} queued: {config.name} ({config.strategy['name']} on {config.scenario.dataset}, "
              f"{config.scenario.setting}-incremental, {config.scenario.n_tasks} tasks) in {args.db}", flush=True)
        return run_id

    return _train(args, submit)


def cmd_resume(args) -> int:
    from engine.checkpoint import CheckpointError

    def submit(manager) -> int | None:
        try:
            header = manager.resume_run(args.run_id)
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            return None
        print(f"run {args.run_id} queued to resume from task {header['task'] + 1} at step {header['step']} "
              f"in {args.db}", flush=True)
        return args.run_id

    return _train(args, submit, create=False)


def _train(args, submit, create: bool = True) -> int:
    """Own the store, queue a run with ``submit(manager)`` (None: refused, exit 2), follow it until it
    ends, and print its outcome. Exit codes: 0 finished, 1 not, 2 refused, 3 held, 130 Ctrl-C."""
    from engine.runs.manager import RunManager, flush_on_signals
    from store.schema import FINAL_STATUSES

    store = _open_store(args.db, create=create)
    flush_on_signals(store)  # SIGTERM commits what the workers sent before the process ends
    manager = RunManager(store, max_parallel=1, take_queue=False)  # runs left queued wait for the lab
    interrupted, run_id = False, None
    try:
        run_id = submit(manager)
        if run_id is None:
            return 2
        status = _follow(store, manager, run_id)
    except KeyboardInterrupt:
        interrupted = True
        if run_id is None:
            return 130
        manager.cancel(run_id)
        status = manager.wait(run_id, timeout=30)
    finally:
        manager.shutdown()
        if run_id is None:
            store.discard_if_new()  # refused before anything was written: leave no empty database
        else:
            store.close()
    row_store = Store(args.db, serve=False, read_only=True)
    try:
        (status, error, last_step, total) = row_store.sql(
            "SELECT status, error, last_step, total_steps FROM runs WHERE id = ?", [run_id])[0]
    finally:
        row_store.close()
    if status not in FINAL_STATUSES and run_id in manager.outcomes:  # a full disk took no status
        status, error = manager.outcomes[run_id]
    print(f"run {run_id} {status} at step {last_step}/{total or '?'}" + (f": {error}" if error else ""))
    if interrupted:
        return 130
    return 0 if status == "finished" else 1


def progress_line(store: Store, run_id: int, elapsed: float) -> tuple[str, str]:
    """(status, a progress line): the step, the task being trained (k/T), the mean accuracy so far on the
    tasks trained up to now (at the latest evaluation) and the time left at the pace so far."""
    status, step, total, n_tasks = store.sql(
        "SELECT status, coalesce(last_step, 0), total_steps, config->'scenario'->>'n_tasks' FROM runs WHERE id = ?",
        [run_id])[0]
    task = store.sql("SELECT max(task) FROM task_boundaries WHERE run_id = ?", [run_id])[0][0]
    seen_acc = store.sql(
        """SELECT avg(value) FROM metrics WHERE run_id = $run AND metric = 'acc' AND task <= $task
           AND step = (SELECT max(step) FROM metrics WHERE run_id = $run AND metric = 'acc')""",
        {"run": run_id, "task": task or 0})[0][0]
    pct = f"{100 * step / total:5.1f}%" if total else "  ?  "
    parts = [f"run {run_id} {status:9s} step {step}/{total or '?'} {pct}"]
    if task:
        parts.append(f"task {task}/{n_tasks}")
    if seen_acc is not None:
        parts.append(f"acc {seen_acc:.3f}")
    if status == "running" and total and 0 < step < total:
        left = elapsed / step * (total - step)
        parts.append(f"about {left:.0f} s left" if left < 120 else f"about {left / 60:.0f} min left")
    return status, " · ".join(parts)


def _follow(store: Store, manager, run_id: int) -> str:
    """Print a progress line until the run ends."""
    tty = sys.stdout.isatty()
    last_print = 0.0
    started = None
    while True:
        manager.wait(run_id, timeout=0.5)
        now = time.monotonic()
        running = store.sql("SELECT status = 'running' FROM runs WHERE id = ?", [run_id])[0][0]
        if running and started is None:
            started = now
        status, line = progress_line(store, run_id, now - (started or now))
        done = status in ("finished", "failed", "cancelled", "diverged")
        done = done or manager.ended(run_id)  # also when a full disk takes no status now
        if tty or done or now - last_print > 5:
            print(("\r" + line.ljust(100)) if tty else line, end="" if tty and not done else "\n", flush=True)
            last_print = now
        if done:
            return status


def cmd_runs(args) -> int:
    store = _open_store(args.db, read_only=True)
    try:
        rows = store.sql(
            """SELECT id, name, config->>'$.strategy.name', status, last_step, total_steps,
                      strftime(created_at, '%Y-%m-%d %H:%M:%S'), coalesce(error, ''),
                      array_to_string(coalesce(tags, []), ',')
               FROM runs ORDER BY id"""
        )
    finally:
        store.close()
    if not rows:
        print(f"no runs in {args.db}")
        return 0
    header = ("id", "name", "tags", "strategy", "status", "step", "created", "error")
    table = [(str(r[0]), r[1], r[8], r[2], r[3], f"{r[4] or 0}/{r[5] or '?'}", r[6], r[7][:60]) for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    for row in (header, *table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_metrics(args) -> int:
    import json

    from store.metrics import METRICS
    from store.metrics.summary import summary

    store = _open_store(args.db, read_only=True)
    try:
        if not store.sql("SELECT 1 FROM runs WHERE id = ?", [args.run_id]):
            print(f"error: there is no run {args.run_id} in {args.db}", file=sys.stderr)
            return 2
        result = summary(store, args.run_id)
    finally:
        store.close()
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"run {args.run_id} ({result['name']}, {result['status']})"
          + (f": so far, over {result['tasks_done']} task(s) ended" if result.get("partial") else ""))
    width = max(len(info.title) for info in METRICS.values())
    for key, info in METRICS.items():
        value = result.get(key)
        shown = f"{value:8.4f}" if isinstance(value, (int, float)) else "     n/a"
        why = f"  ({result['unavailable'][key]})" if value is None and key in result["unavailable"] else ""
        print(f"  {info.title:{width}s} {shown}{why}")
    matrix = result["accuracy_matrix"]
    if matrix:
        print("accuracy matrix (row 0 before training; row i after task i):")
        for i, row in enumerate(matrix):
            cells = " ".join("  -  " if v is None else f"{v:.3f}" for v in row)
            print(f"  {i:>3} {cells}")
    return 0


def cmd_datasets(args) -> int:
    """Every dataset, whether its files are there, and where to put them if not."""
    from engine.datasets import data_dir, dataset_status

    print(f"data directory: {data_dir(args.root)} (--root, else $CL_LAB_DATA, else data/ beside the app)")
    rows = dataset_status(args.root)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"  {r['name']:{width}s}  {'ready  ' if r['ready'] else 'missing'}  {r['message']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="CL Lab's engine, headless.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train one run from a YAML config (or a report bundle's) and print its id")
    run.add_argument("config", type=Path)
    run.set_defaults(func=cmd_run)
    resume = sub.add_parser("resume", help="resume a failed or cancelled run from its last completed task "
                                           "(same run id and step numbering) and follow it")
    resume.add_argument("run_id", type=int)
    resume.set_defaults(func=cmd_resume)
    runs = sub.add_parser("runs", help="list the runs in the store")
    runs.set_defaults(func=cmd_runs)
    metrics = sub.add_parser("metrics", help="print every summary metric of a run")
    metrics.add_argument("run_id", type=int)
    metrics.add_argument("--json", action="store_true", help="one JSON object; unavailable metrics are null, "
                                                            "with the reason under 'unavailable'")
    metrics.set_defaults(func=cmd_metrics)
    datasets = sub.add_parser("datasets", help="list the datasets and whether each one's files are there")
    datasets.add_argument("--root", help="the data directory to look in (default: $CL_LAB_DATA, else data/)")
    datasets.set_defaults(func=cmd_datasets)
    for p in (run, resume, runs, metrics):
        p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"the lab's DuckDB file (default {DEFAULT_DB})")
    from engine.frontier_cli import add_frontier_commands  # frontier, tradeoff
    add_frontier_commands(sub, _open_store)
    from engine.sweeps.cli import add_sweep_commands  # sweep
    add_sweep_commands(sub, _open_store)
    from engine.export import add_export_commands  # export
    add_export_commands(sub, _open_store)
    from engine.runs.artifacts import add_gc_command  # gc
    add_gc_command(sub, _open_store)
    from engine.report.cli import add_report_command  # report
    add_report_command(sub, _open_store)
    from store.backup import add_backup_command  # backup
    add_backup_command(sub, DEFAULT_DB)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main_quietly_on_a_closed_stdout(argv: list[str] | None = None) -> int:
    """``main``, ending quietly when stdout's reader went away (``... | head``): Python's recipe, stdout
    pointed at devnull so the flush at exit does not fail again."""
    try:
        code = main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main_quietly_on_a_closed_stdout())
