"""Reports that stand on their own: a run's or a comparison's report as one offline HTML file, a PDF
(A4 or US Letter, vector charts) and a bundle (zip) with both and the data to reproduce them.

For the pages (Export buttons) and notebooks; each returns the file's bytes::

    run_report_html(store, run_id)
    compare_report_html(store, run_ids, sweep_id=None, group_by=None, x=None, y=None)
    report_pdf(store, run_ids, sweep_id=None, paper="a4", **comparison)      # run_ids: one id or several
    report_bundle(store, run_ids, sweep_id=None, paper="a4", **comparison)

``comparison``: ``group_by`` (strategy, or a config key such as ``train.lr``; default strategy when the
runs have several, else the first hyperparameter that differs) and the Pareto axes ``x``, ``y`` (keys
of ``store.pareto.AXES``; default learning_accuracy and min_acc), as chosen on the Compare page.

One run id and no sweep make a run report; several ids, or a sweep, a comparison. A ``ReportError``
(a ``ValueError``) says in one line why a report cannot be made (no such run, nothing selected).
The CLI: ``python -m engine report RUN_ID... [--sweep NAME|ID] -o PATH.html [--pdf PATH.pdf]
[--bundle PATH.zip] [--paper a4|letter]`` (engine/cli/report.py).
"""

from __future__ import annotations

from typing import Iterable

from engine.report.content import ReportError, compare_report, run_report
from engine.report.document import Report

__all__ = ["Report", "ReportError", "build_report", "compare_report_html", "report_bundle", "report_pdf",
           "run_report_html"]


def build_report(store, run_ids: int | Iterable[int] | None, sweep_id: int | None = None,
                 group_by: str | None = None, x: str | None = None, y: str | None = None) -> Report:
    ids = [run_ids] if isinstance(run_ids, int) else list(run_ids or [])
    if sweep_id is None and len(ids) == 1:
        return run_report(store, int(ids[0]))
    return compare_report(store, ids or None, sweep_id=sweep_id, group_by=group_by, x=x, y=y)


def run_report_html(store, run_id: int) -> bytes:
    from engine.report.html import render_html

    return render_html(run_report(store, int(run_id)))


def compare_report_html(store, run_ids: Iterable[int] | None, sweep_id: int | None = None,
                        group_by: str | None = None, x: str | None = None, y: str | None = None) -> bytes:
    from engine.report.html import render_html

    return render_html(compare_report(store, run_ids, sweep_id=sweep_id, group_by=group_by, x=x, y=y))


def report_pdf(store, run_ids: int | Iterable[int] | None, sweep_id: int | None = None, paper: str = "a4",
               **comparison) -> bytes:
    from engine.report.pdf import render_pdf

    return render_pdf(build_report(store, run_ids, sweep_id, **comparison), paper)


def report_bundle(store, run_ids: int | Iterable[int] | None, sweep_id: int | None = None, paper: str = "a4",
                  **comparison) -> bytes:
    from engine.report.bundle import bundle_bytes
    from engine.report.html import render_html
    from engine.report.pdf import render_pdf

    report = build_report(store, run_ids, sweep_id, **comparison)
    return bundle_bytes(store, report, render_html(report), render_pdf(report, paper))
