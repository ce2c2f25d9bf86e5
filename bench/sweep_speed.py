"""How close a sweep of N short runs on P workers comes to N/P times one run's time.

One RunManager (``max_parallel`` = P, P warm workers) on a fresh DuckDB file. Before any timing the
workers are started and each has trained one warm-up run (the first run in a process pays for its
first dataset load and Fabric set-up). Then, through the same manager:

1. one run alone, ``--repeat`` times (the median is "one run's time", submit to end);
2. a grid sweep of N runs (the same config over N seeds), ``launch_sweep`` to the last run's end.

    python bench/sweep_speed.py [--runs 8] [--parallel 2] [--repeat 3] [--strategy naive] [--epochs 40]

The runs are the default workload (5-task class-incremental Split-Digits, MLP 256-256, SGD lr 0.05,
batch 32, evaluation every 10 steps) with 40 epochs a task instead of 5: 1,800 steps, about 1 s each
here, so that a worker's per-run cost (about 20-70 ms between runs) shows without dominating. With
the default 5 epochs (0.16 s a run) that cost dominates and the ratio is about 1.5. Other processes
busy on the machine skew the figure: the load average is printed first.
Target (issue 5): the sweep within 1.25x of N/P times one run's time, on this 2-core machine.
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
from engine.sweeps.sweep import launch_sweep, parse_sweep, sweep_progress, wait_sweep  # noqa: E402
from store import Store  # noqa: E402

BASE = {"scenario": {"dataset": "digits", "setting": "class", "n_tasks": 5},
        "model": {"name": "mlp", "hidden": [256, 256]},
        "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs_per_task": 40},
        "eval": {"every": 10, "subset": None}}


def wait_ready(manager: RunManager, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if manager.counts()["idle"] >= n:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{n} workers were not ready after {timeout:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--strategy", default="naive")
    ap.add_argument("--epochs", type=int, default=BASE["train"]["epochs_per_task"], help="epochs a task")
    args = ap.parse_args()
    base = {**BASE, "strategy": {"name": args.strategy},
            "train": {**BASE["train"], "epochs_per_task": args.epochs}}

    print("load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "lab.duckdb")
        manager = RunManager(store, max_parallel=args.parallel, warm_workers=args.parallel)
        try:
            t0 = time.perf_counter()
            wait_ready(manager, args.parallel)
            warm = [manager.submit(parse_config({**base, "name": f"warm-up {i}", "seed": 100 + i}))
                    for i in range(args.parallel)]
            for run_id in warm:
                assert manager.wait(run_id, timeout=300) == "finished"
            print(f"workers started and warmed up in {time.perf_counter() - t0:.1f} s "
                  f"({args.parallel} workers, one warm-up run each)")

            singles = []
            for i in range(args.repeat):
                t = time.perf_counter()
                run_id = manager.submit(parse_config({**base, "name": f"single {i}", "seed": 200 + i}))
                assert manager.wait(run_id, timeout=300) == "finished"
                singles.append(time.perf_counter() - t)
            one = statistics.median(singles)
            steps = store.sql("SELECT total_steps FROM runs WHERE name = 'single 0'")[0][0]
            print(f"one run ({args.strategy}, {steps} steps): median {one:.2f} s of "
                  f"{', '.join(f'{s:.2f}' for s in singles)}")

            spec = parse_sweep({"name": "bench", "base": base, "seeds": list(range(args.runs))})
            t = time.perf_counter()
            sweep_id = launch_sweep(manager, spec)
            state = wait_sweep(manager, sweep_id, timeout=600)
            sweep = time.perf_counter() - t
            progress = sweep_progress(store, sweep_id)
            assert state == "done" and progress["counts"]["finished"] == args.runs, progress
            ideal = args.runs / args.parallel * one
            print(f"sweep of {args.runs} runs on {args.parallel} workers: {sweep:.2f} s "
                  f"(ideal {args.runs}/{args.parallel} x {one:.2f} = {ideal:.2f} s)")
            print(f"ratio: {sweep / ideal:.3f} (target <= 1.25)")
        finally:
            manager.shutdown()
            store.close()


if __name__ == "__main__":
    main()
