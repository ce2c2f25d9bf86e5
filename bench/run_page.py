"""How long the run page takes server-side on a long run, finished and live.

Fills a temporary store with one 5-task run evaluated at every step, ``--points`` evaluations of
each task (so also ``--points`` training steps, ``--points / 5`` a task; ``--per-task N`` gives N
steps a task instead): ``--points`` x 5 accuracy rows, as many loss rows and ``--points`` training
losses, 11 x ``--points`` metric rows in all. Then times what the run page does on each refresh: its
queries (the downsampled series, the training loss, the boundaries, the summary metrics) and building
the Altair charts into their Vega-Lite specs.

- finished: the whole run is in the file; the first refresh (cold: nothing held yet) and the next
  ones (the run's data unchanged) are timed apart.
- live: the run is still training its last task; before each refresh ``--append`` more steps of
  rows (every task's acc and loss, the training loss) are written, as a worker would.

    python bench/run_page.py [--points 100000 | --per-task 20000] [--repeat 5] [--append 1000]

Target (issue 11): under 0.5 s in all at 1,000,000 evaluations per task (11 M metric rows).
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

from engine.charts.panels import accuracy_matrix_heatmap, run_panels  # noqa: E402
from store import Store  # noqa: E402
from store.metrics.summary import summary  # noqa: E402
from store.queries import boundaries, downsampled_long, run_series  # noqa: E402


def synthetic(points: int, n_tasks: int = 5, seed: int = 0) -> dict:
    """A run shaped like a real one, evaluated at every one of its ``points`` steps: each task climbs
    while trained, old tasks dip just after each switch (the stability gap) and partly recover."""
    rng = np.random.default_rng(seed)
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
    loss = 2 * np.exp(-((steps - 1) % per_task) / per_task * 5) + rng.normal(0, 0.02, points)
    return {"n_tasks": n_tasks, "per_task": per_task, "steps": steps, "task": k, "acc": acc, "train_loss": loss}


def append(store: Store, run_id: int, run: dict, lo: int, hi: int) -> None:
    """Write steps lo+1..hi of ``run`` (0-based rows lo..hi-1): every task's acc and loss, the
    training loss; and the task boundaries they cross, as the engine does."""
    n_tasks, per_task = run["n_tasks"], run["per_task"]
    steps, acc = run["steps"][lo:hi], run["acc"][lo:hi]
    n = len(steps)
    tasks = np.tile(np.arange(1, n_tasks + 1), n)
    for metric, values in (("acc", acc.ravel()), ("loss", (1 - acc).ravel() * 2)):
        for a in range(0, len(tasks), 250_000):
            b = a + 250_000
            store.add_metrics({"run_id": np.full(len(tasks[a:b]), run_id), "step": np.repeat(steps, n_tasks)[a:b],
                               "task": tasks[a:b], "metric": [metric] * len(tasks[a:b]), "value": values[a:b]})
    store.add_metrics({"run_id": np.full(n, run_id), "step": steps, "task": run["task"][lo:hi],
                       "metric": ["train_loss"] * n, "value": run["train_loss"][lo:hi]})
    for j in range(1, n_tasks + 1):
        start, end = (j - 1) * per_task, j * per_task
        if lo <= start < hi or (lo == 0 and start == 0):
            store.start_task(run_id, j, start)
        if lo < end <= hi:
            final = [float(x) for x in run["acc"][end - 1]]
            store.add_metrics({"run_id": [run_id] * n_tasks, "step": [end] * n_tasks, "task": range(1, n_tasks + 1),
                               "metric": ["boundary_acc"] * n_tasks, "value": final})
            store.end_task(run_id, j, end)
    store.update_run(run_id, last_step=int(steps[-1]) if n else 0)
    store.flush()


def fill(store: Store, points: int, n_tasks: int = 5, upto: int | None = None, seed: int = 0,
         config: dict | None = None) -> int:
    """A synthetic run (``synthetic``) in ``store``, finished; with ``upto``, only its first ``upto``
    steps are written and it is still running. ``config``: more of the run's config."""
    run = synthetic(points, n_tasks, seed)
    live = upto is not None and upto < points
    config = {"eval": {"every": 1, "subset": None}, "scenario": {"n_tasks": n_tasks}, **(config or {})}
    run_id = store.create_run(config, name="long", status="running" if live else "finished", total_steps=points)
    store.add_metrics({"run_id": [run_id] * n_tasks, "step": [0] * n_tasks, "task": range(1, n_tasks + 1),
                       "metric": ["boundary_acc"] * n_tasks, "value": [0.0] * n_tasks})
    append(store, run_id, run, 0, upto if live else points)
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


def report(title: str, runs: list[dict], target: float = 0.5, rows_note: str = "Altair's limit: 5,000 per dataset") -> None:
    """The median of each timed part (and of "rows sent") over ``runs``, their total against ``target`` s."""
    print(f"\n{title}, median of {len(runs)}:")
    total = 0.0
    for key in runs[0]:
        value = statistics.median(r[key] for r in runs)
        if key == "rows sent":
            print(f"  {key:20s} {int(value):8,d}  ({rows_note})")
        else:
            total += value
            print(f"  {key:20s} {value * 1000:8.1f} ms")
    print(f"  {'total':20s} {total * 1000:8.1f} ms   target < {target * 1000:.0f} ms: {'met' if total < target else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--points", type=int, default=100_000,
                      help="evaluations of each task (evaluation every step: also the run's training steps)")
    size.add_argument("--per-task", type=int, help="training steps a task (evaluations of each task: 5 x this)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--append", type=int, default=1000, help="steps written before each live refresh")
    args = parser.parse_args()
    n_tasks = 5
    points = args.per_task * n_tasks if args.per_task else args.points
    if points < n_tasks or args.repeat < 1 or args.append < 1:
        parser.error(f"--points must be at least {n_tasks} (one step a task), --repeat and --append at least 1")
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb", serve=False) as store:
        t = time.perf_counter()
        run_id = fill(store, points, n_tasks)
        n = store.sql("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id])[0][0]
        print(f"finished run: {n:,} metric rows ({points:,} evaluations of each of {n_tasks} tasks) "
              f"written in {time.perf_counter() - t:.1f} s")
        report("finished run, first refresh (nothing held yet)", [page_refresh(store, run_id)])
        report("finished run, next refreshes", [page_refresh(store, run_id) for _ in range(args.repeat)])

        upto = max(points - args.append * (args.repeat + 1), points - points // n_tasks // 2)
        live_id = fill(store, points, n_tasks, upto=upto)
        run = synthetic(points, n_tasks)
        print(f"\nlive run: {upto:,} of {points:,} steps written, then {args.append:,} steps more before each refresh")
        report("live run, first refresh (nothing held yet)", [page_refresh(store, live_id)])
        times = []
        for i in range(args.repeat):
            lo = min(points, upto + i * args.append)
            append(store, live_id, run, lo, min(points, lo + args.append))
            times.append(page_refresh(store, live_id))
        report("live run, refreshes with new steps", times)


if __name__ == "__main__":
    main()
