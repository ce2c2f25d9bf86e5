"""The metric registry (store/metrics/__init__.py) is the one place a metric is wired: a metric registered
from a module of its own reaches the summary, the Compare table, the Metrics docs, the CLI, the Run page
and the reports with no other change; the CLI prints every registered metric; the registry keeps the
project's shape (list, get, is-known); and the metrics package imports nothing that imports it back."""

import importlib
import subprocess
import sys
import textwrap

import grimp
import pytest
from streamlit.testing.v1 import AppTest

from engine.cli.main import main
from engine.report import compare_report_html, run_report_html
from store import Store
from store.compare import TABLE_METRICS, clear_caches, group_metrics, select_runs
from store.metric_docs import markdown
from store.metrics import METRICS
from store.metrics.summary import summaries, summary
from store.registry import Registry
from tests.conftest import ROOT, page_lab
from tests.test_metrics import BOUNDARY, CONT, R3, SPANS3, config, write_run

KEY = "last_task_learned"
# the new metric's own file, as a contributor would write it: its function and its entry
EXTRA_MODULE = '''
from store.metrics.base import setup_matrix, missing_cells
from store.metrics.metric import Metric


def last_task_learned(R, k=None):
    """The accuracy on the last finished task right after training it: R[k][k]."""
    M, k, why = setup_matrix(R, k)
    why = why or missing_cells(M, [(k, k)])
    return (None, why) if why else (float(M[k, k]), None)


LAST_TASK_LEARNED = Metric(
    "last_task_learned", "Accuracy on the last task learned", r"R_{k,k}", "a contributor's test metric", True,
    "Plasticity on the newest task.", "matrix",
    compute=lambda v: last_task_learned(v.R, v.k), compare_table=True, figure="Last learned", figure_at=8)
'''


@pytest.fixture
def extra_metric(tmp_path, monkeypatch):
    """The new metric's module imported from a folder of its own, and its one registry line."""
    (tmp_path / "extra_metric.py").write_text(textwrap.dedent(EXTRA_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("extra_metric")
    METRICS.add(module.LAST_TASK_LEARNED)
    clear_caches()
    try:
        yield module.LAST_TASK_LEARNED
    finally:
        METRICS.remove(KEY)
        clear_caches()
        sys.modules.pop("extra_metric", None)


def two_runs(store) -> tuple[int, int]:
    """A finished 3-task run and one with no end-of-task evaluation yet."""
    done = write_run(store, config(), boundary=BOUNDARY, cont=CONT, spans=SPANS3, name="done")
    fresh = write_run(store, config({"name": "replay"}), boundary={0: R3[0].tolist()}, cont={2: [0.5, 0.2, 0.1]},
                      spans={1: (0, None)}, status="running", name="fresh")
    return done, fresh


def test_a_metric_in_a_new_module_reaches_summary_compare_docs_cli_and_reports(tmp_path, extra_metric, capsys):
    db = tmp_path / "lab.duckdb"
    store = Store(db)
    try:
        done, fresh = two_runs(store)
        one = summary(store, done)
        assert one[KEY] == pytest.approx(R3[3][2])  # R[3][3], the last task right after training it
        many = {s["run_id"]: s for s in summaries(store, [done, fresh])}
        assert many[done][KEY] == one[KEY]
        assert many[fresh][KEY] is None and "no task finished yet" in many[fresh]["unavailable"][KEY]
        assert KEY in TABLE_METRICS
        table = group_metrics(store, select_runs(store)).set_index("group")
        assert table.loc["naive", KEY] == pytest.approx(R3[3][2]) and KEY in table.columns
        run_html = run_report_html(store, done).decode()
        compare_html = compare_report_html(store, [done, fresh]).decode()
    finally:
        store.close()
    assert extra_metric.title in run_html and extra_metric.title in compare_html
    text = markdown()
    assert f"### {extra_metric.title} (`{KEY}`)" in text and extra_metric.latex in text
    # the CLI verb, in this process (the registration lives here)
    assert main(["metrics", str(done), "--db", str(db)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if extra_metric.title in line]
    assert len(lines) == 1 and lines[0].split()[-1] == f"{R3[3][2]:.4f}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from page_lab(tmp_path_factory, "metric_registry")


def test_the_run_page_shows_a_new_metric_given_a_figure_label(lab, extra_metric):
    done, _ = two_runs(lab.store)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("pages/run.py")
    at.query_params["run"] = str(done)
    at.run()
    figures = {m.label: m.value for m in at.metric}
    assert figures["Last learned"] == f"{R3[3][2]:.3f}"
    assert list(figures)[:6] == ["ACC", "BWT", "Forgetting", "min-ACC", "WC-ACC", "Plasticity (LA)"]
    assert list(figures)[-2:] == ["Task-IL (masked)", "Last learned"]  # figure_at orders them
    at.switch_page("pages/metrics.py").run()
    assert extra_metric.title in [s.value for s in at.subheader]


def test_the_cli_prints_every_registered_metric_of_a_run(tmp_path):
    db = tmp_path / "lab.duckdb"
    store = Store(db)
    try:
        done, _ = two_runs(store)
        expected = summary(store, done)
    finally:
        store.close()
    proc = subprocess.run([sys.executable, "-m", "engine", "metrics", str(done), "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    for key, m in METRICS.items():
        line = next(line for line in out if line.strip().startswith(m.title))
        value = expected[key]
        assert (f"{value:8.4f}" if value is not None else "n/a") in line, (key, line)
        if value is None:
            assert expected["unavailable"][key] in line


def test_the_registry_lists_gets_and_knows_its_entries():
    reg = Registry("colour", ["red", "green"], name_of=str.upper)
    assert reg.names() == ["RED", "GREEN"] and reg["RED"] == "red" and reg.get("BLUE") is None
    assert reg.is_known("GREEN") and not reg.is_known("green")
    with pytest.raises(KeyError, match="unknown colour 'BLUE' \\(known: RED, GREEN\\)"):
        reg["BLUE"]
    with pytest.raises(ValueError, match="colour 'RED' is registered already"):
        reg.add("red")
    reds = reg.where(lambda c: c.startswith("r"))
    assert list(reds) == ["RED"]
    reg.add("rose")
    assert list(reds) == ["RED", "ROSE"] and len(reds) == 2  # a view: later entries join it
    assert reg.remove("ROSE") == "rose" and not reg.is_known("ROSE")
    assert list(METRICS) == METRICS.names() and all(METRICS[k].key == k for k in METRICS)


def test_the_metrics_package_is_in_no_import_cycle():
    """Every import counted (function-local ones too): no module of store/ that the metrics import
    imports them back (store/metrics.py and store/run_cache.py did)."""
    graph = grimp.build_graph("store", include_external_packages=False)
    metrics = sorted(m for m in graph.modules if m == "store.metrics" or m.startswith("store.metrics."))
    assert "store.metrics.run_cache" in metrics and "store.metrics.summary" in metrics
    for module in metrics:
        for imported in graph.find_modules_directly_imported_by(module):
            assert not graph.chain_exists(imported, module), (
                f"{module} imports {imported}, which imports it back: {graph.find_shortest_chain(imported, module)}")
