"""How long the run page takes server-side on a long run.

Fills a temporary store with one 5-task run of 100,000 evaluation points per task (evaluation every
step: 500,000 accuracy rows, as many loss rows, 100,000 training losses), then times what the run
page does on each refresh: its queries (the downsampled series, the training loss, the boundaries,
the summary metrics) and building the Altair charts into their Vega-Lite specs.

    python bench/run_page.py [--points 100000] [--repeat 5]

Target (issue 3): under 0.5 s in all.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pages.ui.charts import accuracy_matrix_heatmap, run_panels  # noqa: E402
from store import Store  # noqa: E402
from store.metrics import summary  # noqa: E402
from store.queries import boundaries, downsampled_long, run_series  # noqa: E402


def fill(store: Store, points: int, n_tasks: int = 5) -> int:
    """A synthetic run shaped like a real one: each task climbs while trained, old tasks dip just after
    each switch (the stability gap) and partly recover; evaluation every step."""
    run_id = store.create_run({"eval": {"every": 1, "subset": None}, "scenario": {"n_tasks": n_tasks}}, name="long", status="finished")
    rng = np.random.default_rng(0)
    per_task = points // n_tasks  # training steps per task; every step evaluates every task
    steps = np.arange(1, points + 1)
    k = (steps - 1) // per_task + 1  # the task trained at each step
    acc = np.zeros((points, n_tasks))
    for j in range(1, n_tasks + 1):
        start = (j - 1) * per_task
        since = steps - start
        learned = np.where(k >= j, 1 - np.exp(-np.clip(since, 0, None) / (per_task / 20)), 0.0)
        after = np.clip(steps - j * per_task, 0, None)
        in_later = (k > j)
        since_switch = (steps - 1) % per_task
        gap = np.where(in_later, 0.4 * np.exp(-since_switch / (per_task / 50)), 0.0)
        forget = np.where(in_later, 0.2 * (1 - np.exp(-after / per_task)), 0.0)
        acc[:, j - 1] = np.clip(0.95 * learned - gap - forget + rng.normal(0, 0.01, points), 0, 1)
    tasks = np.tile(np.arange(1, n_tasks + 1), points)
    for metric, values in (("acc", acc.ravel()), ("loss", (1 - acc).ravel() * 2)):
        for lo in range(0, len(tasks), 250_000):
            hi = lo + 250_000
            store.add_metrics({"run_id": np.full(len(tasks[lo:hi]), run_id), "step": np.repeat(steps, n_tasks)[lo:hi],
                               "task": tasks[lo:hi], "metric": [metric] * len(tasks[lo:hi]), "value": values[lo:hi]})
    store.add_metrics({"run_id": np.full(points, run_id), "step": steps, "task": k, "metric": ["train_loss"] * points,
                       "value": 2 * np.exp(-((steps - 1) % per_task) / per_task * 5) + rng.normal(0, 0.02, points)})
    final = acc[[0] + [j * per_task - 1 for j in range(1, n_tasks + 1)]]
    b = {"run_id": [], "step": [], "task": [], "metric": [], "value": []}
    for row, step in enumerate([0] + [j * per_task for j in range(1, n_tasks + 1)]):
        for j in range(n_tasks):
            b["run_id"].append(run_id), b["step"].append(step), b["task"].append(j + 1)
            b["metric"].append("boundary_acc"), b["value"].append(float(final[row, j]))
    store.add_metrics(b)
    for j in range(1, n_tasks + 1):
        store.start_task(run_id, j, (j - 1) * per_task)
        store.end_task(run_id, j, j * per_task)
    store.flush()
    return run_id


def page_refresh(store: Store, run_id: int) -> dict[str, float]:
    times = {}
    t = time.perf_counter()
    series = run_series(store, run_id)
    times["series query"] = time.perf_counter() - t
    t = time.perf_counter()
    loss = downsampled_long(store, run_id, "train_loss")
    bounds = pd.DataFrame(boundaries(store, run_id), columns=["task", "start_step", "end_step"])
    times["loss + boundaries"] = time.perf_counter() - t
    t = time.perf_counter()
    metrics = summary(store, run_id)
    times["summary metrics"] = time.perf_counter() - t
    t = time.perf_counter()
    spec = run_panels(series, loss, bounds).to_dict()
    accuracy_matrix_heatmap(np.array(metrics["accuracy_matrix"], dtype=float)).to_dict()
    times["charts to spec"] = time.perf_counter() - t
    times["rows sent"] = sum(len(v) for v in spec["datasets"].values())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000, help="evaluation points per task")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        t = time.perf_counter()
        run_id = fill(store, args.points)
        n = store.sql("SELECT count(*) FROM metrics")[0][0]
        print(f"filled {n:,} metric rows in {time.perf_counter() - t:.1f} s")
        page_refresh(store, run_id)  # warm: first-call imports
        runs = [page_refresh(store, run_id) for _ in range(args.repeat)]
    print(f"\nrun page, server side, median of {args.repeat} (one run, {args.points:,} evaluation points per task):")
    total = 0.0
    for key in runs[0]:
        value = statistics.median(r[key] for r in runs)
        if key == "rows sent":
            print(f"  {key:20s} {int(value):8,d}  (Altair's limit: 5,000 per dataset)")
        else:
            total += value
            print(f"  {key:20s} {value * 1000:8.1f} ms")
    print(f"  {'total':20s} {total * 1000:8.1f} ms   target < 500 ms: {'met' if total < 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
