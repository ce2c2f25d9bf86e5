"""The Run page through AppTest over a real lab: a finished run, a queued one and one followed while
it trains; the chart builders at 2 to 20 tasks; the downloads' bytes."""

import io
import json
import re
import time
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from engine.runs.manager import run_in_process
from engine.charts.panels import accuracy_matrix_heatmap, accuracy_matrix_spec, before_training, gap_marks, run_panels, run_spec
from pages.ui.downloads import run_downloads
from store.queries import boundaries, downsampled_long, run_row, run_series
from tests.conftest import ROOT, page_lab, small_config

STATUS = re.compile(r"^\*\*(\w+)\*\* · .* · step (\d+)/(\d+|\?)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from page_lab(tmp_path_factory, "run_page")


@pytest.fixture(scope="module")
def finished_run(lab):
    return run_in_process(lab.store, small_config("replay", n_tasks=3, eval={"every": 2}))


def run_page(run_id: int) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("pages/run.py")
    at.query_params["run"] = str(run_id)
    return at.run()


def shown(at) -> dict:
    """What one render of the Run page shows, for the consistency checks."""
    header = next(m.value for m in at.markdown if STATUS.match(m.value))
    status, step, total = STATUS.match(header).groups()
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    return {
        "status": status, "step": int(step), "total": total,
        "progress": len(at.get("progress")),
        "cancel": any(b.label == "Cancel run" for b in at.button),
        "waiting": any("Waiting for the first evaluation" in i.value for i in at.info),
        "figures": {m.label: m.value for m in at.metric},
        "charts": charts,
        "panel_tables": [pa.ipc.open_stream(d.data.data).read_all() for d in at.get("vega_lite_chart")[0].proto.datasets]
        if charts and "vconcat" in charts[0] else [],
    }


def series_rows(view) -> int:
    """The rows of the panels' series drawn (0: the panels are drawn empty, or not at all)."""
    return sum(t.num_rows for t in view["panel_tables"] if "training_task" in t.column_names)


def downloads_shown(at) -> list[str]:
    return [d.proto.label for d in at.get("download_button")]


def encodings(spec) -> list[tuple[str, dict]]:
    """Every field encoding of a spec, nested views included."""
    found = []
    if isinstance(spec, dict):
        for channel, enc in (spec.get("encoding") or {}).items():
            for e in enc if isinstance(enc, list) else [enc]:
                if isinstance(e, dict) and "field" in e:
                    found.append((channel, e))
                if isinstance(e, dict) and isinstance(e.get("condition"), dict) and "field" in e["condition"]:
                    found.append((channel, e["condition"]))
        for key in ("layer", "vconcat", "hconcat", "concat"):
            for child in spec.get(key, []):
                found += encodings(child)
    return found


def test_a_finished_run_shows_final_figures_full_width_charts_and_no_live_controls(lab, finished_run):
    at = run_page(finished_run)
    assert not at.exception
    view = shown(at)
    assert view["status"] == "finished" and view["step"] == int(view["total"]) > 0
    assert view["progress"] == 0 and not view["cancel"] and not view["waiting"]
    assert float(view["figures"]["ACC"]) > 0.3
    panels, matrix = view["charts"]
    # the width given (the container's, in the browser test) includes axes and legends (fit-x)
    assert panels["autosize"]["type"] == "fit-x" and matrix["autosize"]["type"] == "fit-x"
    for panel in panels["vconcat"][:2]:
        legend = next(e["legend"] for ch, e in encodings(panel) if ch == "color" and "legend" in e)
        assert legend["orient"] == "top" and legend["labelLimit"] == 0 and legend["titleLimit"] == 0
    assert downloads_shown(at) == ["Metrics, every step (Parquet)", "Metrics, every step (CSV)",
                                   "Accuracy matrix (CSV)", "Summary (JSON)", "Config (YAML)",
                                   "Report (HTML, offline)", "Report (PDF, A4)", "Report (PDF, US Letter)",
                                   "Report bundle (zip: HTML, PDF, config, data)"]
    y = next(e for ch, e in encodings(matrix) if ch == "y")
    assert y["scale"]["domain"] == ["init", "task 1", "task 2", "task 3"]


def test_a_class_il_run_shows_mammoths_task_il_figure_beside_acc(lab, finished_run):
    from store.metrics.summary import summary

    figures = shown(run_page(finished_run))["figures"]
    assert figures["Task-IL (masked)"] == f"{summary(lab.store, finished_run)['task_il_acc']:.3f}"
    assert float(figures["Task-IL (masked)"]) >= float(figures["ACC"])


def test_every_encoding_of_the_run_charts_has_a_type(lab, finished_run):
    at = run_page(finished_run)
    for spec in shown(at)["charts"]:
        # x2 and y2 take the type of x and y (Vega-Lite gives them none of their own)
        untyped = [(ch, e["field"]) for ch, e in encodings(spec) if "type" not in e and ch not in ("x2", "y2")]
        assert not untyped


def test_the_downloads_are_the_runs_metrics_matrix_summary_and_config(lab, finished_run):
    files = {d.file_name: d for d in run_downloads(lab.store, finished_run)}
    stem = f"run-{finished_run}"
    assert set(files) == {f"{stem}-metrics.parquet", f"{stem}-metrics.csv", f"{stem}-accuracy_matrix.csv",
                          f"{stem}-summary.json", f"{stem}-config.yaml", f"{stem}-report.html",
                          f"{stem}-report-a4.pdf", f"{stem}-report-letter.pdf", f"{stem}-report-bundle.zip"}
    stored = lab.store.df("SELECT step, task, metric, value FROM metrics WHERE run_id = ? ORDER BY step, metric, task",
                          [finished_run])
    assert len(stored) > 100
    parquet = pd.read_parquet(io.BytesIO(files[f"{stem}-metrics.parquet"].make()))
    pd.testing.assert_frame_equal(parquet, stored, check_dtype=False)
    csv = pd.read_csv(io.BytesIO(files[f"{stem}-metrics.csv"].make()))
    assert len(csv) == len(stored) and np.allclose(csv["value"], stored["value"], equal_nan=True)
    summary = json.loads(files[f"{stem}-summary.json"].make())
    matrix = pd.read_csv(io.BytesIO(files[f"{stem}-accuracy_matrix.csv"].make()))
    assert list(matrix.columns) == ["after task", "task 1", "task 2", "task 3"] and len(matrix) == 4
    R = np.array(summary["accuracy_matrix"], dtype=float)
    assert np.allclose(matrix.drop(columns="after task").to_numpy(), R, equal_nan=True)
    # the last row's mean is the final average accuracy shown on the page
    assert summary["acc"] == pytest.approx(np.nanmean(R[-1]))
    config = yaml.safe_load(files[f"{stem}-config.yaml"].make())
    assert config == json.loads(run_row(lab.store, finished_run)["config"])
    # the report: the run's own (engine/report builds it; tests/test_report.py checks its content)
    html = files[f"{stem}-report.html"].make().decode()
    assert html.startswith("<!DOCTYPE html") and f"Run {finished_run}" in html and f"{summary['acc']:.3f}" in html
    assert files[f"{stem}-report-a4.pdf"].make().startswith(b"%PDF")
    with zipfile.ZipFile(io.BytesIO(files[f"{stem}-report-bundle.zip"].make())) as bundle:
        assert yaml.safe_load(bundle.read("config.yaml")) == config


def test_a_queued_run_shows_waiting_progress_and_cancel_and_no_figures(lab):
    lab.manager.pause()  # the run stays queued
    try:
        run_id = lab.manager.submit(small_config("naive"))
        at = run_page(run_id)
        assert not at.exception
        view = shown(at)
        assert view["status"] == "queued" and view["progress"] == 1 and view["cancel"]
        # the panels are there from the first render, empty: one chart whose data come in place
        assert view["waiting"] and len(view["charts"]) == 1 and series_rows(view) == 0
        folds = [t["fold"] for layer in view["charts"][0]["vconcat"][0]["layer"] for t in layer.get("transform", [])
                 if "fold" in t]
        assert folds == [["task 1", "task 2"]]  # the config's tasks: the spec the first evaluation keeps
        assert set(view["figures"].values()) == {"n/a"}
        assert len(downloads_shown(at)) == 9
        assert lab.manager.cancel(run_id)
    finally:
        lab.manager.resume()


def test_a_live_run_never_shows_mixed_states(lab):
    # long enough (a few seconds on an idle machine) to be rendered several times while it trains
    run_id = lab.manager.submit(small_config("replay", n_tasks=5, train={"epochs_per_task": 15}, eval={"every": 1}))
    seen, deadline = [], time.monotonic() + 180
    while run_row(lab.store, run_id)["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    while time.monotonic() < deadline:
        at = run_page(run_id)
        assert not at.exception
        view = shown(at)
        seen.append(view["status"])
        live = view["status"] not in ("finished", "failed", "cancelled", "diverged")
        # the controls follow the status of the same snapshot
        assert (view["progress"] == 1) == live and view["cancel"] == live
        if view["waiting"]:
            assert set(view["figures"].values()) == {"n/a"} and series_rows(view) == 0
        else:
            assert series_rows(view) > 0, view
        if view["panel_tables"]:  # the series drawn is of the moment the header gives: metrics and
            # last_step are committed together, so no step drawn lies beyond the header's
            series = next(t for t in view["panel_tables"] if "task 1" in t.column_names)
            assert max(series.column("step").to_pylist()) <= view["step"], view["step"]
        if not live:
            break
    assert seen[-1] == "finished", seen
    assert any(s == "running" for s in seen), seen  # it was followed while it trained


def test_run_view_reads_one_snapshot(lab, finished_run):
    """The mechanism behind the consistent view: inside the read transaction a commit made by the
    store's writer meanwhile is not seen."""
    cur = lab.store.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        before = run_row(cur, finished_run)["name"]
        lab.store.update_run(finished_run, name="renamed meanwhile")
        assert run_row(cur, finished_run)["name"] == before
        cur.execute("ROLLBACK")
        assert run_row(cur, finished_run)["name"] == "renamed meanwhile"
    finally:
        lab.store.update_run(finished_run, name=before)
        cur.close()


@pytest.mark.parametrize("n_tasks", [2, 5, 10, 20])
def test_the_matrix_labels_every_row_and_column_at_any_number_of_tasks(n_tasks):
    R = np.random.default_rng(n_tasks).random((n_tasks + 1, n_tasks))
    R[-1, -1] = np.nan  # a cell not measured keeps its row and column
    spec = accuracy_matrix_heatmap(R, width=300).to_dict()
    enc = dict(encodings(spec))
    rows = ["init"] + [f"task {i}" for i in range(1, n_tasks + 1)]
    assert enc["y"]["scale"]["domain"] == rows and enc["y"]["axis"]["labelOverlap"] is False
    assert enc["x"]["scale"]["domain"] == rows[1:] and enc["x"]["axis"]["labelOverlap"] is False
    assert spec["height"] >= 16 * (n_tasks + 1)  # room for every row's label
    assert spec["title"] == "Accuracy matrix"


def test_a_live_matrix_keeps_its_spec_as_its_cells_are_measured():
    """The live Run page's matrix: a new evaluation changes the training task's row; the spec stays
    the same (the browser updates the chart in place) and the report's Altair chart has the same."""
    R = np.full((4, 3), np.nan)
    R[0], R[1] = [0.1, 0.1, 0.1], [0.9, 0.2, 0.1]
    before = accuracy_matrix_spec(R, live=True)
    R[2, :2] = [0.5, 0.7]
    after = accuracy_matrix_spec(R, live=True)
    cells = [spec.pop("datasets")["accuracy_matrix"] for spec in (before, after)]
    assert before == after and after["usermeta"]["embedOptions"]["renderer"] == "canvas"
    assert (len(cells[0]), len(cells[1])) == (6, 8)
    assert cells[1].set_index(["after", "on"]).loc[("task 2", "task 2"), "accuracy"] == 0.7
    report = accuracy_matrix_heatmap(R).to_dict()
    assert {k: v for k, v in report.items() if k != "datasets"} == {k: v for k, v in accuracy_matrix_spec(R).items() if k != "datasets"}
    assert len(report["datasets"]["accuracy_matrix"]) == 8


def test_plasticity_is_drawn_a_segment_a_task_with_the_value_before_training_as_a_marker(lab, finished_run):
    cur = lab.store.cursor()
    series, loss = run_series(cur, finished_run), downsampled_long(cur, finished_run, "train_loss")
    bounds = pd.DataFrame(boundaries(cur, finished_run), columns=["task", "start_step", "end_step"])
    cur.close()
    starts = before_training(series, bounds)
    assert list(starts["task"]) == ["task 1", "task 2", "task 3"]
    for _, row in starts.iterrows():  # the new task's accuracy at the switch, from the series itself
        assert row["value"] == series.set_index("step").loc[row["step"], row["task"]]
    # class-incremental: before training, a new task is near 0 (the fall the line used to draw)
    assert (starts["value"].iloc[1:] < 0.3).all()
    spec = run_panels(series, loss, bounds, width=640).to_dict()
    stability = spec["vconcat"][1]
    lines = next(layer for layer in stability["layer"] if layer.get("mark", {}).get("type") == "line")
    assert lines["encoding"]["detail"] == {"field": "training_task", "type": "ordinal"}
    markers = [layer for layer in stability["layer"] if layer.get("mark", {}).get("type") == "point"]
    assert len(markers) == 1 and markers[0]["mark"]["filled"] is False
    assert spec["width"] if "width" in spec else stability["width"] == 640  # a numeric width still works


def test_a_refresh_sends_the_same_spec_with_new_data(lab, finished_run):
    """The Run page's chart is a spec built once per layout with named datasets: two moments of a run
    give the same spec (the browser then updates the data in place) and the Altair chart the report
    draws, with the data each moment holds."""
    cur = lab.store.cursor()
    series, loss = run_series(cur, finished_run), downsampled_long(cur, finished_run, "train_loss")
    bounds = pd.DataFrame(boundaries(cur, finished_run), columns=["task", "start_step", "end_step"])
    cur.close()
    switch = int(bounds["start_step"].iloc[1])
    early = (series[series["step"] < switch + 3], loss[loss["step"] < switch + 3], bounds.iloc[:2].assign(end_step=[switch, None]))
    late = (series, loss, bounds)
    specs = [run_spec(*moment, gap_marks([])) for moment in (early, late)]
    data = [spec.pop("datasets") for spec in specs]
    assert specs[0] == specs[1]  # nothing but the data changed
    assert len(data[0]["run_series"]) < len(data[1]["run_series"]) == len(series)
    newest = max(early[0]["step"].max(), early[1]["step"].max())
    assert data[0]["run_spans"]["end_step"].tolist() == [switch, newest]  # the task training now ends at the newest step
    assert data[1]["run_spans"]["label"].tolist() == ["task 1", "task 2", "task 3"]
    altair = run_panels(*late, gap_marks([])).to_dict()
    assert {k: v for k, v in altair.items() if k != "datasets"} == specs[1]
    assert len(altair["datasets"]["run_loss"]) == len(loss)
    # live: the renderer and ARIA pinned, so the spec does not change as the rows grow past the counts
    # at which Streamlit's front end would pick them itself (2,000 marks a row, 5,000 marks)
    big = pd.concat([series.assign(step=series["step"] + k * 100_000) for k in range(-(-5000 // len(series)))], ignore_index=True)
    live = [run_spec(*moment, gap_marks([]), live=True) for moment in (early, (big, loss, bounds))]
    assert len(live[0].pop("datasets")["run_series"]) < 100 < 5000 <= len(live[1].pop("datasets")["run_series"])
    assert live[0] == live[1]
    assert live[0]["usermeta"]["embedOptions"]["renderer"] == "canvas" and live[0]["config"]["mark"]["aria"] is False
    assert "usermeta" not in specs[1]  # a finished run's chart: Streamlit's choice (SVG while it is small)
    starts = pd.DataFrame(altair["datasets"]["run_starts"])
    pd.testing.assert_frame_equal(starts, before_training(series, bounds), check_exact=False, rtol=1e-9)


def test_the_figures_say_which_test_samples_they_use(lab, finished_run):
    captions = [c.value for c in run_page(finished_run).caption]
    assert "Every figure uses each task's whole test set." in captions
    subset = run_in_process(lab.store, small_config("naive", eval={"every": 7, "subset": 30}))
    captions = [c.value for c in run_page(subset).caption]
    assert any("whole test set" in c and "fixed 30 test samples per task (eval.subset)" in c for c in captions), captions


def test_the_report_colours_each_task_as_the_run_page_does(lab, finished_run, tmp_path):
    """The CLI's report of a run draws its task lines in the page's colours: both charts name them (a
    chart without colours of its own gets Streamlit's theme on the page and Vega's default in a report)."""
    import subprocess
    import sys

    from store.palette import TABLEAU10

    html = tmp_path / "run.html"
    proc = subprocess.run([sys.executable, "-m", "engine", "report", str(finished_run), "-o", str(html),
                           "--db", str(lab.store.path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report_panels = json.loads(re.search(r'data-chart="chart-0">(.*?)</script>', html.read_text()).group(1)
                               .replace("<\\/", "</"))
    page_panels = shown(run_page(finished_run))["charts"][0]
    scales = [next(e["scale"] for ch, e in encodings(spec) if ch == "color" and e["field"] == "task")
              for spec in (page_panels, report_panels)]
    assert scales[0] == scales[1] == {"domain": ["task 1", "task 2", "task 3"], "range": TABLEAU10[:3]}
