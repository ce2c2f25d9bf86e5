"""One consistent view of a run for the Run page: its row, series, boundaries, training loss and
summary read in ONE read transaction, so a live page never draws parts of different moments
("finished" beside 40 % progress, or "waiting for the first evaluation" beside final figures).
DuckDB's MVCC gives the transaction a snapshot as of its first read; the store's writer commits
each batch of writes (metrics, boundaries, status) as one transaction of its own."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from store.metrics.summary import summary
from store.metrics.run_cache import read_snapshot
from store.queries import boundaries, downsampled_long, run_row, run_series


@dataclass(frozen=True)
class RunView:
    run: dict
    series: pd.DataFrame  # store.queries.run_series
    loss: pd.DataFrame  # step, task, value of the training loss, downsampled
    bounds: pd.DataFrame  # task, start_step, end_step (end_step None while the task trains)
    summary: dict  # store.metrics.summary.summary

    @property
    def status(self) -> str:
        return self.run["status"]


def run_view(store, run_id: int, points: int = 2000) -> RunView | None:
    """Everything the Run page draws of ``run_id`` as of one moment; None if there is no such run.
    ``points``: about how many rows the series and the loss are downsampled to (extremes kept)."""
    cur = store.cursor()
    try:
        with read_snapshot(cur):
            run = run_row(cur, run_id)
            if run is None:
                return None
            return RunView(
                run=run,
                series=run_series(cur, run_id, points),
                loss=downsampled_long(cur, run_id, "train_loss", points),
                bounds=pd.DataFrame(boundaries(cur, run_id), columns=["task", "start_step", "end_step"]),
                summary=summary(cur, run_id),
            )
    finally:
        cur.close()
