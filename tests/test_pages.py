"""The pages through Streamlit's AppTest, over a real lab (DuckDB file, run manager, workers)."""

import json
import os

import pytest
from streamlit.testing.v1 import AppTest

from engine.config import load_config
from engine.runs.manager import run_in_process
from tests.conftest import ROOT, small_config

APP = str(ROOT / "app.py")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    path = tmp_path_factory.mktemp("pages") / "lab.duckdb"
    os.environ["CL_LAB_DB"] = str(path)
    orphan = path.with_name(path.name + ".artifacts") / "run-77"  # weights of a run no longer in the database
    orphan.mkdir(parents=True)
    (orphan / "after-task-1.pt").write_bytes(b"x" * 100)
    from pages.ui.lab import close_labs, lab_at
    the_lab = lab_at(str(path.resolve()), False)  # the same object the pages get
    yield the_lab
    close_labs()  # releases it: workers stopped, file closed
    del os.environ["CL_LAB_DB"]


@pytest.fixture(scope="module")
def finished_run(lab):
    return run_in_process(lab.store, small_config("replay", eval={"every": 2}))


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60)


def n_runs(lab) -> int:
    return lab.store.sql("SELECT count(*) FROM runs")[0][0]


def test_home_shows_counts_and_the_database_and_launches_the_demo(lab, finished_run):
    at = app().run()
    assert not at.exception
    assert at.title[0].value == "CL Lab"
    labels = {m.label: m.value for m in at.metric}
    assert labels["Done"] == str(lab.store.sql("SELECT count(*) FROM runs WHERE status = 'finished'")[0][0])
    assert str(lab.store.path) in at.caption[0].value
    before = n_runs(lab)
    at.button[0].click().run()
    assert n_runs(lab) == before + 1
    run_id, config = lab.store.sql("SELECT id, config FROM runs ORDER BY id DESC LIMIT 1")[0]
    assert json.loads(config) == load_config(ROOT / "configs" / "replay-demo.yaml").model_dump(mode="json")
    assert at.query_params["run"] == str(run_id)
    lab.manager.cancel(run_id)


def test_home_shows_the_free_space_of_the_disk_that_holds_the_database(lab):
    import re
    import shutil

    from store.disk import mount_of

    at = app().run()
    device, mount = mount_of(lab.store.path)
    shown = re.search(rf"([\d.]+) (GB|MB|kB) free on {re.escape(device)} mounted at {re.escape(mount)}",
                      at.caption[0].value)
    assert shown, at.caption[0].value
    free = float(shown.group(1)) * {"GB": 1e9, "MB": 1e6, "kB": 1e3}[shown.group(2)]
    assert abs(free - shutil.disk_usage(lab.store.path.parent).free) < 0.05 * free + 50e6


def next_to(at, key: str) -> list[str]:
    """The error messages drawn right after the widget ``key``, in the same container."""
    def after(block):
        items = list(block.children.values())
        for i, node in enumerate(items):
            if getattr(node, "key", None) == key:
                return items[i + 1:]
            found = after(node) if isinstance(getattr(node, "children", None), dict) else None
            if found is not None:
                return found
        return None

    errors = []
    for node in after(at.main) or []:  # the run of error boxes that follows the widget
        if getattr(node, "type", None) != "error":
            break
        errors.append(node.value)
    return errors


def test_the_lab_removes_the_weights_of_runs_that_no_longer_exist_when_it_opens(lab):
    root = lab.store.path.with_name(lab.store.path.name + ".artifacts")
    assert root.is_dir() and not (root / "run-77").exists()


def test_launch_shows_each_wrong_value_next_to_its_field_and_queues_nothing(lab):
    at = app()
    at.switch_page("pages/launch.py").run()
    before = n_runs(lab)
    at.number_input(key="scenario.n_tasks").set_value(11)
    at.number_input(key="train.lr").set_value(0.0)
    at.text_input(key="model.mlp.hidden").set_value("256, wide")
    at.button(key="launch").click().run()
    assert next_to(at, "model.mlp.hidden") == [
        "model.hidden = '256, wide': must be whole numbers separated by commas (empty: a linear model)"]
    at.text_input(key="model.mlp.hidden").set_value("64")
    at.button(key="launch").click().run()
    assert next_to(at, "scenario.n_tasks") == ["scenario.n_tasks = 11: must be at most 10: digits has 10 classes to share out"]
    assert next_to(at, "train.lr") == ["train.lr = 0: must be greater than 0"]  # as the input shows it (%g)
    assert "Nothing was queued: 2 problem(s), each under its field." in [e.value for e in at.error]
    assert n_runs(lab) == before


