"""The Home demo's stability gap and time, over seeds: `python bench/demo_gap.py [--seeds 0 1 2 ...]`.

For each seed: the mean over the task switches of the earlier tasks' fall within the first quarter of
the new task, the share of it recovered by the task's end (store.metrics.switch_dips), the final average
accuracy, and the wall time of the run through the run manager and a warm worker, as the Home button
launches it (the worker's start-up is paid before, as in the lab)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import load_config  # noqa: E402
from engine.runs.manager import RunManager  # noqa: E402
from store import Store  # noqa: E402
from store.metrics.matrix import acc  # noqa: E402
from store.metrics.summary import load_run  # noqa: E402
from store.metrics.gap import switch_dips  # noqa: E402

DEMO = Path(__file__).resolve().parent.parent / "configs" / "replay-demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "lab.duckdb")
        manager = RunManager(store, max_parallel=1, warm_workers=1)
        manager.wait(manager.submit(load_config(DEMO).model_copy(update={"seed": 99})), timeout=300)  # warm up
        print("seed  fall   recovered  final ACC  time (s)")
        falls, recs, times = [], [], []
        for seed in args.seeds:
            start = time.perf_counter()
            run_id = manager.submit(load_config(DEMO).model_copy(update={"seed": seed}))
            manager.wait(run_id, timeout=300)
            took = time.perf_counter() - start
            run = load_run(store, run_id)
            dips = switch_dips(run.steps, run.A, run.spans)
            fall = float(np.mean([d["fall"] for d in dips]))
            rec = float(np.mean([d["end"] - d["lowest"] for d in dips])) / fall if fall > 0 else float("nan")
            falls.append(fall), recs.append(rec), times.append(took)
            print(f"{seed:4d}  {fall:.3f}  {rec:9.2f}  {acc(run.R)[0]:9.3f}  {took:8.2f}")
        print(f"mean  {np.mean(falls):.3f}  {np.mean(recs):9.2f}  {'':9s}  {np.mean(times):8.2f}")
        print(f"seeds with fall >= 0.10 and half recovered: "
              f"{sum(f >= 0.10 and r >= 0.5 for f, r in zip(falls, recs))}/{len(falls)}")
        manager.shutdown()
        store.close()


if __name__ == "__main__":
    main()
