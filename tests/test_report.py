"""Reports (engine/report/): what a run's and a comparison's report hold, the findings computed from
the numbers, the offline HTML, the PDF rendered back to pixels and text with poppler, the bundle and
its rerun, and the hostile inputs of the CLI and of `python -m engine run BUNDLE.zip`."""

import io
import json
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.report import ReportError, build_report, compare_report_html, report_bundle, report_pdf, run_report_html
from engine.core.inputs import ConfigError
from engine.report.bundle import BundleError, config_from_bundle
from engine.report.content import compare_report, run_report
from engine.report.document import Bullets, Chart, Code, Table
from engine.report.findings import run_findings
from store import Store
from store.compare import TABLE_METRICS, group_metrics, select_runs
from store.metrics import METRICS
from store.metrics.summary import summary
from tests.conftest import ROOT, small_config

POPPLER = shutil.which("pdftoppm") and shutil.which("pdftotext")
needs_poppler = pytest.mark.skipif(not POPPLER, reason="poppler-utils is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A real lab file: a replay run evaluated every step and a naive run, both of one grid sweep,
    trained here on one thread (as the lab's workers train: the same float sums as a rerun)."""
    import torch

    from engine.runs.manager import run_in_process

    db = tmp_path_factory.mktemp("report") / "lab.duckdb"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Store(db) as store:
            sweep = store.create_sweep("tiny-grid", "grid", {"name": "tiny-grid", "base": {"scenario": {"n_tasks": 2}},
                                                              "grid": {"strategy.name": ["replay", "naive"]}})
            replay = run_in_process(store, small_config("replay", name="replay-run", eval={"every": 1}), sweep_id=sweep)
            naive = run_in_process(store, small_config("naive", name="naive-run"), sweep_id=sweep)
    finally:
        torch.set_num_threads(threads)
    return {"db": db, "replay": replay, "naive": naive, "sweep": sweep}


@pytest.fixture
def store_of(lab):
    with Store(lab["db"], serve=False) as store:
        yield store


def designed_run(store) -> int:
    """A run written row by row with a known shape (3 tasks of 10 steps, evaluated every step):
    after the switch at step 10 task 1 falls from 0.9 to 0.3 at step 12 and is back at 0.88 at step 14
    (depth 0.6, recovered 4 steps after the switch); after the switch at step 20 task 1 falls from
    0.88 to 0.7 and never recovers, task 2 from 0.95 to 0.85 at step 23 and is back at step 25.
    Its config has only the sections a synthetic run gives (no strategy, no model)."""
    run_id = store.create_run({"eval": {"every": 1, "subset": None}, "scenario": {"n_tasks": 3}}, name="designed",
                              status="finished")
    steps = np.arange(0, 31)
    A = np.zeros((31, 3))
    A[:, 0] = np.r_[np.linspace(0.1, 0.9, 11), [0.5, 0.3, 0.6, 0.88], [0.88] * 6, [0.8, 0.7], [0.75] * 8]
    A[:, 1] = np.r_[[0.1] * 11, np.linspace(0.2, 0.95, 10), [0.9, 0.88, 0.85, 0.9, 0.93], [0.94] * 5]
    A[:, 2] = np.r_[[0.1] * 21, np.linspace(0.3, 0.9, 10)]
    rows = {"run_id": [], "step": [], "task": [], "metric": [], "value": []}
    for step in steps:
        for task in (1, 2, 3):
            metrics = (["acc"] if step else []) + (["boundary_acc"] if step % 10 == 0 else [])
            for metric in metrics:
                for key, value in zip(rows, (run_id, int(step), task, metric, float(A[step, task - 1]))):
                    rows[key].append(value)
    store.add_metrics(rows)
    for task in (1, 2, 3):
        store.start_task(run_id, task, (task - 1) * 10)
        store.end_task(run_id, task, task * 10)
    store.flush()
    return run_id


def test_findings_state_the_deepest_gap_its_switch_and_the_recovery_from_the_numbers(store):
    run_id = designed_run(store)
    result = summary(store, run_id)
    text = " ".join(run_findings(result))
    assert ("The deepest stability gap came at the switch to task 2 (step 10): task 1 fell from 0.900 to 0.300 "
            "(depth 0.600) at step 12, 2 step(s) after the switch, and was back within 0.05 of its level 4 step(s) "
            "after the switch.") in text
    # per switch, the mean over its earlier tasks: 0.6 at the switch to task 2; (0.18 + 0.10) / 2 at task 3
    assert "the gap ranged from 0.140 to 0.600 over the 2 switches (mean 0.370); the deepest switch was the one to task 2" in text
    assert "No mean recovery time: 1 of 3 (switch, task) pairs never recovered" in text
    acc = np.mean([0.75, 0.94, 0.9])
    assert f"Average accuracy (ACC) {acc:.3f} over its 3 tasks" in text
    # the report of this bare run (no strategy, no model in its config) is made all the same
    report = run_report(store, run_id)
    assert report.title == "Run 1: designed" and any(isinstance(b, Chart) for b in report.blocks)


def test_findings_say_when_there_is_no_gap_or_nothing_to_measure(store):
    run_id = store.create_run({"scenario": {"n_tasks": 2}}, name="empty", status="running")
    assert run_findings(summary(store, run_id)) == ["The run (running) has no evaluation yet: there is nothing to report."]
    # accuracy that only rises: no gap at the switch
    rows = {"run_id": [], "step": [], "task": [], "metric": [], "value": []}
    for step in range(0, 11):
        for task in (1, 2):
            for metric in (["acc"] if step else []) + (["boundary_acc"] if step in (0, 5) else []):
                for key, value in zip(rows, (run_id, step, task, metric, 0.1 + 0.05 * step)):
                    rows[key].append(value)
    store.add_metrics(rows)
    store.start_task(run_id, 1, 0)
    store.end_task(run_id, 1, 5)
    store.start_task(run_id, 2, 5)
    store.flush()
    lines = run_findings(summary(store, run_id))
    assert "No stability gap: at none of the 1 task switch(es) did an earlier task fall below its accuracy at the switch." in lines
    assert lines[0].startswith("Average accuracy (ACC) ") and "so far: the run is running and 1 of its 2 task(s) ended" in lines[0]


def test_run_report_holds_identity_versions_config_every_metric_gaps_and_the_command(lab, store_of):
    run_id = lab["replay"]
    report = run_report(store_of, run_id)
    row = store_of.df("SELECT * FROM runs WHERE id = ?", [run_id]).iloc[0]
    tables = [b for b in report.blocks if isinstance(b, Table)]
    identity = dict(map(tuple, tables[0].rows))
    assert identity["Run"] == f"{run_id}: replay-run" and identity["Status"] == "finished"
    assert (identity["torch"], identity["Lightning"], identity["Python"], identity["CL Lab code"], identity["device"]) == (
        row.torch_version, row.lightning_version, row.python_version, row.lab_version, row.device)
    config = json.loads(row.config)
    codes = [b.text for b in report.blocks if isinstance(b, Code)]
    assert yaml.safe_load(codes[0]) == config and "python -m engine run config.yaml" in codes[1]
    result = summary(store_of, run_id)
    metrics = next(t for t in tables if t.columns[:2] == ["Metric", "Value"])
    assert len(metrics.rows) == len(METRICS)
    for (key, info), cells in zip(METRICS.items(), metrics.rows):
        assert cells[0] == f"{info.title} [{key}]" and cells[4] == info.source and info.tells in cells[3]
        value = result[key]
        assert cells[1] == (f"{value:.3f}" if value is not None else f"n/a: {result['unavailable'][key]}")
    gaps = next(t for t in tables if t.columns[0] == "switch at step")
    assert len(gaps.rows) == sum(len(r["tasks"]) for r in result["stability_gaps"]) > 0
    assert [b.title for b in report.charts] == ["Accuracy on every task, plasticity and stability, training loss",
                                                "Accuracy matrix"]
    findings = next(b for b in report.blocks if isinstance(b, Bullets)).items
    assert findings == run_findings(result)
    assert report.environment["run"]["torch"] == row.torch_version


def test_html_embeds_vega_once_holds_every_chart_and_escapes_hostile_text(lab, tmp_path):
    with Store(lab["db"], serve=False) as store:
        hostile = "</script><script>alert(1)</script> & <b>"
        store.update_run(lab["naive"], name=hostile)
        try:
            page = run_report_html(store, lab["naive"]).decode()
            compare = compare_report_html(store, [lab["replay"], lab["naive"]]).decode()
        finally:
            store.update_run(lab["naive"], name="naive-run")
    for html, charts in ((page, 2), (compare, 2)):
        assert html.count("window.vegaEmbed=") == 1  # the bundle, once however many charts
        assert len(re.findall(r'<script type="application/json" data-chart="chart-\d+">', html)) == charts
        assert len(re.findall(r'<div class="chart" id="chart-\d+"', html)) == charts
        # nothing loaded from anywhere: no script with a source, and no tag with one outside the scripts
        assert not any("src" in attributes for attributes in re.findall(r"<script([^>]*)>", html))
        markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
        assert not re.search(r"<(link|img|iframe|object|embed|source)\b", markup) and "url(" not in markup
        # the hostile name opens no element: the parser sees the two scripts and the charts' JSON only
        assert "</script><script>alert(1)" not in html and _start_tags(html).count("script") == 2 + charts
        assert _start_tags(html).count("b") == 0
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in page
    specs = [json.loads(s.replace("<\\/", "</")) for s in re.findall(r'data-chart="chart-\d+">(.*?)</script>', page)]
    assert specs[0]["params"][0]["name"] == "zoom" and specs[0]["params"][1]["name"] == "hover"
    assert len(specs[0]["vconcat"]) == 3


def _start_tags(html: str) -> list[str]:
    from html.parser import HTMLParser

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags = []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)

    parser = Tags()
    parser.feed(html)
    return parser.tags


def _pages(pdf: bytes, tmp_path, name: str, dpi: int = 36) -> list:
    from PIL import Image

    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(path), str(tmp_path / name)], check=True, timeout=60)
    return [np.asarray(Image.open(p).convert("RGB")).astype(int) for p in sorted(tmp_path.glob(f"{name}-*.png"))]


