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


def download_menu(items: list[Download], label: str = "Download") -> None:
    """A popover of download buttons; each file is made only when its button is clicked."""
    import streamlit as st

    with st.popover(label, icon=":material/download:", width="stretch"):
        for item in items:
            st.download_button(item.label, item.make, file_name=item.file_name, mime=item.mime,
                               key=f"download-{item.file_name}", on_click="ignore", width="stretch")


def exported(items: list[Download], the_lab, run_ids: list[int], who) -> list[Download]:
    """The downloads, each checked and written to the audit table when its file is made: the lab
    (``Lab.check_export``) refuses a principal who may not export every one of ``run_ids``
    (engine/core/access.py). Each file made is remembered with its runs, for the same check when it is
    served (pages/ui/guarded_media.py)."""
    from pages.ui.guarded_media import remember_download

    def guarded(item: Download) -> Download:
        def make() -> bytes:
            the_lab.check_export(run_ids, who, detail=item.file_name)
            return remember_download(item.make(), run_ids, item.file_name)

        return item._replace(make=make)

    return [guarded(item) for item in items]


def run_downloads(store, run_id: int) -> list[Download]:
    from store.metrics.summary import summary

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
        *report_downloads(store, [run_id], stem=f"{stem}-report"),
    ]


def report_downloads(store, run_ids: list[int], sweep_id: int | None = None, stem: str = "report",
                     **comparison) -> list[Download]:
    """The report (engine/report) of one run, or of a comparison of runs or a sweep: one offline HTML
    file, a PDF (A4 or US Letter) and the bundle (zip: both, the config and the data)."""
    from engine.report import build_report, report_bundle, report_pdf
    from engine.report.html import render_html

    def html() -> bytes:
        return render_html(build_report(store, run_ids, sweep_id, **comparison))

    return [
        Download("Report (HTML, offline)", f"{stem}.html", "text/html", html),
        Download("Report (PDF, A4)", f"{stem}-a4.pdf", "application/pdf",
                 lambda: report_pdf(store, run_ids, sweep_id, paper="a4", **comparison)),
        Download("Report (PDF, US Letter)", f"{stem}-letter.pdf", "application/pdf",
                 lambda: report_pdf(store, run_ids, sweep_id, paper="letter", **comparison)),
        Download("Report bundle (zip: HTML, PDF, config, data)", f"{stem}-bundle.zip", "application/zip",
                 lambda: report_bundle(store, run_ids, sweep_id, **comparison)),
    ]