def test_out_of_range_values_stay_shown_with_an_error_under_each_field_and_queue_nothing(lab):
    at = app()
    at.switch_page("pages/launch.py").run()
    before = n_runs(lab)
    at.number_input(key="train.lr").set_value(-0.1)
    at.number_input(key="scenario.n_tasks").set_value(0)
    at.number_input(key="train.momentum").set_value(2.0)
    at.number_input(key="train.batch_size").set_value(10 ** 9)
    at.run()
    # the values typed are kept (no silent return to the last valid value), each problem under its field
    assert at.number_input(key="train.lr").value == -0.1 and at.number_input(key="scenario.n_tasks").value == 0
    assert next_to(at, "train.lr") == ["train.lr = -0.1: must be greater than 0"]
    assert next_to(at, "scenario.n_tasks") == ["scenario.n_tasks = 0: must be greater than or equal to 1"]
    assert next_to(at, "train.momentum") == ["train.momentum = 2: must be less than 1"]  # as the input shows it (%g)
    assert next_to(at, "train.batch_size") == ["train.batch_size = 1000000000: must be less than or equal to 65536"]
    assert not at.info  # no cost estimate for an invalid config
    at.button(key="launch").click().run()
    assert "Nothing was queued: 4 problem(s), each under its field." in [e.value for e in at.error]
    assert n_runs(lab) == before


