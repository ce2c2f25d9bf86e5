"""Published tables beside ours (docs/reproductions.md).

Each table is two files in configs/reproduce/: ``TABLE.yaml``, a plain sweep file with the paper's own
settings (``python -m engine sweep`` runs it as it is), and ``TABLE.published.yaml``, what the paper
printed and where::

    title: Buzzega et al. 2020 (DER), Table 2, Seq-MNIST
    source: where the figures were read (paper, table, repository file)
    order: 1                       # tables are written in this order
    scale: 100                     # published figures are percent; ours (a fraction) x scale (a column may
                                   # give its own, e.g. scale: 1 for a figure in steps)
    tolerance: 2                   # a difference above this many points needs its cause named
    lower_bound: false             # true: the figures are targets (Avalanche's), only falling short counts
    columns: [{name: Class-IL, metric: acc}, {name: Task-IL, metric: task_il_acc}]
    causes: {icarl-exemplars: "what differs and why"}            # the known causes, by key
    rows:
      - {name: ER (200), match: {strategy.name: replay, strategy.buffer_size: 200},
         published: {Class-IL: [80.43, 1.89], Task-IL: [97.86, 0.35]}, cause: icarl-exemplars}

A row's ``match`` picks the sweep's configs (dotted keys of the run config) it stands for, and a
column may add its own (``{name: Task-IL, metric: acc, match: {scenario.setting: task}}``: a paper
whose columns are separate runs); ``cause`` is a key of ``causes`` (or ``{column: key}``). A column whose metric this build does not have is shown
as pending. ``python bench/reproduce.py [TABLE...] --data DIR [--seeds N]`` runs each table's sweep
through the CLI (``python -m engine sweep``, its runs in a DuckDB file) and writes the document from
what the database holds: every config group of the sweep is a row, with the published figure it
matches. A sweep already finished in the same file with the same spec is reused, not run again; with
``--no-run`` nothing runs and a table without one says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core.inputs import ConfigError, read_yaml  # noqa: E402
# engine.sweeps and store (torch, lightning) are imported where used: a bad argument is answered at once

TABLES = ROOT / "configs" / "reproduce"
PUBLISHED = ".published.yaml"
SPREAD = "within 2 sd of the paper's runs"  # not a cause: the paper's own seeds spread that far


def load_published(path: Path) -> dict:
    """A table's published file, checked: ``ConfigError`` with one line per problem."""
    data = read_yaml(path)
    problems = []
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: must be a mapping with title, source, columns and rows"])
    problems += [f"{path}: {key}: is required" for key in ("title", "source", "columns", "rows") if key not in data]
    for i, c in enumerate(data.get("columns") or []):
        if not isinstance(c, dict) or not {"name", "metric"} <= set(c):
            problems.append(f"{path}: columns[{i}]: must be a mapping with name and metric")
    for i, r in enumerate(data.get("rows") or []):
        if not isinstance(r, dict) or "name" not in r or not isinstance(r.get("match"), dict):
            problems.append(f"{path}: rows[{i}]: must be a mapping with name and match (a mapping)")
        elif any(not isinstance(v, list) or not v for v in (r.get("published") or {}).values()):
            problems.append(f"{path}: rows[{i}].published: each column's figure must be [mean] or [mean, sd]")
    if problems:
        raise ConfigError(problems)
    return data


def table_names(folder: Path) -> list[str]:
    """The tables in ``folder``, in their ``order`` (each published file checked)."""
    names = [p.name[: -len(PUBLISHED)] for p in folder.glob("*" + PUBLISHED)]
    return sorted(names, key=lambda n: (load_published(folder / f"{n}{PUBLISHED}").get("order", 99), n))


def sweep_body(folder: Path, table: str, seeds: int | None) -> dict:
    body = read_yaml(folder / f"{table}.yaml")
    if seeds is not None:
        body["seeds"] = list(range(seeds))
    return body


