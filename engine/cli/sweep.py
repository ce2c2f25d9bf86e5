"""Command ``sweep``: queue a sweep in the lab of the command and follow it until it ends; Ctrl-C
cancels the group.

    python -m engine sweep SWEEP.yaml [--db PATH] [--parallel N]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from engine.cli.setup import add_db_argument, add_executor_argument, open_lab
from engine.config import ConfigError
from engine.sweeps import SWEEP_KINDS
from engine.sweeps.sweep import format_progress, load_sweep, planned_runs, sweep_outcome, sweep_progress
from store.schema import UNFINISHED_ENDS


def add_commands(subparsers) -> None:
    kinds = [k.summary for k in SWEEP_KINDS.values()]
    p = subparsers.add_parser("sweep", help=f"queue a sweep ({', '.join(kinds[:-1])} or {kinds[-1]}) from a "
                                            "YAML file and follow it until it ends; Ctrl-C cancels the group")
    p.add_argument("spec", type=Path)
    add_db_argument(p)
    add_executor_argument(p)
    p.add_argument("--parallel", type=int, default=None, help="runs at once (default: one per CPU core; on a Ray cluster, its CPUs)")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        spec = load_sweep(args.spec)
    except ConfigError as err:
        err.report(args.spec, what="sweep")
        return 2
    if args.parallel is not None and args.parallel < 1:
        print(f"--parallel = {args.parallel}: must be at least 1", file=sys.stderr)
        return 2
    # Ctrl-C reaches the whole foreground process group, workers included: they would die and fail
    # their runs. Workers started while SIGINT is ignored inherit that (Python keeps an ignored SIGINT
    # ignored), so this process alone sees Ctrl-C and cancels the group; it handles it again once the
    # workers are up and the sweep is queued.
    the_lab = open_lab(args.db, max_parallel=args.parallel, warm_workers=args.parallel or 64,
                       workers_ignore_ctrl_c=True, executor=args.executor)  # exits 3 with its message while another process holds the file
    previous = the_lab.ctrl_c_handler
    the_lab.wait_for_workers(timeout=10)
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
                sweep_id = the_lab.launch_sweep(spec)
            except ConfigError as err:  # what it would cost: nothing was written
                err.report(args.spec, what="sweep")
                return 2
            finally:
                signal.signal(signal.SIGINT, previous)
            print(f"sweep {sweep_id} queued: {spec.name} ({spec.kind}, {planned_runs(spec)} runs, up to "
                  f"{the_lab.max_parallel} at once) in {args.db}", flush=True)
            state = the_lab.wait_sweep(sweep_id, on_progress=show)
        except KeyboardInterrupt:
            interrupted = True
            if sweep_id is not None:
                n = the_lab.cancel_sweep(sweep_id)
                print(f"\nsweep {sweep_id}: cancelling {n} run(s)", flush=True)
                state = the_lab.wait_sweep(sweep_id, timeout=30)
        if sweep_id is None:
            return 130
        p = sweep_progress(the_lab.store, sweep_id)
        if tty:
            print()
        print(format_progress(p), flush=True)
        outcome = sweep_outcome(the_lab.store, sweep_id, "cli")
        if outcome is not None:
            print(outcome.text(), flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        # its search drivers stopped, the workers shut down; refused (its cost) before anything was
        # written: no empty database left
        the_lab.close(discard_if_new=sweep_id is None)
    if interrupted:
        return 130
    bad = sum(p["counts"][s] for s in UNFINISHED_ENDS)
    return 0 if state == "done" and not bad else 1