def _text(pdf: bytes, tmp_path) -> str:
    path = tmp_path / "text.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True, timeout=60).stdout
    return " ".join(out.split())


@needs_poppler
def test_pdf_is_paged_for_a4_and_letter_with_its_charts_and_text(lab, store_of, tmp_path):
    run_id = lab["replay"]
    report = build_report(store_of, run_id)
    for paper, (width, height) in (("a4", (595, 842)), ("letter", (612, 792))):
        pdf = report_pdf(store_of, run_id, paper=paper)
        pages = _pages(pdf, tmp_path, paper, dpi=72)
        assert len(pages) >= 2 and all(abs(p.shape[1] - width) <= 1 and abs(p.shape[0] - height) <= 1 for p in pages)
        # chart pixels: colour (the lines, the heatmap), which the text and the tables never have
        colour = [int(((p.max(axis=2) - p.min(axis=2)) > 60).sum()) for p in pages]
        assert sum(c > 2000 for c in colour) >= 1, colour
    text = _text(pdf, tmp_path)
    assert f"Run {run_id}: replay-run" in text
    for key, info in METRICS.items():
        assert f"[{key}]" in text.replace(" ", "") or f"[{key}]" in text
    for sentence in next(b for b in report.blocks if isinstance(b, Bullets)).items:
        assert sentence in text
    # the charts are vector: their own titles and labels are text in the PDF
    assert "Accuracy on every task" in text and "Training loss" in text and "evaluated on" in text