def finished_sweep(db: Path, name: str, raw: dict) -> int | None:
    """The latest sweep in ``db`` named ``name`` with exactly this spec whose runs all ended."""
    from store import Store
    from store.schema import FINAL_STATUSES

    if not db.exists():
        return None
    store = Store(db, serve=False)
    try:
        for sweep_id, spec in store.sql("SELECT id, spec FROM sweeps WHERE name = ? ORDER BY id DESC", [name]):
            spec = json.loads(spec) if isinstance(spec, str) else spec
            statuses = [s for (s,) in store.sql("SELECT status FROM runs WHERE sweep_id = ?", [sweep_id])]
            if spec == raw and statuses and all(s in FINAL_STATUSES for s in statuses):
                return sweep_id
    finally:
        store.close()
    return None


def run_sweep(body: dict, db: Path, data: Path, parallel: int) -> tuple[int | None, float, str]:
    """Run the sweep through ``python -m engine sweep``, its progress lines passed on to stderr; (its id,
    wall seconds, the CLI's last lines)."""
    with tempfile.TemporaryDirectory(prefix="cl-lab-reproduce-") as tmp:
        path = Path(tmp) / f"{body['name']}.yaml"
        path.write_text(json.dumps(body))  # JSON is YAML
        started = time.perf_counter()
        lines: list[str] = []
        with subprocess.Popen([sys.executable, "-m", "engine", "sweep", str(path), "--db", str(db),
                               "--parallel", str(parallel)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ, "CL_LAB_DATA": str(data)}) as proc:
            for line in proc.stdout:
                lines.append(line.rstrip())
                print("  " + line.rstrip(), file=sys.stderr, flush=True)
        wall = time.perf_counter() - started
    sweep_id = next((int(line.split()[1]) for line in lines if line.startswith("sweep ") and " queued: " in line), None)
    return sweep_id, wall, "\n".join(lines[-3:])


def _matches(flat: dict, match: dict) -> bool:
    return all(json.dumps(flat.get(k), sort_keys=True) == json.dumps(v, sort_keys=True) for k, v in match.items())


def _seconds(store, run_ids: list[int]) -> float:
    marks = ",".join("?" * len(run_ids))
    return float(store.sql(f"SELECT coalesce(sum(epoch(finished_at) - epoch(started_at)), 0) FROM runs "
                           f"WHERE id IN ({marks})", run_ids)[0][0])


def table_rows(store, sweep_id: int, published: dict) -> list[dict]:
    """The published rows, then one row per config group of the sweep that no published cell took
    (named by its strategy and hyperparameters). A row's cell for a column is the group that matches
    the row's and the column's ``match``: {"values": ours x scale, "launched": runs, "seconds": their
    summed time}; "pending" where the build lacks the column's metric; None where nothing ran."""
    from engine.sweeps.results import config_results, flat_config as _flat
    from store.metrics import METRICS

    scale = published.get("scale", 1)
    columns = published["columns"]
    results = {c["metric"]: config_results(store, sweep_id, c["metric"]) for c in columns if c["metric"] in METRICS}
    groups = config_results(store, sweep_id, "acc")  # the same groups, in the same order, for every metric
    flats = [_flat(g["config"]) for g in groups]
    taken: set[int] = set()

    def cells(match: dict, only: set[int] | None = None) -> dict:
        out = {}
        for c in columns:
            want = {**match, **c.get("match", {})}
            i = next((i for i, f in enumerate(flats) if (only is None or i in only) and _matches(f, want)), None)
            if c["metric"] not in results:
                out[c["name"]] = "pending"
            elif i is None:
                out[c["name"]] = None
            else:
                taken.add(i)
                g = results[c["metric"]][i]
                factor = c.get("scale", scale)  # a column in steps, not a fraction, gives scale: 1
                out[c["name"]] = {"values": [v * factor for v in g["values"]], "launched": len(g["run_ids"]),
                                  "seconds": _seconds(store, g["run_ids"])}
        return out

    rows = [{"name": r["name"], "ref": r, "cells": cells(r["match"])} for r in published["rows"]]
    for i, g in enumerate(groups):
        if i not in taken:
            label = g["strategy"] + "".join(f" {k.split('.', 1)[1]}={v}" for k, v in g["hparams"].items()
                                            if k.startswith("strategy."))
            rows.append({"name": f"{label} (not in the paper)", "ref": {}, "cells": cells({}, only={i})})
    return rows


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{sd}"


