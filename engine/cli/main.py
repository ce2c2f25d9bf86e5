"""The command line: ``python -m engine run CONFIG.yaml|BUNDLE.zip [--db PATH]``, ``python -m engine resume RUN_ID``,
``python -m engine runs``, ``python -m engine metrics RUN_ID [--json]``, ``python -m engine datasets
[--root DIR]``, ``python -m engine report RUN_ID... -o PATH.html`` (engine/cli/report.py). ``runs``,
``metrics``, ``frontier``, ``export`` and ``report`` also work while a lab holds the database: they read
a snapshot it serves. Each command family is one file of engine/cli/; what they open is engine/cli/setup.py.

Exit codes: 0 done, 1 the run did not finish (failed, diverged, cancelled), 2 bad input (config or
arguments, a --db that is not a DuckDB database; nothing written), 3 the database is held by another process.
"""

from __future__ import annotations

import argparse
import os
import sys

from engine.cli import backup, cluster, datasets, export, frontier, gc, report, runs, sweep, train

# each family adds its commands, in the order of ``python -m engine --help``
COMMAND_FAMILIES = (train, runs, datasets, frontier, sweep, export, gc, report, backup, cluster)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="CL Lab's engine, headless.")
    sub = parser.add_subparsers(dest="command", required=True)
    for family in COMMAND_FAMILIES:
        family.add_commands(sub)
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
