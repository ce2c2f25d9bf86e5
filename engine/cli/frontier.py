"""Commands ``frontier`` and ``tradeoff`` of ``python -m engine``.

    python -m engine frontier [--x METRIC] [--y METRIC] [--sweep NAME|ID] [--by run|config] [--db PATH] [--json]
    python -m engine tradeoff RUN_ID [--task K] [--db PATH] [--json]

Exit codes as the rest of the CLI: 0 done, 2 bad input (unknown metric, sweep or run, missing
weights), 3 the database is held by another process.
"""

from __future__ import annotations

import json
import math
import sys

from engine.cli.setup import add_db_argument, open_store
from engine.interpolate import MissingWeights
from engine.lab import Lab
from store.pareto import DEFAULT_X, DEFAULT_Y, UnknownMetric, axis, axis_title, front_records, frontier_table, resolve_sweep


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def cmd_frontier(args) -> int:
    for flag, key in (("--x", args.x), ("--y", args.y)):
        try:
            axis(key)
        except UnknownMetric as err:
            print(f"error: {flag}: {err}", file=sys.stderr)
            return 2
    if args.x == args.y:
        print("error: --x and --y must be different metrics", file=sys.stderr)
        return 2
    store = open_store(args.db, read_only=True)  # a snapshot while the lab holds the file
    try:
        sweep_id = None
        if args.sweep is not None:
            try:
                sweep_id = resolve_sweep(store, args.sweep)
            except LookupError as err:
                print(f"error: --sweep: {err}", file=sys.stderr)
                return 2
        table = frontier_table(store, args.x, args.y, sweep_id=sweep_id, by=args.by)
    finally:
        store.close()
    front = front_records(table)
    excluded = table.attrs["excluded"]
    if args.json:
        print(json.dumps({"x": args.x, "y": args.y, "by": args.by, "sweep_id": sweep_id,
                          "maximize": {"x": table.attrs["maximize"][0], "y": table.attrs["maximize"][1]},
                          "n_selected": table.attrs["n_selected"], "n_points": len(table),
                          "front": front, "excluded": excluded}, indent=2, default=str))
        return 0
    what = "configs" if args.by == "config" else "runs"
    print(f"x = {args.x}: {axis_title(args.x)}; y = {args.y}: {axis_title(args.y)}")
    print(f"{len(front)} of {len(table)} {what} on the frontier"
          + (f"; {len(excluded)} run(s) left out (a metric unavailable)" if excluded else ""))
    if front:
        if args.by == "config":
            header = ["id", "runs", "strategy", "hyperparameters", args.x, "sd", args.y, "sd"]
            rows = [[str(r["id"]), ",".join(map(str, r["ids"])), str(r["strategy"]), r["hparams"],
                     _fmt(r[args.x]), _fmt(r[f"{args.x}_std"]), _fmt(r[args.y]), _fmt(r[f"{args.y}_std"])] for r in front]
        else:
            header = ["id", "name", "strategy", "hyperparameters", args.x, args.y]
            rows = [[str(r["id"]), str(r["name"]), str(r["strategy"]), r["hparams"], _fmt(r[args.x]), _fmt(r[args.y])]
                    for r in front]
        _print_table(header, rows)
    for e in excluded[:10]:
        print(f"  left out: run {e['id']}: {e['reason']}")
    if len(excluded) > 10:
        print(f"  ... and {len(excluded) - 10} more")
    return 0


def cmd_tradeoff(args) -> int:
    the_lab = Lab(open_store(args.db, create=False))  # it trains nothing: no run manager
    try:
        try:
            table = the_lab.tradeoff_curve(args.run_id, args.task)
        except (KeyError, MissingWeights, ValueError) as err:
            print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
            return 2
    finally:
        the_lab.close()
    if args.json:
        print(table.to_json(orient="records", indent=2))
        return 0
    tasks = [c for c in table.columns if c.startswith("task ")]
    print(f"run {args.run_id}: models interpolated between the weights after task k-1 (alpha 0) and k (alpha 1); "
          "plasticity = accuracy on task k, stability = mean accuracy on tasks before k")
    header = ["k-1→k", "alpha", "plasticity", "stability", *tasks]
    rows = [[f"{r['from_task']}→{r['to_task']}", f"{r['alpha']:.2f}", _fmt(r["plasticity"]), _fmt(r["stability"]),
             *(_fmt(r[t]) for t in tasks)] for r in table.to_dict("records")]
    _print_table(header, rows)
    return 0


def add_commands(sub) -> None:
    fr = sub.add_parser("frontier", help="print the non-dominated runs on two metrics (Pareto frontier)",
                        description="Print the runs (or configs averaged over seeds) that no other run beats on "
                                    "both metrics. Metrics: the keys of `python -m engine metrics`, and "
                                    "stability_from_forgetting = 1 - forgetting.")
    fr.add_argument("--x", default=DEFAULT_X, metavar="METRIC", help=f"x axis (default {DEFAULT_X}, plasticity)")
    fr.add_argument("--y", default=DEFAULT_Y, metavar="METRIC", help=f"y axis (default {DEFAULT_Y}, stability)")
    fr.add_argument("--sweep", metavar="NAME", help="only the runs of this sweep (its name or id)")
    fr.add_argument("--by", choices=("run", "config"), default="run",
                    help="run: one point a run; config: runs averaged over seeds (config without name and seed)")
    fr.add_argument("--json", action="store_true", help="one JSON object: the frontier and the runs left out")
    fr.set_defaults(func=cmd_frontier)
    tr = sub.add_parser("tradeoff", help="interpolate a run's weights across task switches, evaluate, store and print",
                        description="For each task switch k (or only --task K): models interpolated between the "
                                    "weights after task k-1 and k at alpha 0, 0.1, ..., 1, evaluated on every task's "
                                    "held-out set; stored in the tradeoffs table (earlier rows replaced).")
    tr.add_argument("run_id", type=int)
    tr.add_argument("--task", type=int, metavar="K", help="only the switch to task K (weights after K-1 and K)")
    tr.add_argument("--json", action="store_true", help="the rows as a JSON list")
    tr.set_defaults(func=cmd_tradeoff)
    for p in (fr, tr):
        add_db_argument(p)
