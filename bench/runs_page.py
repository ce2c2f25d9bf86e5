"""How long the Runs page takes server-side with many runs.

Fills a temporary lab with ``--runs`` runs shaped like the default one (5-task Split-Digits, 45 steps a
task, evaluation every 10 steps: about 400 metric rows a run), of several strategies, learning rates
and seeds, a few in sweeps and a few still running, with tags and notes. Then times what the page does
on each 2 s refresh: the table query with a search, the summary metrics (cold: every run computed;
warm: from the cache, the running runs recomputed), the hyperparameter columns, a range filter and a
sort. With ``--page`` it also times the whole page through Streamlit's AppTest (the script, the
widgets and the table's Arrow serialisation; the lab's workers are started first).

    python bench/runs_page.py [--runs 1000] [--repeat 5] [--page]

Target (issue 11): the 2 s refresh stays fast with 1,000 runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store import Store  # noqa: E402
from store.runs_view import column_options, runs_view  # noqa: E402

STRATEGIES = ("naive", "replay", "ewc", "lwf", "der")
TASKS, STEPS, EVERY = 5, 45, 10


def fill(store: Store, n_runs: int) -> None:
    rng = np.random.default_rng(0)
    sweep = store.create_sweep("bench", "grid", {})
    for n in range(n_runs):
        strategy = STRATEGIES[n % len(STRATEGIES)]
        config = {"name": f"{strategy}-{n}", "seed": n % 3,
                  "scenario": {"dataset": "digits", "setting": "class", "n_tasks": TASKS},
                  "model": {"name": "mlp", "hidden": [256, 256]},
                  "strategy": {"name": strategy, **({"buffer_size": int(rng.choice([100, 200, 500]))}
                                                    if strategy in ("replay", "der") else {})},
                  "train": {"optimizer": "sgd", "lr": float(rng.choice([0.01, 0.05, 0.1])), "batch_size": 32},
                  "eval": {"every": EVERY, "subset": None}}
        running = n >= n_runs - 4
        run_id = store.create_run(config, name=config["name"], status="running", total_steps=TASKS * STEPS,
                                  sweep_id=sweep if n % 10 == 0 else None)
        steps = np.arange(1, TASKS * STEPS + 1)
        rows = [(run_id, int(s), int((s - 1) // STEPS + 1), "train_loss", float(rng.random())) for s in steps]
        for task in range(1, TASKS + 1):
            store.start_task(run_id, task, (task - 1) * STEPS, wait=False)
            for s in range((task - 1) * STEPS + EVERY, task * STEPS + 1, EVERY):
                rows += [(run_id, s, j, "acc", float(rng.random())) for j in range(1, TASKS + 1)]
            store.end_task(run_id, task, task * STEPS, wait=False)
        for i in range(TASKS + 1):
            rows += [(run_id, i * STEPS, j, "boundary_acc", float(rng.random())) for j in range(1, TASKS + 1)]
        store.add_metrics({k: list(v) for k, v in zip(("run_id", "step", "task", "metric", "value"), zip(*rows))})
        if not running:
            store.set_status(run_id, "finished")
        if n % 7 == 0:
            store.annotate_run(run_id, tags=["bench", strategy], notes=f"run {n}: lr from the grid")
    store.flush()


def refresh(store: Store) -> int:
    """What the page's fragment computes on one refresh (the widgets' choices of a busy user)."""
    keys, _ = column_options(store)
    df = runs_view(store, search="digits", columns=["acc", "bwt", "forgetting", "min_acc", *keys[:2]],
                   ranges={"acc": (0.1, None)}, sort_by="acc", descending=True)
    return len(df)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--page", action="store_true", help="also time the whole page through AppTest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.duckdb"
        t = time.perf_counter()
        with Store(path, serve=False) as store:
            fill(store, args.runs)
            rows = store.sql("SELECT count(*) FROM metrics")[0][0]
            print(f"{args.runs} runs, {rows:,} metric rows, filled in {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            n = refresh(store)
            print(f"first refresh (every summary computed): {time.perf_counter() - t:.3f} s, {n} runs listed")
            running = [r[0] for r in store.sql("SELECT id FROM runs WHERE status = 'running'")]
            times = []
            for i in range(args.repeat):
                step = TASKS * STEPS + 1 + i  # the running runs move on between refreshes: computed again
                store.add_metrics({"run_id": running, "step": [step] * len(running), "task": [TASKS] * len(running),
                                   "metric": ["acc"] * len(running), "value": [0.5] * len(running)})
                store.flush()
                t = time.perf_counter()
                refresh(store)
                times.append(time.perf_counter() - t)
            print(f"later refreshes (from the cache but the {len(running)} running runs): "
                  f"median {statistics.median(times):.3f} s, max {max(times):.3f} s")
        if args.page:
            time_page(path, args.repeat)


def time_page(path: Path, repeat: int) -> None:
    from streamlit.testing.v1 import AppTest

    os.environ["CL_LAB_DB"] = str(path)
    from pages.ui.lab import close_labs, lab_at

    lab_at(str(path.resolve()), False)
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=300)
        t = time.perf_counter()
        at.switch_page("pages/runs.py").run()
        assert not at.exception, at.exception
        print(f"page, first load (every summary computed): {time.perf_counter() - t:.3f} s")
        at.multiselect(key="runs_columns").set_value(["acc", "bwt", "forgetting", "min_acc"])
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
        print(f"page, later runs (whole script, {len(at.dataframe[0].value)} rows in the table): "
              f"median {statistics.median(times):.3f} s, max {max(times):.3f} s")
    finally:
        close_labs()


if __name__ == "__main__":
    main()
