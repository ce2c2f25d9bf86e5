"""The ``tradeoffs`` table: a run's interpolated models between two task boundaries, one row per
(switch, alpha, task) (engine/interpolate.py computes them)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa


def write_tradeoffs(store, run_id: int, from_tasks: list[int], df: pd.DataFrame) -> None:
    """Replace the run's rows for the switches ``from_tasks`` with ``df`` (columns run_id, from_task,
    alpha, task, acc, loss), in one writer transaction: the old curve goes only if the new one lands."""
    table = pa.table({"run_id": pa.array(df["run_id"], pa.int32()), "from_task": pa.array(df["from_task"], pa.int16()),
                      "alpha": pa.array(df["alpha"], pa.float64()), "task": pa.array(df["task"], pa.int16()),
                      "acc": pa.array(df["acc"], pa.float64()), "loss": pa.array(df["loss"], pa.float64())})

    def write(cur):
        try:
            cur.execute("DELETE FROM tradeoffs WHERE run_id = ? AND list_contains(?, from_task)", [run_id, from_tasks])
            cur.register("tradeoff_batch", table)
            cur.execute("INSERT INTO tradeoffs SELECT run_id, from_task, alpha, task, acc, loss FROM tradeoff_batch")
        finally:
            cur.unregister("tradeoff_batch")

    store.call(write).result()


def tradeoff_rows(source, run_id: int) -> pd.DataFrame:
    """The run's stored rows (from_task, alpha, task, acc), in that order; ``source``: a Store or a cursor."""
    cur = source.cursor() if hasattr(source, "cursor") and not hasattr(source, "fetchall") else source
    try:
        return cur.execute("SELECT from_task, alpha, task, acc FROM tradeoffs WHERE run_id = ? "
                           "ORDER BY from_task, alpha, task", [run_id]).df()
    finally:
        if cur is not source:
            cur.close()
