"""Commands ``runs`` and ``metrics``: read the runs of a lab's database (a snapshot while a lab holds it).

    python -m engine runs [--db PATH]
    python -m engine metrics RUN_ID [--json] [--db PATH]
"""

from __future__ import annotations

import json
import sys

from engine.cli.setup import add_db_argument, open_store
from store.metrics import METRICS
from store.metrics.summary import summary
from store.run_lines import run_exists, run_list


def cmd_runs(args) -> int:
    store = open_store(args.db, read_only=True)
    try:
        rows = run_list(store)
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
    store = open_store(args.db, read_only=True)
    try:
        if not run_exists(store, args.run_id):
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


def add_commands(sub) -> None:
    runs = sub.add_parser("runs", help="list the runs in the store")
    runs.set_defaults(func=cmd_runs)
    metrics = sub.add_parser("metrics", help="print every summary metric of a run")
    metrics.add_argument("run_id", type=int)
    metrics.add_argument("--json", action="store_true", help="one JSON object; unavailable metrics are null, "
                                                            "with the reason under 'unavailable'")
    metrics.set_defaults(func=cmd_metrics)
    for p in (runs, metrics):
        add_db_argument(p)
