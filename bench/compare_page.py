"""How long the Compare page takes server-side over many long runs.

Fills a store with ``--runs`` synthetic runs of ``--points`` evaluation steps each (the run shape of
bench/run_page.py's ``fill``: 5 tasks, every task evaluated every step, a stability gap after each
switch; one run is filled, the others are copies of it with noise and their own strategy and seed:
5 strategies x runs/5 seeds), then times what the page does, part by part:

- cold: the first render (nothing in memory yet), once;
- refresh: a later render (the ended runs' buckets and summaries come from memory);
- refresh, one run live: one run more, still training its last task, writes ``--append`` steps before
  each refresh (it alone is read again, from its last step on).

    python bench/compare_page.py [--runs 100] [--points 100000] [--repeat 3] [--db lab.duckdb]

With ``--db`` an existing file is reused (filled only if empty). Target (issue 11): under 1 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402

from bench import run_page  # noqa: E402
from bench.run_page import append, fill, synthetic  # noqa: E402
from engine.charts.panels import compare_spec  # noqa: E402
from store.palette import group_styles  # noqa: E402
from engine.charts.pareto import POINTS_DATA, pareto_spec  # noqa: E402
from store import Store  # noqa: E402
from store.compare import (COMPARE_SERIES, X_AXES, clear_caches, group_curves, group_label,  # noqa: E402
                           group_metrics, scenario_counts, select_runs)
from store.pareto import DEFAULT_X, DEFAULT_Y, frontier_table  # noqa: E402

STRATEGIES = ("naive", "replay", "ewc", "lwf", "der")


def fill_store(store: Store, runs: int, points: int) -> None:
    """``runs`` runs: one filled by ``fill``, the others copied from it in SQL with noise."""
    base = fill(store, points)
    config = lambda i: {"strategy": {"name": STRATEGIES[i % len(STRATEGIES)]}, "seed": i // len(STRATEGIES),
                        "scenario": {"dataset": "digits", "setting": "class", "n_tasks": 5},
                        "eval": {"every": 1, "subset": None}}
    store.update_run(base, config=config(0), total_steps=points, last_step=points)
    store.write("UPDATE runs SET finished_at = current_localtimestamp() WHERE id = ?", [base])
    ids = [store.create_run(config(i), name=f"copy-{i}", status="finished", total_steps=points) for i in range(1, runs)]
    store.write("UPDATE runs SET last_step = ?, finished_at = current_localtimestamp() WHERE list_contains(?, id)",
                [points, ids])
    # each copy: the base run's curves shifted by its strategy (so groups differ) plus per-seed noise
    store.write(
        """INSERT INTO metrics
           SELECT r.id, m.step, m.task, m.metric,
                  CASE WHEN m.metric IN ('acc', 'boundary_acc')
                       THEN least(1.0, greatest(0.0, m.value - 0.05 * (r.i % 5) + 0.02 * (random() - 0.5)))
                       ELSE m.value END
           FROM metrics m, (SELECT unnest(?::INTEGER[]) AS id, unnest(range(1, ?)) AS i) r
           WHERE m.run_id = ?""", [ids, runs, base])
    store.write("INSERT INTO task_boundaries SELECT r.id, b.task, b.start_step, b.end_step FROM task_boundaries b, "
                "(SELECT unnest(?::INTEGER[]) AS id) r WHERE b.run_id = ?", [ids, base])


def page(store: Store, x_axis: str) -> dict[str, float]:
    """What pages/compare.py computes on a render of every run grouped by strategy, timed per part."""
    times = {}
    t = time.perf_counter()
    runs = select_runs(store)
    scenario_counts(runs)
    times["select runs"] = time.perf_counter() - t
    t = time.perf_counter()
    curves = group_curves(store, runs, "strategy", x=x_axis)
    times["curves query"] = time.perf_counter() - t
    t = time.perf_counter()
    group_metrics(store, runs, "strategy")
    times["metrics table"] = time.perf_counter() - t
    t = time.perf_counter()
    frontier = frontier_table(store, DEFAULT_X, DEFAULT_Y, run_ids=runs["id"].tolist())
    times["frontier"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = {int(i): group_label(c, "strategy") for i, c in zip(runs["id"], runs["config"])}
    styles = group_styles(sorted(set(labels.values())))
    curves_spec = compare_spec(curves, COMPARE_SERIES, x_title=X_AXES[x_axis], styles=styles)
    for data in curves_spec["datasets"].values():  # st.vega_lite_chart sends each dataset as Arrow
        pa.Table.from_pandas(data)
    times["curves chart"] = time.perf_counter() - t
    t = time.perf_counter()
    spec = pareto_spec(frontier.assign(group=frontier["id"].map(labels)), DEFAULT_X, DEFAULT_Y, color="group",
                       styles=styles)
    pa.Table.from_pandas(spec["datasets"][POINTS_DATA])
    times["frontier chart"] = time.perf_counter() - t
    times["rows sent"] = max(len(v) for v in curves_spec["datasets"].values())
    return times


def report(title: str, results: list[dict]) -> None:
    run_page.report(title, results, target=1.0, rows_note="largest dataset; Altair's limit: 5,000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--points", type=int, default=100_000, help="evaluation steps per run (5 tasks each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--x", choices=list(X_AXES), default="progress")
    parser.add_argument("--append", type=int, default=1000, help="steps the live run writes before each refresh")
    parser.add_argument("--db", type=Path, help="a store file to reuse (filled if it has no runs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(args.db or Path(tmp) / "bench.duckdb") as store:
        if not store.sql("SELECT count(*) FROM runs")[0][0]:
            t = time.perf_counter()
            fill_store(store, args.runs, args.points)
            print(f"filled {store.sql('SELECT count(*) FROM metrics')[0][0]:,} metric rows of "
                  f"{args.runs} runs in {time.perf_counter() - t:.1f} s")
        clear_caches()
        colds = [page(store, args.x)]  # once: minutes on a large store
        refreshes = [page(store, args.x) for _ in range(args.repeat)]
        # one more run, still training its last task: --append steps more before each refresh
        live_run = synthetic(args.points, seed=7)
        upto = args.points - args.append * (args.repeat + 1)
        live_id = fill(store, args.points, upto=upto, seed=7, config={
            "strategy": {"name": "naive"}, "seed": 99, "eval": {"every": 1, "subset": None},
            "scenario": {"dataset": "digits", "setting": "class", "n_tasks": 5}})
        page(store, args.x)  # its first sight: read whole
        lives = []
        for i in range(args.repeat):
            append(store, live_id, live_run, upto + i * args.append, upto + (i + 1) * args.append)
            lives.append(page(store, args.x))
        store.delete_run(live_id)  # a reused --db keeps its --runs runs
    report(f"Compare page, cold (nothing in memory), {args.runs} runs x {args.points:,} evaluation steps, x = {args.x}", colds)
    report("Compare page, refresh (ended runs from memory)", refreshes)
    report(f"Compare page, refresh with one run more, live ({args.append:,} steps written before each)", lives)


if __name__ == "__main__":
    main()