def test_comparison_report_of_a_sweep_groups_by_strategy_and_finds_the_leaders(lab, store_of, tmp_path):
    report = build_report(store_of, None, sweep_id=lab["sweep"])
    assert report.kind == "comparison" and report.title == "Sweep 1: tiny-grid"
    assert sorted(report.run_ids) == sorted([lab["replay"], lab["naive"]])
    table = group_metrics(store_of, select_runs(store_of, sweep_id=lab["sweep"]), "strategy")
    shown = next(b for b in report.blocks if isinstance(b, Table) and b.columns[:2] == ["group", "runs"])
    assert shown.columns[2:] == list(TABLE_METRICS)
    for row, (_, expected) in zip(shown.rows, table.iterrows()):
        assert row[0] == expected["group"] and row[2] == f"{expected['acc']:.3f}"  # one run a group: no sd
    best = table.sort_values("acc", ascending=False).iloc[0]
    worst_forgetting = table.sort_values("forgetting").iloc[-1]
    findings = " ".join(next(b for b in report.blocks if isinstance(b, Bullets)).items)
    assert f"Average accuracy (ACC): best {best['group']} {best['acc']:.3f} (1 run)" in findings
    assert f"worst {worst_forgetting['group']} {worst_forgetting['forgetting']:.3f}" in findings
    assert "on the Pareto frontier of Learning accuracy (LA) and Average minimum accuracy (min-ACC)" in findings
    assert [c.title.split(":")[0] for c in report.charts] == ["Curves by group", "Pareto frontier"]
    assert "python -m engine sweep sweep.yaml" in [b.text for b in report.blocks if isinstance(b, Code)][0]
    # a selection of runs by hand, grouped by a config key
    by_hand = build_report(store_of, [lab["naive"], lab["replay"]], group_by="strategy.name")
    assert by_hand.title == "Comparison of 2 runs" and by_hand.sweep_id is None


