"""Commands ``run`` and ``resume``: queue one run in the lab of the command and follow it until it ends.

    python -m engine run CONFIG.yaml|BUNDLE.zip [--db PATH]
    python -m engine resume RUN_ID [--db PATH]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from engine.training.checkpoint import CheckpointError
from engine.cli.setup import add_db_argument, add_executor_argument, open_lab, open_store
from engine.config import ConfigError, load_config
from engine.runs.admission import check_runs
from engine.lab import Lab
from engine.report.bundle import BundleError, config_from_bundle, is_bundle
from store import Store
from store.run_lines import is_running, run_outcome, run_progress
from store.schema import FINAL_STATUSES


def cmd_run(args) -> int:
    try:  # a report bundle (a zip) gives its config.yaml, read through the bundle's guards
        config = config_from_bundle(args.config) if is_bundle(args.config) else load_config(args.config)
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        err.report(args.config)
        return 2
    try:
        check_runs([config])  # what it would cost, before the database is opened
    except ConfigError as err:
        err.report(args.config)
        return 2

    def submit(the_lab: Lab) -> int | None:
        try:
            run_id = the_lab.launch_run(config)  # checks the weights budget of the lab's disk
        except ConfigError as err:
            err.report(args.config)
            return None
        print(f"run {run_id} queued: {config.name} ({config.strategy['name']} on {config.scenario.dataset}, "
              f"{config.scenario.setting}-incremental, {config.scenario.n_tasks} tasks) in {args.db}", flush=True)
        return run_id

    return _train(args, submit)


def cmd_resume(args) -> int:
    def submit(the_lab: Lab) -> int | None:
        try:
            header = the_lab.resume_run(args.run_id)
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            return None
        print(f"run {args.run_id} queued to resume from task {header['task'] + 1} at step {header['step']} "
              f"in {args.db}", flush=True)
        return args.run_id

    return _train(args, submit, create=False)


def _train(args, submit, create: bool = True) -> int:
    """Open the command's lab, queue a run with ``submit(lab)`` (None: refused, exit 2), follow it until
    it ends, and print its outcome. Exit codes: 0 finished, 1 not, 2 refused, 3 held, 130 Ctrl-C."""
    the_lab = open_lab(args.db, create=create, executor=args.executor)  # runs left queued in the file wait for the lab
    interrupted, run_id = False, None
    try:
        run_id = submit(the_lab)
        if run_id is None:
            return 2
        status = _follow(the_lab, run_id)
    except KeyboardInterrupt:
        interrupted = True
        if run_id is None:
            return 130
        the_lab.cancel_run(run_id)
        status = the_lab.wait_run(run_id, timeout=30)
    finally:
        the_lab.close(discard_if_new=run_id is None)  # refused before anything was written: no empty database
    row_store = open_store(args.db, read_only=True)
    try:
        (status, error, last_step, total) = run_outcome(row_store, run_id)
    finally:
        row_store.close()
    if status not in FINAL_STATUSES and the_lab.run_outcome(run_id) is not None:  # a full disk took no status
        status, error = the_lab.run_outcome(run_id)
    print(f"run {run_id} {status} at step {last_step}/{total or '?'}" + (f": {error}" if error else ""))
    if interrupted:
        return 130
    return 0 if status == "finished" else 1


def progress_line(store: Store, run_id: int, elapsed: float) -> tuple[str, str]:
    """(status, a progress line): the step, the task being trained (k/T), the mean accuracy so far on the
    tasks trained up to now (at the latest evaluation) and the time left at the pace so far."""
    status, step, total, n_tasks, task, seen_acc = run_progress(store, run_id)
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


def _follow(the_lab: Lab, run_id: int) -> str:
    """Print a progress line until the run ends."""
    tty = sys.stdout.isatty()
    last_print = 0.0
    started = None
    while True:
        the_lab.wait_run(run_id, timeout=0.5)
        now = time.monotonic()
        running = is_running(the_lab.store, run_id)
        if running and started is None:
            started = now
        status, line = progress_line(the_lab.store, run_id, now - (started or now))
        done = status in FINAL_STATUSES
        done = done or the_lab.run_ended(run_id)  # also when a full disk takes no status now
        if tty or done or now - last_print > 5:
            print(("\r" + line.ljust(100)) if tty else line, end="" if tty and not done else "\n", flush=True)
            last_print = now
        if done:
            return status


def add_commands(sub) -> None:
    run = sub.add_parser("run", help="train one run from a YAML config (or a report bundle's) and print its id")
    run.add_argument("config", type=Path)
    run.set_defaults(func=cmd_run)
    resume = sub.add_parser("resume", help="resume a failed or cancelled run from its last completed task "
                                           "(same run id and step numbering) and follow it")
    resume.add_argument("run_id", type=int)
    resume.set_defaults(func=cmd_resume)
    for p in (run, resume):
        add_db_argument(p)
        add_executor_argument(p)
