"""Command ``backup``: a consistent copy of the lab's database (store/backup.py), also while the lab runs.

    python -m engine backup DEST.duckdb [--artifacts] [--db PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.cli.setup import add_db_argument
from store.backup import backup


def cmd_backup(args) -> int:
    try:
        print(backup(args.db, args.dest, args.artifacts))
    except (ValueError, OSError) as err:
        print(f"error: {(str(err).splitlines() or [''])[0][:500]}", file=sys.stderr)
        return 2
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("backup", help="copy the lab's database (and with --artifacts its weights) to a new "
                                      "file, also while the lab runs")
    p.add_argument("dest", type=Path, help="the backup: a new .duckdb file in an existing directory")
    p.add_argument("--artifacts", action="store_true", help="also copy <db>.artifacts/ (weights, checkpoints)")
    add_db_argument(p)
    p.set_defaults(func=cmd_backup)