def test_report_refuses_what_it_cannot_make(lab, store_of):
    with pytest.raises(ReportError, match="there is no run 999"):
        build_report(store_of, 999)
    with pytest.raises(ReportError, match="no run 999"):
        build_report(store_of, [lab["replay"], 999])
    with pytest.raises(ReportError, match="there is no sweep 77"):
        build_report(store_of, None, sweep_id=77)
    with pytest.raises(ReportError, match="no selected run's config has that key"):
        compare_report(store_of, [lab["replay"], lab["naive"]], group_by="train.nothing")


def test_bundle_holds_the_reports_and_data_and_reruns_to_the_same_metrics(lab, store_of, tmp_path):
    run_id = lab["replay"]
    data = report_bundle(store_of, run_id, paper="letter")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        assert names == {"README.txt", "report.html", "report.pdf", "config.yaml", "metrics.parquet", "metrics.csv",
                         "accuracy_matrix.parquet", "accuracy_matrix.csv", "summary.json", "environment.json"}
        stored = store_of.df("SELECT step, task, metric, value FROM metrics WHERE run_id = ? ORDER BY step, metric, task",
                             [run_id])
        for table in (pd.read_parquet(io.BytesIO(zf.read("metrics.parquet"))), pd.read_csv(zf.open("metrics.csv"))):
            assert len(table) == len(stored) and np.allclose(table["value"], stored["value"], rtol=0, atol=1e-12)
        result = json.loads(zf.read("summary.json"))
        assert result["acc"] == summary(store_of, run_id)["acc"]
        matrix = pd.read_csv(zf.open("accuracy_matrix.csv"))
        assert np.allclose(matrix.iloc[:, 1:].to_numpy(), np.array(result["accuracy_matrix"], dtype=float))
        environment = json.loads(zf.read("environment.json"))
        torch_version = store_of.sql("SELECT torch_version FROM runs WHERE id = ?", [run_id])[0][0]
        assert environment["run"]["torch"] == torch_version and environment["report"]["vl_convert"]
        assert zf.read("report.html").count(b"window.vegaEmbed=") == 1 and zf.read("report.pdf")[:5] == b"%PDF-"
    bundle = tmp_path / "run.zip"
    bundle.write_bytes(data)
    again = tmp_path / "again.duckdb"
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(bundle), "--db", str(again)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = "SELECT step, task, metric, value FROM metrics WHERE run_id = ? ORDER BY step, task, metric"
    with Store(again, serve=False) as rerun:
        new_id = rerun.sql("SELECT max(id) FROM runs")[0][0]
        assert rerun.sql(rows, [new_id]) == store_of.sql(rows, [run_id])  # every metric row, exactly


def _zip(entries: list[tuple[str, bytes]], **info) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries:
            item = zipfile.ZipInfo(name)
            item.compress_type = zipfile.ZIP_DEFLATED
            for key, value in info.get(name, {}).items():
                setattr(item, key, value)
            zf.writestr(item, content)
    return out.getvalue()


def _encrypted(data: bytes) -> bytes:
    """The zip with its entry marked encrypted (bit 0 of the flags, in the local and the central header:
    zipfile itself writes no encrypted entries)."""
    data = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 0x1
    return bytes(data)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_bundle_reader_takes_only_a_sound_config_yaml(tmp_path):
    good = yaml.safe_dump(small_config("naive").model_dump(mode="json")).encode()
    path = tmp_path / "b.zip"
    path.write_bytes(_zip([("config.yaml", good), ("../../etc/evil", b"x")]))
    assert config_from_bundle(path).strategy["name"] == "naive"
    cases = {
        "not a zip": (b"name: x\n" * 10, "not a zip file"),
        "truncated": (_zip([("config.yaml", good)])[:-30], "not a zip file"),
        "no config": (_zip([("run-1/config.yaml", good), ("../config.yaml", good)]), "no config.yaml at the top"),
        "two configs": (_zip([("config.yaml", good), ("config.yaml", good)]), "2 entries named config.yaml"),
        # a zip bomb: 300 kB of spaces in 1 kB, more than the lab reads from a config (256 kB)
        "bomb": (_zip([("config.yaml", b" " * 300_000)]), "more than the 262,144 the lab reads"),
        "symlink": (_zip([("config.yaml", b"/etc/passwd")], **{"config.yaml": {"external_attr": 0o120777 << 16}}),
                    "is a symbolic link"),
        "encrypted": (_encrypted(_zip([("config.yaml", good)])), "is encrypted"),
    }
    for case, (content, message) in cases.items():
        path.write_bytes(content)
        with pytest.raises(BundleError, match=re.escape(message)) as err:
            config_from_bundle(path)
        assert len(err.value.problems) == 1 and "\n" not in str(err.value), case
    # the config inside goes through the config's own guards and checks
    path.write_bytes(_zip([("config.yaml", b"a: &x [1]\nb: *x\n")]))
    with pytest.raises(ConfigError, match=re.escape("aliases (&/*) are not allowed")):
        config_from_bundle(path)
    path.write_bytes(_zip([("config.yaml", b"strategy: {name: nothing}\n")]))
    with pytest.raises(ConfigError, match="strategy.name = 'nothing'"):
        config_from_bundle(path)


