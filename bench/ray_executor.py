"""The Ray executor's overhead against the local one, side by side in one run on this machine.

A local Ray cluster (``ray.cluster_utils.Cluster``: a head that trains nothing and ``--nodes`` one-CPU
nodes) and, on fresh DuckDB files, one RunManager per executor:

1. one run, ``--repeat`` times on each (each executor warmed up by one run first): submit to its first
   metric row in the file, submit to its end, and the time a step costs (its end minus its first metric,
   over its steps); the metric rows committed per second;
2. a sweep of ``--runs`` runs (the same config over seeds) on each: ``launch_sweep`` to the last run's end,
   the local executor with ``--parallel`` workers, the Ray executor with the cluster's CPUs.

    python bench/ray_executor.py [--runs 100] [--nodes 3] [--parallel 2] [--repeat 3] [--epochs 5]

The runs are the default workload (5-task class-incremental Split-Digits, MLP 256-256, SGD, batch 32,
evaluation every 10 steps). This machine has 2 cores: a 3-node cluster on it shares those 2 cores
between 3 runs, so the sweep ratio measures the executor's cost, not a cluster's speed-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import parse_config  # noqa: E402
from engine.runs.manager import RunManager  # noqa: E402
from engine.sweeps.sweep import launch_sweep, parse_sweep, wait_sweep  # noqa: E402
from store import Store  # noqa: E402

BASE = {"scenario": {"dataset": "digits", "setting": "class", "n_tasks": 5},
        "model": {"name": "mlp", "hidden": [256, 256]},
        "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs_per_task": 5, "weights": "none"},
        "eval": {"every": 10, "subset": None}}


def one_run(manager: RunManager, store: Store, config) -> dict:
    start = time.monotonic()
    run_id = manager.submit(config)
    first = None
    while not manager.ended(run_id):
        if first is None and store.sql("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id])[0][0]:
            first = time.monotonic() - start
        time.sleep(0.005)
    manager.wait(run_id)
    end = time.monotonic() - start
    steps, rows = store.sql("SELECT (SELECT total_steps FROM runs WHERE id = ?), (SELECT count(*) FROM metrics "
                            "WHERE run_id = ?)", [run_id, run_id])[0]
    first = end if first is None else first
    return {"first_metric_s": first, "end_s": end, "step_ms": 1000 * (end - first) / max(1, steps),
            "rows_per_s": rows / max(1e-9, end - first)}


def measure(name: str, manager: RunManager, store: Store, args) -> dict:
    config = parse_config({**BASE, "train": {**BASE["train"], "epochs_per_task": args.epochs}})
    one_run(manager, store, config)  # warm-up: the first run of a process pays for imports and the dataset
    singles = [one_run(manager, store, config) for _ in range(args.repeat)]
    median = {k: statistics.median(s[k] for s in singles) for k in singles[0]}
    spec = parse_sweep({"name": f"bench-{name}", "base": {**BASE, "train": {**BASE["train"], "epochs_per_task": args.epochs}},
                        "grid": {"train.lr": [0.05]}, "seeds": list(range(args.runs))})
    start = time.monotonic()
    sweep_id = launch_sweep(manager, spec)
    state = wait_sweep(manager, sweep_id)
    median["sweep_s"] = time.monotonic() - start
    median["sweep_state"] = state
    median["parallel"] = manager.max_parallel
    return median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=2, help="the local executor's workers")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5, help="epochs a task")
    args = ap.parse_args()
    from ray.cluster_utils import Cluster

    os.environ.setdefault("CL_LAB_THREADS", "1")
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        with Store(Path(tmp) / "local.duckdb") as store:
            manager = RunManager(store, max_parallel=args.parallel, warm_workers=args.parallel)
            results["local"] = measure("local", manager, store, args)
            manager.shutdown()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(args.nodes):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        try:
            with Store(Path(tmp) / "ray.duckdb") as store:
                manager = RunManager(store, executor="ray", executor_options={"address": cluster.address}, warm_workers=0)
                results["ray"] = measure("ray", manager, store, args)
                manager.shutdown()
        finally:
            cluster.shutdown()
    local, ray_ = results["local"], results["ray"]
    print(f"\none run ({args.epochs} epochs a task; median of {args.repeat}), and a sweep of {args.runs} runs")
    print(f"{'':28s}{'local':>12s}{'ray':>12s}{'ray / local':>14s}")
    for key, label in (("first_metric_s", "submit to first metric (s)"), ("end_s", "submit to end (s)"),
                       ("step_ms", "per step (ms)"), ("rows_per_s", "metric rows / s"),
                       ("sweep_s", f"sweep of {args.runs} (s)")):
        print(f"{label:28s}{local[key]:12.3f}{ray_[key]:12.3f}{ray_[key] / local[key]:14.2f}")
    print(f"{'runs at once':28s}{local['parallel']:12d}{ray_['parallel']:12d}")
    print(f"sweeps ended: local {local['sweep_state']}, ray {ray_['sweep_state']}")


if __name__ == "__main__":
    main()
