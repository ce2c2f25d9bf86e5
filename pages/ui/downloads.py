"""The Run page's downloads: each file made only when its button is clicked (a long run's metrics
are large), through engine/export.py as the CLI's ``export`` writes them."""

from __future__ import annotations

import json
from typing import Callable, NamedTuple

from engine.export import config_yaml, matrix_frame, metrics_frame, table_bytes


class Download(NamedTuple):
    label: str
    file_name: str
    mime: str
    make: Callable[[], bytes]


def run_downloads(store, run_id: int) -> list[Download]:
    from store.metrics import summary

    def summary_json() -> bytes:  # as engine.export.run_files writes it
        return json.dumps(summary(store, run_id), indent=2, default=str).encode()

    def matrix_csv() -> bytes:  # rows 0..T of the configured T, NaN where not measured yet
        return table_bytes(matrix_frame(summary(store, run_id)["accuracy_matrix"]), "csv")

    stem = f"run-{run_id}"
    return [
        Download("Metrics, every step (Parquet)", f"{stem}-metrics.parquet", "application/vnd.apache.parquet",
                 lambda: table_bytes(metrics_frame(store, run_id), "parquet")),
        Download("Metrics, every step (CSV)", f"{stem}-metrics.csv", "text/csv",
                 lambda: table_bytes(metrics_frame(store, run_id), "csv")),
        Download("Accuracy matrix (CSV)", f"{stem}-accuracy_matrix.csv", "text/csv", matrix_csv),
        Download("Summary (JSON)", f"{stem}-summary.json", "application/json", summary_json),
        Download("Config (YAML)", f"{stem}-config.yaml", "application/yaml",
                 lambda: config_yaml(store, run_id).encode()),
    ]