def test_cli_writes_all_three_or_nothing_with_one_line(lab, tmp_path, capsys):
    from engine.cli.main import main

    db = str(lab["db"])
    html, pdf, bundle = tmp_path / "r.html", tmp_path / "r.pdf", tmp_path / "r.zip"
    assert main(["report", str(lab["replay"]), "-o", str(html), "--pdf", str(pdf), "--bundle", str(bundle),
                 "--paper", "letter", "--db", db]) == 0
    assert html.read_bytes().startswith(b"<!DOCTYPE html>") and pdf.read_bytes()[:5] == b"%PDF-"
    assert zipfile.ZipFile(bundle).read("report.html") == html.read_bytes()
    assert f"Run {lab['replay']}: replay-run" in capsys.readouterr().out
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    (tmp_path / "folder.html").mkdir()
    run, out = str(lab["replay"]), str(tmp_path / "x.html")
    bad = {
        ("999", "-o", out): "there is no run 999",
        (run, "-o", str(a_file / "x.html")): "does not exist",
        (run, "-o", str(tmp_path / "x.pdf")): "x.pdf: must end in .html",
        (run, "-o", str(tmp_path / "folder.html")): "is a directory",
        (run, "-o", out, "--pdf", str(tmp_path / "x.html")): "x.html: must end in .pdf",
        (run,): "no output",
        ("-o", out): "no runs",
        ("--sweep", "nope", "-o", out): "no sweep named 'nope'",
        ("0", "-o", out): "RUN_ID = 0",
        (run, str(lab["naive"]), "--group-by", "x.y", "-o", out): "no selected run's config has that key",
        (run, str(lab["naive"]), "--x", "nope", "-o", out): "unknown metric 'nope'",
        (run, str(lab["naive"]), "--x", "acc", "--y", "acc", "-o", out): "two different metrics, not acc twice",
    }
    for args, message in bad.items():
        assert main(["report", *args, "--db", db]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.html", "plain.txt", "r.html", "r.pdf", "r.zip"]
    assert main(["report", "1", "-o", str(tmp_path / "y.html"), "--db", str(tmp_path / "none.duckdb")]) == 2
    assert "no such database" in capsys.readouterr().err and not (tmp_path / "none.duckdb").exists()


def test_run_with_a_bad_bundle_says_so_in_one_line_and_writes_nothing(tmp_path):
    bundle = tmp_path / "bad.zip"
    bundle.write_bytes(_zip([("notes.txt", b"hello")]))
    db = tmp_path / "lab.duckdb"
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(bundle), "--db", str(db)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no config.yaml at the top" in proc.stderr
    assert not db.exists()


# ---- through the CLI: a sweep trained by `python -m engine sweep`, its reports by `python -m engine report`

@pytest.fixture(scope="module")
def cli_reports(tmp_path_factory):
    """A grid sweep over ``train.epochs_per_task`` trained by the CLI, and the CLI's HTML and PDF of
    its first run and of the sweep: {"run": (html text, pdf path), "sweep": ...}."""
    folder = tmp_path_factory.mktemp("cli_reports")
    db = folder / "lab.duckdb"
    base = small_config("naive").model_dump(mode="json")
    (folder / "sweep.yaml").write_text(yaml.safe_dump({"name": "epochs", "base": base,
                                                       "grid": {"train.epochs_per_task": [1, 2]}}))

    def cli(*args: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "engine", *args, "--db", str(db)], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr

    cli("sweep", str(folder / "sweep.yaml"))
    reports = {}
    for name, which in (("run", ["1"]), ("sweep", ["--sweep", "epochs"])):
        html, pdf = folder / f"{name}.html", folder / f"{name}.pdf"
        cli("report", *which, "-o", str(html), "--pdf", str(pdf))
        reports[name] = (html.read_text(encoding="utf-8"), pdf)
    reports["db"] = db
    return reports


def _pdf_text(pdf, *options: str) -> str:
    out = subprocess.run(["pdftotext", *options, str(pdf), "-"], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return " ".join(out.split())


def _visible_html(html: str) -> str:
    """The page's text as read: no scripts, no formula images (their LaTeX is their alt text)."""
    html = re.sub(r"<script[^>]*>.*?</script>|<svg\b.*?</svg>", "", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@needs_poppler
@pytest.mark.parametrize("name", ["run", "sweep"])
def test_report_formulas_are_drawn_not_printed_as_latex(cli_reports, name):
    from html import escape

    html, pdf = cli_reports[name]
    shown = [k for k in METRICS if f"[{k}]" in _visible_html(html)]
    assert len(shown) == (len(METRICS) if name == "run" else len(TABLE_METRICS))
    for key in shown:  # each a drawn formula (glyph paths) whose alt text and title are its LaTeX
        latex = escape(METRICS[key].latex, quote=True)
        svg = re.search(rf'<svg role="img" aria-label="{re.escape(latex)}" class="formula".*?</svg>', html, re.S)
        assert svg and f"<title>{latex}</title>" in svg.group(0) and svg.group(0).count("<path") > 3, key
    for text in (_visible_html(html), _pdf_text(pdf)):
        assert not re.search(r"\\(frac|mathrm|sum|min|max|left|operatorname)\b", text)
    # the PDF: one image a formula (pdfimages lists each image and its alpha mask)
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert sum(line.split()[2] == "image" for line in listing.splitlines()[2:]) == len(shown)


@needs_poppler
@pytest.mark.parametrize("name", ["run", "sweep"])
def test_pdf_table_headers_break_between_words_only(cli_reports, name):
    html, pdf = cli_reports[name]
    text = _pdf_text(pdf)
    headers = {word for row in re.findall(r"<thead>(.*?)</thead>", html, re.S)
               for cell in re.findall(r"<th>(.*?)</th>", row) for word in cell.split()}
    assert {"forgetting", "learning_accuracy", "stability_gap", "runs"} <= headers if name == "sweep" else \
        {"recovery", "(steps)", "switch"} <= headers
    words = text.split()
    split = [(a, b) for a, b in zip(words, words[1:]) if a + b in headers]
    assert not split  # ("forgettin", "g") was one


@needs_poppler
def test_captions_fit_the_medium(cli_reports):
    from engine.charts.panels import ZOOM_HINT

    for name in ("run", "sweep"):
        html, pdf = cli_reports[name]
        assert f"{ZOOM_HINT}: the panels move together." in _visible_html(html)  # the lab's gesture: Shift + wheel
        assert not re.search(r"\b(wheel|zoom\w*|hover\w*|drag\w*|click\w*|pans?)\b", _pdf_text(pdf), re.I)


@needs_poppler
def test_environment_names_the_code_version_that_trained_the_run(cli_reports):
    import engine

    try:  # a git checkout: the commit; an installed copy: the package version alone
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        code = f"{engine.__version__}+git.{commit}"
    except (OSError, subprocess.CalledProcessError):
        code = engine.__version__
    with Store(cli_reports["db"], serve=False) as store:  # the sweep's workers recorded it
        recorded = {r[0] for r in store.sql("SELECT lab_version FROM runs")}
    assert len(recorded) == 1 and recorded.pop() in (code, f"{code}.dirty")
    for name in ("run", "sweep"):
        html, pdf = cli_reports[name]
        for text in (_visible_html(html), _pdf_text(pdf)):
            assert "CL Lab code" in text and len(re.findall(rf"{re.escape(code)}\b", text)) >= 2, name  # runs', report's


@needs_poppler
def test_sweep_report_legends_and_group_labels_are_whole(cli_reports):
    html, pdf = cli_reports["sweep"]
    text = _pdf_text(pdf)
    # a legend on each of the four curve panels and the Pareto chart: the key and both groups, uncut
    assert text.count("train.epochs_per_task") >= 5
    for group in ("epochs_per_task=1", "epochs_per_task=2"):
        assert text.count(group) >= 5 + 2, group  # the legends, the runs and metrics tables
        assert re.search(rf"<td>{group}</td>", html)
