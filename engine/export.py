"""A run's data out of the lab, as files: its per-step metrics (long form, as stored), its accuracy
matrix, its summary (every metric, null with a reason where unavailable) and its config (YAML, which
`python -m engine run` takes back). The Run page's downloads, the CLI's ``export`` and the report
bundles all come through here.

``python -m engine export RUN_ID... --format parquet|csv [-o DIR]`` (engine/cli/export.py) writes
``DIR/run-<id>/``: ``metrics.<fmt>``, ``accuracy_matrix.<fmt>``, ``summary.json`` and ``config.yaml``.
"""

from __future__ import annotations

import io
import json

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
