"""How long the summary metrics of many runs take to come out of the store.

Trains three real runs of the default scenario (5-task class-incremental Split-Digits, MLP 256-256,
5 epochs a task, evaluation every 10 steps: Naive, Replay, EWC), copies them in SQL into 1,000 runs
(accuracies jittered so no two are alike), then times ``store.metrics.summaries`` over all of them,
and one run's ``summary`` for comparison.

    python bench/metrics_summary.py [--runs 1000] [--repeat 3]

Target (issue 4): 1,000 runs in under a second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import parse_config  # noqa: E402
from engine.runs.manager import run_in_process  # noqa: E402
from store import Store  # noqa: E402
from store.metrics.summary import summaries, summary  # noqa: E402

DEFAULT = {"scenario": {"dataset": "digits", "setting": "class", "n_tasks": 5}, "model": {"name": "mlp", "hidden": [256, 256]},
           "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs_per_task": 5, "weights": "every"},
           "eval": {"every": 10}}  # weights every: bench/pareto.py interpolates them


def fill(store: Store, n_runs: int) -> list[int]:
    seeds = [run_in_process(store, parse_config({**DEFAULT, "strategy": s}))
             for s in ({"name": "naive"}, {"name": "replay"}, {"name": "ewc"})]

    def copy(cur):
        cur.execute(
            """INSERT INTO runs (name, config, status, total_steps, last_step)
               SELECT 'copy ' || i, r.config, r.status, r.total_steps, r.last_step
               FROM range($n) t(i) JOIN runs r ON r.id = $seeds[1 + i % 3]""",
            {"n": n_runs - len(seeds), "seeds": seeds})
        cur.execute(
            """CREATE TEMP TABLE copies AS
               SELECT id AS run_id, $seeds[1 + (row_number() OVER (ORDER BY id) - 1) % 3] AS source
               FROM runs WHERE name LIKE 'copy %'""", {"seeds": seeds})
        cur.execute(
            """INSERT INTO metrics SELECT c.run_id, m.step, m.task, m.metric,
                      least(1, greatest(0, m.value + 0.02 * (random() - 0.5)))
               FROM copies c JOIN metrics m ON m.run_id = c.source""")
        cur.execute("INSERT INTO task_boundaries SELECT c.run_id, b.task, b.start_step, b.end_step "
                    "FROM copies c JOIN task_boundaries b ON b.run_id = c.source")
    store.call(copy).result()
    return [r[0] for r in store.sql("SELECT id FROM runs ORDER BY id")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        t = time.perf_counter()
        ids = fill(store, args.runs)
        rows = store.sql("SELECT count(*) FROM metrics")[0][0]
        print(f"{len(ids):,} runs, {rows:,} metric rows, made in {time.perf_counter() - t:.1f} s")
        summaries(store, ids[:10])  # warm
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            result = summaries(store, ids)
            times.append(time.perf_counter() - t)
        assert len(result) == len(ids) and all(r["acc"] is not None for r in result)
        one = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            summary(store, ids[-1])
            one.append(time.perf_counter() - t)
    total = statistics.median(times)
    print(f"summaries of {len(ids):,} runs: {total * 1000:.0f} ms (median of {args.repeat}); "
          f"one run's summary: {statistics.median(one) * 1000:.1f} ms")
    print(f"target < 1000 ms for 1,000 runs: {'met' if total < 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
