"""``python -m engine sweep SWEEP.yaml``: queue a sweep of any kind, follow it until it ends (Ctrl-C
cancels the group), then print its outcome."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from engine.config import ConfigError
from engine.sweeps import SWEEP_KINDS
from engine.sweeps.sweep import (cancel_sweep, format_progress, launch_sweep, load_sweep, planned_runs, stop_sweeps,
                                 sweep_outcome, sweep_progress, wait_sweep)


def add_sweep_commands(subparsers, open_store: Callable) -> None:
    """``python -m engine sweep SWEEP.yaml [--db PATH] [--parallel N]``. ``open_store(path)`` opens the
    database (engine.__main__._open_store: exit 3 with its message while another process holds it)."""
    from store import DEFAULT_DB

    kinds = [k.summary for k in SWEEP_KINDS.values()]
    p = subparsers.add_parser("sweep", help=f"queue a sweep ({', '.join(kinds[:-1])} or {kinds[-1]}) from a "
                                            "YAML file and follow it until it ends; Ctrl-C cancels the group")
    p.add_argument("spec", type=Path)
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"the lab's DuckDB file (default {DEFAULT_DB})")
    p.add_argument("--parallel", type=int, default=None, help="runs at once (default: one per CPU core)")
    p.set_defaults(func=cmd_sweep, open_store=open_store)


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        spec = load_sweep(args.spec)
    except ConfigError as err:
        err.report(args.spec, what="sweep")
        return 2
    if args.parallel is not None and args.parallel < 1:
        print(f"--parallel = {args.parallel}: must be at least 1", file=sys.stderr)
        return 2
    from engine.runs.manager import RunManager, flush_on_signals

    store = args.open_store(args.db)  # exits 3 with its message while another process holds the file
    flush_on_signals(store)  # SIGTERM commits what the workers sent before the process ends
    # Ctrl-C reaches the whole foreground process group, workers included: they would die and fail
    # their runs. Workers started while SIGINT is ignored inherit that (Python keeps an ignored SIGINT
    # ignored), so this process alone sees Ctrl-C and cancels the group; it handles it again once the
    # workers are up and the sweep is queued.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    manager = RunManager(store, max_parallel=args.parallel, warm_workers=args.parallel or 64,
                         take_queue=False)  # runs left queued in the file wait for the lab
    deadline = time.monotonic() + 10
    while manager.counts()["workers"] < manager.max_parallel and time.monotonic() < deadline:
        time.sleep(0.01)
    tty = sys.stdout.isatty()
    last = [0.0, ""]

    def show(p: dict, force: bool = False) -> None:
        line = format_progress(p)
        now = time.monotonic()
        if tty:
            print("\r" + line, end="", flush=True)
        elif force or (line != last[1] and now - last[0] > 5):
            print(line, flush=True)
            last[0], last[1] = now, line

    sweep_id, interrupted, state = None, False, None
    try:
        try:
            try:
                sweep_id = launch_sweep(manager, spec)
            except ConfigError as err:  # what it would cost: nothing was written
                err.report(args.spec, what="sweep")
                return 2
            finally:
                signal.signal(signal.SIGINT, previous)
            print(f"sweep {sweep_id} queued: {spec.name} ({spec.kind}, {planned_runs(spec)} runs, up to "
                  f"{manager.max_parallel} at once) in {args.db}", flush=True)
            state = wait_sweep(manager, sweep_id, on_progress=show)
        except KeyboardInterrupt:
            interrupted = True
            if sweep_id is not None:
                n = cancel_sweep(manager, sweep_id)
                print(f"\nsweep {sweep_id}: cancelling {n} run(s)", flush=True)
                state = wait_sweep(manager, sweep_id, timeout=30)
        if sweep_id is None:
            return 130
        p = sweep_progress(store, sweep_id)
        if tty:
            print()
        print(format_progress(p), flush=True)
        outcome = sweep_outcome(store, sweep_id, "cli")
        if outcome is not None:
            print(outcome.text(), flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        stop_sweeps(sweep_id, join=True)
        manager.shutdown()
        if sweep_id is None:
            store.discard_if_new()  # refused (its cost) before anything was written: no empty database left
        else:
            store.close()
    if interrupted:
        return 130
    bad = sum(p["counts"][s] for s in ("failed", "diverged", "cancelled"))
    return 0 if state == "done" and not bad else 1

