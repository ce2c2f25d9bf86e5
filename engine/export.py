"""A run's data out of the lab, as files: its per-step metrics (long form, as stored), its accuracy
matrix, its summary (every metric, null with a reason where unavailable) and its config (YAML, which
`python -m engine run` takes back). The Run page's downloads, the CLI's ``export`` and the report
bundles all come through here.

``python -m engine export RUN_ID... --format parquet|csv [-o DIR]`` writes ``DIR/run-<id>/``:
``metrics.<fmt>``, ``accuracy_matrix.<fmt>``, ``summary.json`` and ``config.yaml``.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml

FORMATS = ("parquet", "csv")


def metrics_frame(store, run_id: int) -> pd.DataFrame:
    """Every stored measurement of the run: step, task, metric, value, ordered."""
    return store.df("SELECT step, task, metric, value FROM metrics WHERE run_id = ? ORDER BY step, metric, task",
                    [run_id])


def matrix_frame(matrix) -> pd.DataFrame:
    """The accuracy matrix with its rows named: row 0 before training, row i after task i."""
    R = np.asarray(matrix, dtype=float)
    n = R.shape[1] if R.ndim == 2 else 0
    df = pd.DataFrame(R.reshape(-1, n), columns=[f"task {j}" for j in range(1, n + 1)])
    df.insert(0, "after task", range(len(df)))
    return df


def config_yaml(store, run_id: int) -> str:
    (text,) = store.sql("SELECT config FROM runs WHERE id = ?", [run_id])[0]
    return yaml.safe_dump(json.loads(text), sort_keys=False)


def table_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "parquet":
        df.to_parquet(buffer, index=False)
    else:
        buffer.write(df.to_csv(index=False).encode())
    return buffer.getvalue()


def run_files(store, run_id: int, fmt: str = "parquet") -> dict[str, bytes]:
    """The export of one run, file name to content."""
    from store.metrics.summary import summary

    result = summary(store, run_id)
    return {
        f"metrics.{fmt}": table_bytes(metrics_frame(store, run_id), fmt),
        f"accuracy_matrix.{fmt}": table_bytes(matrix_frame(result["accuracy_matrix"]), fmt),
        "summary.json": json.dumps(result, indent=2, default=str).encode(),
        "config.yaml": config_yaml(store, run_id).encode(),
    }


def cmd_export(args, open_store: Callable[[Path], object]) -> int:
    store = open_store(args.db, read_only=True)  # a snapshot while the lab holds the file
    try:
        known = {r[0] for r in store.sql("SELECT id FROM runs WHERE id IN (SELECT unnest(?::INTEGER[]))",
                                         [list(args.run_ids)])}
        missing = [i for i in args.run_ids if i not in known]
        if missing:
            print(f"error: no run {', '.join(map(str, missing))} in {args.db}; nothing was written", file=sys.stderr)
            return 2
        exported = {run_id: run_files(store, run_id, args.format) for run_id in args.run_ids}
    finally:
        store.close()
    for run_id, files in exported.items():
        folder = args.output / f"run-{run_id}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        print(f"run {run_id}: {folder} ({', '.join(files)})")
    return 0


def add_export_commands(sub, open_store: Callable[[Path], object]) -> None:
    from store import DEFAULT_DB

    ex = sub.add_parser("export", help="write runs' metrics, accuracy matrix, summary and config to files",
                        description="For each run, DIR/run-<id>/: metrics (every step, long form), accuracy_matrix, "
                                    "summary.json (every metric) and config.yaml (`python -m engine run` takes it).")
    ex.add_argument("run_ids", type=int, nargs="+", metavar="RUN_ID")
    ex.add_argument("--format", choices=FORMATS, default="parquet", help="tables as Parquet (default) or CSV")
    ex.add_argument("-o", "--output", type=Path, default=Path("."), metavar="DIR", help="where to write (default .)")
    ex.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"the lab's DuckDB file (default {DEFAULT_DB})")
    ex.set_defaults(func=lambda args: cmd_export(args, open_store))