def test_the_run_launched_is_the_run_shown_with_its_cost_and_an_empty_field_explained(lab):
    at = app()
    at.switch_page("pages/launch.py").run()
    at.text_input(key="model.mlp.hidden").set_value("").run()
    assert "Empty: a linear model, no hidden layer (64 → 10)" in [c.value for c in at.caption]
    at.text_input(key="model.mlp.hidden").set_value("48, 24")
    at.number_input(key="train.lr").set_value(0.0123)
    at.selectbox(key="train.optimizer").set_value("adam")
    at.number_input(key="train.momentum").set_value(0.5)  # shown, sent, and unused by Adam
    at.number_input(key="train.batch_size").set_value(16)
    at.number_input(key="train.epochs_per_task").set_value(1)
    at.number_input(key="scenario.n_tasks").set_value(2)
    at.number_input(key="seed").set_value(7)
    at.number_input(key="eval.every").set_value(3)
    at.number_input(key="eval.subset").set_value(20)
    at.selectbox(key="train.weights").set_value("none")
    at.text_input(key="name").set_value("as-shown")
    at.run()
    from engine.config import parse_config
    from engine.training.cost import estimate
    assert "2 hidden layers: 64 → 48 → 24 → 10" in [c.value for c in at.caption]
    shown = {
        "name": at.text_input(key="name").value, "seed": at.number_input(key="seed").value,
        "scenario": {"dataset": at.selectbox(key="scenario.dataset").value, "setting": at.radio(key="scenario.setting").value,
                     "n_tasks": at.number_input(key="scenario.n_tasks").value},
        "model": {"name": "mlp", "hidden": [48, 24]},
        "strategy": {"name": at.selectbox(key="strategy.name").value},
        "train": {k: (at.selectbox if k in ("optimizer", "weights") else at.number_input)(key=f"train.{k}").value
                  for k in ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs_per_task", "weights")},
        "eval": {"every": at.number_input(key="eval.every").value, "subset": at.number_input(key="eval.subset").value},
    }
    # the number inputs hold floats (a typed 2.5 is not cut); the form reads 2.0 as the whole number 2
    whole = {s: {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in part.items()}
             if isinstance(part, dict) else part for s, part in shown.items()}
    expected = parse_config({**whole, "seed": int(shown["seed"])})
    assert at.info[0].value == f"Cost: {estimate(expected).summary()}."
    at.button(key="launch").click().run()
    assert not at.exception
    run_id, config = lab.store.sql("SELECT id, config FROM runs ORDER BY id DESC LIMIT 1")[0]
    assert json.loads(config) == expected.model_dump(mode="json")
    assert at.query_params["run"] == str(run_id)
    assert lab.manager.wait(run_id, timeout=120) == "finished"


def test_launch_builds_strategy_inputs_from_declared_hparams_and_queues_the_run(lab):
    at = app()
    at.switch_page("pages/launch.py").run()
    at.selectbox(key="strategy.name").set_value("ewc").run()
    lam = at.number_input(key="strategy.ewc.ewc_lambda")
    assert lam.value == 100.0 and "penalty" in lam.help and "from 0 to 1e+12" in lam.help
    assert at.selectbox(key="strategy.ewc.mode").options == ["separate", "online"]
    at.selectbox(key="strategy.name").set_value("replay").run()
    assert at.number_input(key="strategy.replay.buffer_size").value == 200
    at.number_input(key="strategy.replay.buffer_size").set_value(77)
    at.number_input(key="scenario.n_tasks").set_value(2)
    at.text_input(key="name").set_value("from-the-form")
    at.button(key="launch").click().run()
    assert not at.exception
    run_id, status, config = lab.store.sql("SELECT id, status, config FROM runs ORDER BY id DESC LIMIT 1")[0]
    config = json.loads(config)
    assert config["name"] == "from-the-form" and config["strategy"]["buffer_size"] == 77
    assert config["scenario"]["n_tasks"] == 2 and status in ("queued", "running", "finished")
    assert at.query_params["run"] == str(run_id)
    assert lab.manager.wait(run_id, timeout=120) == "finished"


def test_launch_builds_model_inputs_from_declared_hparams_and_refuses_an_image_model_on_rows(lab):
    at = app()
    at.switch_page("pages/launch.py").run()
    assert at.selectbox(key="model.name").options[:1] == ["MLP"]
    at.selectbox(key="model.name").set_value("resnet18_reduced").run()
    assert at.number_input(key="model.resnet18_reduced.nf").value == 20
    assert any("needs images" in w.value for w in at.warning)
    at.selectbox(key="model.name").set_value("cnn").run()
    assert at.text_input(key="model.cnn.channels").value == "32, 64"
    assert at.checkbox(key="model.cnn.batch_norm").value is False
    assert at.selectbox(key="train.device").options[:2] == ["auto", "cpu"]
    before = n_runs(lab)
    at.button(key="launch").click().run()
    errors = [e.value for e in at.error]
    assert ("model.name = 'cnn': needs image input (channels, height, width), and dataset digits gives flat rows "
            "of 64 values (use mlp, or an image dataset)") in errors
    assert n_runs(lab) == before


def test_runs_page_lists_and_filters_runs(lab, finished_run):
    at = app()
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert finished_run in table["id"].tolist()
    row = table.set_index("id").loc[finished_run]
    assert row["status"] == "finished" and row["strategy"] == "replay" and 0 < row["acc"] <= 1
    assert "progress" not in table.columns  # no listed run trains: every bar would only repeat its status
    at.multiselect(key="filter_status").set_value(["diverged"]).run()
    assert not at.dataframe  # nothing diverged: the info message instead
    assert "No run matches these filters." in at.info[0].value


def test_run_page_link_draws_synchronized_panels_and_the_summary(lab, finished_run):
    at = app()
    at.switch_page("pages/run.py")
    at.query_params["run"] = str(finished_run)
    at.run()
    assert not at.exception
    assert at.title[0].value.startswith(f"Run {finished_run}:")
    charts = at.get("vega_lite_chart")
    spec = json.loads(charts[0].proto.spec)
    assert len(spec["vconcat"]) == 3
    assert spec["resolve"]["scale"]["x"] == "shared"
    params = {p["name"]: p for p in spec["params"]}
    assert params["zoom"]["bind"] == "scales" and params["zoom"]["select"]["encodings"] == ["x"]
    assert params["zoom"]["select"]["zoom"] == "wheel![event.shiftKey]"  # a plain wheel scrolls the page
    assert params["hover"]["select"]["on"] == "pointerover" and params["hover"]["select"]["nearest"]
    # both parameters sit on the same, existing sub-layer of each of the three panels
    pointer_layers = [[layer.get("name") for layer in panel["layer"] if layer.get("name")] for panel in spec["vconcat"]]
    assert [len(names) for names in pointer_layers] == [1, 1, 1]
    assert params["zoom"]["views"] == params["hover"]["views"] == [names[0] for names in pointer_layers]
    titles = [panel["title"] for panel in spec["vconcat"]]
    assert titles[0] == "Accuracy on every task" and titles[2] == "Training loss"
    figures = {m.label: m.value for m in at.metric}
    assert float(figures["ACC"]) > 0.3
    assert "Accuracy matrix" in json.loads(charts[1].proto.spec)["title"]
    assert at.dataframe  # the stability-gap table


def test_run_page_with_an_unknown_run_says_so(lab):
    at = app()
    at.switch_page("pages/run.py")
    at.query_params["run"] = "999999"
    at.run()
    assert not at.exception
    assert "There is no run '999999'" in at.warning[0].value


def test_metrics_page_shows_every_metrics_formula_source_and_direction(lab):
    from store.metrics import METRICS
    at = app()
    at.switch_page("pages/metrics.py").run()
    assert not at.exception
    assert len(at.latex) == len(METRICS)
    assert {s.value for s in at.subheader} == {info.title for info in METRICS.values()}
    assert [l.value.strip('$\n') for l in at.latex] == [info.latex for group in ("matrix", "continual", "l2m")
                                          for info in METRICS.values() if info.group == group]
    captions = " ".join(c.value for c in at.caption)
    assert all(info.source in captions for info in METRICS.values())


def test_compare_page_overlays_groups_with_bands_and_tables_mean_and_sd(lab):
    ids = [run_in_process(lab.store, small_config(s, seed=seed, eval={"every": 3})) for s in ("naive", "replay") for seed in (0, 1)]
    at = app()
    at.switch_page("pages/compare.py").run()
    at.radio(key="compare_how").set_value("By hand").run()
    at.multiselect(key="compare_ids").set_value(ids).run()
    assert not at.exception
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert len(spec["vconcat"]) == 4 and spec["resolve"]["scale"]["x"] == "shared"
    assert {p["name"] for p in spec["params"]} == {"zoom", "hover"}
    marks = [layer["mark"]["type"] for layer in spec["vconcat"][0]["layer"]]
    assert marks[:2] == ["area", "line"]  # the band over seeds, then the mean
    table = at.dataframe[0].value.set_index("group")
    assert list(table.index) == ["naive", "replay"] and table["runs"].tolist() == [2, 2]
    from store.metrics.summary import summary
    accs = [summary(lab.store, i)["acc"] for i in ids]
    # "mean ± sd" over the group's runs (the sample sd of two), to 3 decimals
    assert table.loc["replay", "acc"] == f"{(accs[2] + accs[3]) / 2:.3f} ± {abs(accs[2] - accs[3]) / 2 ** 0.5:.3f}"
    # group by a hyperparameter that differs between the runs: the replay buffer size
    options = at.selectbox(key="compare_group").options
    assert "strategy.buffer_size" in options


def test_launch_a_sweep_from_the_form_and_follow_it_on_the_compare_page(lab):
    at = app()
    at.switch_page("pages/launch.py").run()
    at.number_input(key="scenario.n_tasks").set_value(2)
    at.number_input(key="train.epochs_per_task").set_value(1)
    at.text_input(key="model.mlp.hidden").set_value("32")
    at.text_input(key="name").set_value("form-sweep")
    at.radio(key="launch_mode").set_value("A sweep").run()
    at.multiselect(key="sweep.strategy.name").set_value(["naive", "replay"]).run()
    at.text_input(key="sweep.seeds").set_value("0, 1")
    at.text_input(key="sweep.strategy.buffer_size").set_value("20, 40")
    at.button(key="launch_sweep").click().run()
    assert not at.exception
    sweep_id, name, kind = lab.store.sql("SELECT id, name, kind FROM sweeps ORDER BY id DESC LIMIT 1")[0]
    assert (name, kind) == ("form-sweep", "grid")
    configs = [json.loads(c) for (c,) in lab.store.sql("SELECT config FROM runs WHERE sweep_id = ?", [sweep_id])]
    # naive x 2 seeds, replay x 2 buffer sizes x 2 seeds: the buffer size applies to replay alone
    assert sorted((c["strategy"]["name"], c["strategy"].get("buffer_size"), c["seed"]) for c in configs) == [
        ("naive", None, 0), ("naive", None, 1), ("replay", 20, 0), ("replay", 20, 1), ("replay", 40, 0), ("replay", 40, 1)]
    assert all(c["scenario"]["n_tasks"] == 2 and c["model"]["hidden"] == [32] for c in configs)
    assert at.session_state["compare_sweep"] == sweep_id  # taken to the sweep on the Compare page
    ids = [r[0] for r in lab.store.sql("SELECT id FROM runs WHERE sweep_id = ?", [sweep_id])]
    assert [lab.manager.wait(i, timeout=120) for i in ids] == ["finished"] * 6
    page = app()
    page.session_state["compare_how"] = "By sweep"
    page.session_state["compare_sweep"] = sweep_id
    page.switch_page("pages/compare.py").run()
    assert not page.exception
    assert "6/6 ended" in page.get("progress")[0].proto.text


def test_a_bad_sweep_file_is_rejected_line_by_line_and_queues_nothing(lab):
    at = app()
    at.switch_page("pages/launch.py").run()
    at.radio(key="launch_mode").set_value("A sweep").run()
    at.text_area(key="sweep.yaml").set_value("name: bad\ngrid: {train.lr: [-1]}\nseeds: [0]\n")
    before = n_runs(lab)
    at.button(key="launch_sweep").click().run()
    errors = [e.value for e in at.error]
    assert any("train.lr = -1" in e and "greater than 0" in e for e in errors), errors
    assert n_runs(lab) == before


@pytest.mark.parametrize("paste, expected", [
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n", "aliases (&/*) are not allowed"),
    ("[" * 5000, "nested deeper than 32 levels"),
    ("seeds: [" + "9" * 5000 + "]", "an integer of 5,000 characters"),
])
def test_a_hostile_paste_is_one_line_on_the_page_and_queues_nothing(lab, paste, expected):
    at = app()
    at.switch_page("pages/launch.py").run()
    at.radio(key="launch_mode").set_value("A sweep").run()
    at.text_area(key="sweep.yaml").set_value(paste)
    before = n_runs(lab)
    at.button(key="launch_sweep").click().run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and expected in errors[0] and not at.exception, errors
    assert n_runs(lab) == before


def test_a_reality_check_runs_both_phases_in_the_lab_and_the_page_ranks_them_side_by_side(lab):
    import time
    from engine.sweeps.sweep import sweep_progress
    spec = {"name": "rc-page", "base": {"model": {"hidden": [32]}, "train": {"epochs_per_task": 1}, "eval": {"every": 5}},
            "reality_check": {"metric": "acc", "strategies": ["naive", "replay"],
                              "tune": {"scenario": {"dataset": "digits", "n_tasks": 2}, "grid": {"train.lr": [0.05]},
                                       "seeds": [0]},
                              "test": {"scenario": {"dataset": "mnist1d"}, "seeds": [10]}}}
    sweep_id = lab.launch_sweep(spec)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # the lab's keeper queues the test phase when tuning ends
        progress = sweep_progress(lab.store, sweep_id)
        if progress["ended"] == progress["total"] == 4:
            break
        time.sleep(0.5)
    assert progress["phases"]["test"]["finished"] == 2, progress
    at = app()
    at.session_state["compare_how"] = "By sweep"
    at.session_state["compare_sweep"] = sweep_id
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    rankings = next(df.value for df in at.dataframe if "B rank" in df.value.columns)
    assert sorted(rankings["strategy"]) == ["naive", "replay"]
    assert rankings["A rank"].notna().all() and rankings["B rank"].notna().all()
    # the outcome is one table: the page's is the report's, with its columns, rows and caption
    from engine.report.content import compare_report
    from engine.report.document import Heading, Table, Text

    report = compare_report(lab.store, sweep_id=sweep_id)
    at_heading = next(i for i, b in enumerate(report.blocks) if isinstance(b, Heading) and b.text == "Reality check")
    caption, table = report.blocks[at_heading + 1:at_heading + 3]
    assert isinstance(caption, Text) and isinstance(table, Table)
    assert list(rankings.columns) == table.columns
    assert [[r.strategy, r[1], str(r[4]), str(r[7]), r[8]] for r in rankings.itertuples(index=False)] == \
        [[row[0], row[1], row[4], row[7], row[8]] for row in table.rows]
    assert any(f"**Reality check**: {caption.text}" in m.value for m in at.markdown)
