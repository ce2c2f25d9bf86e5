"""Command ``cluster``: the Ray cluster the lab's runs train on (lab.toml's ``[executor]``, or
``$CL_LAB_RAY_ADDRESS``): each node, alive or not, its CPUs, GPUs and memory, and the runs of ``--db``
training on it now.

    python -m engine cluster [--db PATH]
"""

from __future__ import annotations

import sys

from engine.cli.setup import add_db_argument, open_store
from engine.core.executor_settings import executor_settings
from engine.core.limits import SettingsError
from engine.runs.cluster import cluster_view, node_rows
from engine.runs.executors import ExecutorUnavailable
from engine.runs.executors.ray_cluster import connect


def cmd_cluster(args) -> int:
    try:
        address = executor_settings("ray").address
        ray = connect(address, ship_code=False)
    except (SettingsError, ExecutorUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        nodes = node_rows(ray.nodes())
    finally:
        ray.shutdown()
    store = open_store(args.db, read_only=True) if args.db.exists() else None  # a snapshot while the lab holds it
    try:
        print(cluster_view(address, nodes, store).text())
    finally:
        if store is not None:
            store.close()
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("cluster", help="the Ray cluster the runs train on: nodes, CPUs, GPUs, runs on each node")
    add_db_argument(p)
    p.set_defaults(func=cmd_cluster)
