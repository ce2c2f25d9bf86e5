"""Command ``datasets``: every dataset, whether its files are there, and where to put them if not.

    python -m engine datasets [--root DIR]
"""

from __future__ import annotations

from engine.datasets import data_dir, dataset_status


def cmd_datasets(args) -> int:
    print(f"data directory: {data_dir(args.root)} (--root, else $CL_LAB_DATA, else data/ beside the app)")
    rows = dataset_status(args.root)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"  {r['name']:{width}s}  {'ready  ' if r['ready'] else 'missing'}  {r['message']}")
    return 0


def add_commands(sub) -> None:
    datasets = sub.add_parser("datasets", help="list the datasets and whether each one's files are there")
    datasets.add_argument("--root", help="the data directory to look in (default: $CL_LAB_DATA, else data/)")
    datasets.set_defaults(func=cmd_datasets)