def _known_cause(ref: dict, column: str, causes: dict) -> str:
    """The row's cause from the table's known causes ("" if it names none)."""
    key = ref.get("cause")
    if isinstance(key, dict):
        key = key.get(column)
    return f"{key}: {causes[key]}" if key in causes else ""


def _cause(ref: dict, column: str, causes: dict, difference: float) -> str:
    """The row's known cause; else, where the paper gives an sd and the difference is within two of
    them, that (the paper's own runs spread that far); else unexplained."""
    known = _known_cause(ref, column, causes)
    if known:
        return known
    published = ref["published"][column]
    if len(published) > 1 and abs(difference) <= 2 * published[1]:
        return f"{SPREAD} (sd {published[1]:.2f})"
    return "unexplained"


def markdown_table(table: str, published: dict, rows: list[dict], command: str, wall: float | None,
                   note: str = "") -> list[str]:
    tolerance = published.get("tolerance", 2)
    causes = published.get("causes", {})
    lines = [f"## {published['title']}", "", f"Source of the published figures: {published['source']}", "",
             f"Sweep file: `configs/reproduce/{table}.yaml`. Command: `{command}`"
             + (f" ({wall:.0f} s from the first run's start to the last one's end)" if wall is not None else "")
             + ".", ""]
    if causes:  # every known difference, named once, whether or not a row's difference needs it
        lines += ["Known differences from the paper's setting:", ""] + [f"- `{k}`: {v}" for k, v in causes.items()] + [""]
    if note:
        return lines + [note, ""]
    table = ["| Method | Column | Published | Ours (mean ± sd) | Seeds finished | Difference | Time | Cause |",
             "|---|---|---|---|---|---|---|---|"]
    counts = {"within": 0, "spread": 0, "named": 0, "unexplained": 0}
    for row in rows:
        ref = row["ref"]
        for c in published["columns"]:
            name, cell = c["name"], row["cells"][c["name"]]
            pub = (ref.get("published") or {}).get(name)
            pub_text = "-" if pub is None else f"{pub[0]:.2f}" + (f" ± {pub[1]:.2f}" if len(pub) > 1 else "")
            diff, cause, seconds = "-", "", "-"
            if cell is None:  # a known cause says why, where the table names one
                ours, seeds, cause = "not run", "0/0", _known_cause(ref, name, causes)
            elif cell == "pending":
                ours, seeds = f"pending (metric `{c['metric']}` is not in this build)", "-"
            else:
                values = cell["values"]
                ours, seeds, seconds = _mean_sd(values), f"{len(values)}/{cell['launched']}", f"{cell['seconds']:.0f} s"
                if values and pub is not None:
                    d = statistics.mean(values) - pub[0]
                    diff = f"{d:+.2f}"
                    short = -d if published.get("lower_bound") else abs(d)  # a target: above it is no shortfall
                    cause = _cause(ref, name, causes, d) if short > tolerance else ""
                    counts["within" if not cause else "unexplained" if cause == "unexplained"
                           else "spread" if cause.startswith(SPREAD) else "named"] += 1
            table.append(f"| {row['name']} | {name} | {pub_text} | {ours} | {seeds} | {diff} | {seconds} | {cause} |")
    compared = sum(counts.values())
    lines.append(f"Of {compared} figure(s) compared: {counts['within']} within {tolerance:g} points, "
                 f"{counts['spread']} beyond but within 2 of the paper's sds, {counts['named']} beyond with a cause "
                 f"named, {counts['unexplained']} unexplained.")
    return lines + [""] + table + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", help="table names (files in --tables); default: all, in their order")
    parser.add_argument("--data", type=Path, required=True, help="the data directory (MNIST/raw/... under it)")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 instead of the sweep file's")
    parser.add_argument("--db", type=Path, default=ROOT / "bench" / "out" / "reproductions.duckdb")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (default 1)")
    parser.add_argument("--no-run", action="store_true",
                        help="run nothing: a table whose sweep has not finished in --db is listed as not run yet")
    parser.add_argument("--tables-dir", type=Path, default=TABLES)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reproductions.md")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: not a directory")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: must be at least 1")
    try:
        known = table_names(args.tables_dir)
    except ConfigError as err:  # a published file that cannot be read: its lines, nothing written
        print("\n".join(err.problems), file=sys.stderr)
        return 2
    for t in args.tables:
        if t not in known:
            parser.error(f"{t!r} is not a table in {args.tables_dir} (tables: {', '.join(known) or 'none'})")
    tables = args.tables or known
    from engine.sweeps.sweep import parse_sweep, planned_runs
    from store import Store

    os.environ["CL_LAB_DATA"] = str(args.data)  # the sweep files name no machine's paths
    args.db.parent.mkdir(parents=True, exist_ok=True)
    command = "python bench/reproduce.py " + " ".join(
        [*args.tables, "--data", str(args.data)] + (["--seeds", str(args.seeds)] if args.seeds else [])
        + (["--no-run"] if args.no_run else []))
    lines = ["# Reproductions: the published tables beside ours", "",
             f"Generated by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the runs in "
             f"`{args.db.name}`. Ours: mean ± sd over the seeds that finished (the sample sd), in the paper's units; "
             "Difference: ours minus published; a difference over a table's tolerance names its cause "
             "(from the table's known causes) or says unexplained. Time: the runs' summed training time.", ""]
    for table in tables:
        published = load_published(args.tables_dir / f"{table}{PUBLISHED}")
        body = sweep_body(args.tables_dir, table, args.seeds)
        table_command = f"python bench/reproduce.py {table} --data {shlex.quote(str(args.data))}" + (
            f" --seeds {args.seeds}" if args.seeds else "")
        try:
            spec = parse_sweep(body)
        except ConfigError as err:  # a setting this build cannot express yet
            lines += markdown_table(table, published, [], table_command, None,
                                    "Pending: the sweep does not run on this build:\n\n"
                                    + "\n".join(f"- {line}" for line in err.problems))
            print(f"{table}: pending: {len(err.problems)} problem(s), the first: {err.problems[0]}", file=sys.stderr)
            continue
        sweep_id, wall = finished_sweep(args.db, spec.name, spec.raw), None
        if sweep_id is None and args.no_run:
            lines += markdown_table(table, published, [], table_command, None,
                                    f"Not run yet ({planned_runs(spec)} runs): `{table_command}` runs it.")
            print(f"{table}: not run yet (--no-run)", file=sys.stderr)
            continue
        if sweep_id is None:
            print(f"{table}: running {planned_runs(spec)} runs ...", file=sys.stderr, flush=True)
            sweep_id, wall, tail = run_sweep(body, args.db, args.data, args.parallel)
            if sweep_id is None:
                print(f"{table}: the sweep did not start:\n{tail}", file=sys.stderr)
                return 1
        else:
            print(f"{table}: sweep {sweep_id} already finished in {args.db}: reused", file=sys.stderr)
        store = Store(args.db, serve=False)
        try:
            rows = table_rows(store, sweep_id, published)
            if wall is None:  # reused: the span of its runs
                wall = store.sql("SELECT epoch(max(finished_at)) - epoch(min(started_at)) FROM runs WHERE sweep_id = ?",
                                 [sweep_id])[0][0]
        finally:
            store.close()
        lines += markdown_table(table, published, rows, table_command, wall)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
