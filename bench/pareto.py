"""How long the Pareto view of 1,000 runs takes to build server-side, and one trade-off curve.

Fills a store as bench/metrics_summary.py does (three real runs of the default scenario, Naive,
Replay and EWC, copied in SQL into 1,000 runs with jittered accuracies), then times, median of
``--repeat``:

- ``frontier_table`` (learning_accuracy x min_acc): every run's two metrics computed from the store;
- ``pareto_chart(...).to_dict()`` (what Streamlit serialises), with three runs' trade-off curves;
- the same by config (seeds averaged);
- one interpolation curve (one task switch, 11 alphas, every task evaluated) and all four switches.

    python bench/pareto.py [--runs 1000] [--repeat 5]

Target (issue 5): frontier table + chart under 0.5 s for 1,000 runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from metrics_summary import fill  # noqa: E402

from engine.interpolate import compute_tradeoffs, tradeoff_table  # noqa: E402
from engine.charts.pareto import pareto_chart  # noqa: E402
from store import Store  # noqa: E402
from store.pareto import frontier_table  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    x, y = "learning_accuracy", "min_acc"
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        t = time.perf_counter()
        ids = fill(store, args.runs)
        print(f"{len(ids):,} runs made in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        compute_tradeoffs(store, ids[0], task=2)           # first call: imports, scenario, weights
        first = time.perf_counter() - t
        one, _ = timed(lambda: compute_tradeoffs(store, ids[0], task=2), args.repeat)
        every, _ = timed(lambda: compute_tradeoffs(store, ids[0]), args.repeat)
        for rid in ids[1:3]:
            compute_tradeoffs(store, rid)
        curves = __import__("pandas").concat([tradeoff_table(store, rid) for rid in ids[:3]], ignore_index=True)

        frontier_table(store, run_ids=ids[:5])             # warm the query path
        warm, table = timed(lambda: frontier_table(store, x, y), args.repeat)
        chart, spec = timed(lambda: pareto_chart(table, x, y, tradeoffs=curves).to_dict(), args.repeat)
        rows = max(len(v) for v in spec["datasets"].values())
        cwarm, configs = timed(lambda: frontier_table(store, x, y, by="config"), args.repeat)
        cchart, _ = timed(lambda: pareto_chart(configs, x, y, tradeoffs=curves).to_dict(), args.repeat)

    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    print(f"frontier_table of {len(table):,} runs: {ms(warm)}; {int(table['on_front'].sum())} on the frontier")
    print(f"pareto_chart(...).to_dict(): {ms(chart)} ({len(table):,} points + {len(curves)} curve rows; "
          f"largest dataset {rows:,} rows)")
    print(f"by config ({len(configs)} configs): table {ms(cwarm)}, chart {ms(cchart)}")
    print(f"interpolation, one curve (11 alphas x 5 tasks): {ms(one)} ({ms(first)} the first call, with imports); "
          f"all 4 switches: {ms(every)}")
    total = warm + chart
    print(f"table + chart: {ms(total)}: target < 500 ms for 1,000 runs {'met' if total < 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
