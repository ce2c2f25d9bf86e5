"""Command ``export``: write runs' metrics, accuracy matrix, summary and config to files (engine/export.py).

    python -m engine export RUN_ID... [--format parquet|csv] [-o DIR] [--db PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.cli.setup import add_db_argument, open_store
from engine.export import FORMATS, run_files
from store.run_lines import known_runs


def cmd_export(args) -> int:
    store = open_store(args.db, read_only=True)  # a snapshot while the lab holds the file
    try:
        known = known_runs(store, args.run_ids)
        missing = [i for i in args.run_ids if i not in known]
        if missing:
            print(f"error: no run {', '.join(map(str, missing))} in {args.db}; nothing was written", file=sys.stderr)
            return 2
        exported = {run_id: run_files(store, run_id, args.format) for run_id in args.run_ids}
    finally:
        store.close()
    for run_id, files in exported.items():
        folder = args.output / f"run-{run_id}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        print(f"run {run_id}: {folder} ({', '.join(files)})")
    return 0


def add_commands(sub) -> None:
    ex = sub.add_parser("export", help="write runs' metrics, accuracy matrix, summary and config to files",
                        description="For each run, DIR/run-<id>/: metrics (every step, long form), accuracy_matrix, "
                                    "summary.json (every metric) and config.yaml (`python -m engine run` takes it).")
    ex.add_argument("run_ids", type=int, nargs="+", metavar="RUN_ID")
    ex.add_argument("--format", choices=FORMATS, default="parquet", help="tables as Parquet (default) or CSV")
    ex.add_argument("-o", "--output", type=Path, default=Path("."), metavar="DIR", help="where to write (default .)")
    add_db_argument(ex)
    ex.set_defaults(func=cmd_export)
