"""Command ``gc``: remove the saved weights of runs that no longer exist, and say what it freed.

    python -m engine gc [--db PATH]
"""

from __future__ import annotations

from engine.cli.setup import add_db_argument, open_store
from engine.training.cost import human_bytes
from engine.lab import Lab
from engine.core.limits import limits
from engine.runs.artifacts import disk_usage


def cmd_gc(args) -> int:
    # exits 3 while the lab holds the file: the lab cleans up as it opens
    the_lab = Lab(open_store(args.db, create=False))  # it trains nothing: no run manager
    try:
        removed, freed = the_lab.remove_orphans()
        left = disk_usage(the_lab.store.path)["total"]
    finally:
        the_lab.close()
    names = ", ".join(p.name for p in removed[:10]) + (f" and {len(removed) - 10} more" if len(removed) > 10 else "")
    print(f"freed {human_bytes(freed)} in {len(removed)} folder(s) of runs that no longer exist"
          + (f": {names}" if removed else ""))
    print(f"weights beside {args.db}: {human_bytes(left)} of the {human_bytes(limits().weights_budget_gb * 1e9)} "
          "budget (limits.weights_budget_gb)")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("gc", help="remove the saved weights of runs that no longer exist and print what "
                                         "it freed")
    add_db_argument(p)
    p.set_defaults(func=cmd_gc)
