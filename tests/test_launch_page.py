"""The Launch page (AppTest on a lab of its own): the run/sweep choice and its title, a sweep that runs
exactly the strategies listed, names that say what a run is, and relaunching a run with changes
(``?from=RUN_ID``), where what is shown is what is launched."""

import json
import os
from pathlib import Path

import pytest

from engine.config import RunConfig, default_run_name, load_config, parse_config
from store.pareto import _flat  # a config's fields as dotted keys
from tests.conftest import launched_run
from tests.test_browser import CHROMIUM, launch_from_the_form, no_exception, page, server  # noqa: F401 - fixtures
from tests.test_datasets import write_cifar10

SMALL = {"scenario.n_tasks": 2, "train.epochs_per_task": 1}


def set_small(at):
    for key, value in SMALL.items():
        at.number_input(key=key).set_value(value)
    at.text_input(key="model.mlp.hidden").set_value("16")


def widget(at, key):
    """The input with this key, whatever its kind."""
    for kind in (at.text_input, at.number_input, at.selectbox, at.checkbox, at.radio, at.multiselect):
        try:
            return kind(key=key)
        except KeyError:
            continue
    raise KeyError(key)


def n_runs(lab) -> int:
    return lab.store.sql("SELECT count(*) FROM runs")[0][0]


def test_the_run_or_sweep_choice_is_at_the_top_and_the_title_follows_it(lab_launch_page):
    _, at = lab_launch_page
    assert [t.value for t in at.title] == ["Launch a run"]
    assert at.radio[0].key == "launch_mode"  # the first choice on the page, above the scenario's
    assert at.text_input(key="name").label == "Run name"
    at.radio(key="launch_mode").set_value("A sweep").run()
    assert [t.value for t in at.title] == ["Launch a sweep"] and not at.exception
    assert at.text_input(key="name").label == "Sweep name"
    at.radio(key="launch_mode").set_value("One run").run()
    assert [t.value for t in at.title] == ["Launch a run"]


def test_the_default_name_says_what_the_run_is_and_follows_the_form_until_one_is_typed(lab_launch_page):
    lab, at = lab_launch_page
    name = lambda: at.text_input(key="name").value  # noqa: E731
    assert name() == "naive digits class-IL"
    at.selectbox(key="strategy.name").set_value("replay").run()
    assert name() == "replay digits class-IL"
    at.radio(key="scenario.setting").set_value("task").run()
    at.selectbox(key="scenario.dataset").set_value("mnist1d").run()
    assert name() == "replay mnist1d task-IL"
    at.text_input(key="name").set_value("my own").run()
    at.selectbox(key="strategy.name").set_value("naive").run()
    assert name() == "my own"  # typed: kept
    at.text_input(key="name").set_value("").run()
    assert name() == "naive mnist1d task-IL"  # emptied: it follows the form again
    at.selectbox(key="strategy.name").set_value("replay").run()
    set_small(at)
    at.button(key="launch").click().run()
    assert not at.exception
    run_id = launched_run(at)
    assert lab.store.sql("SELECT name, config->>'name' FROM runs WHERE id = ?", [run_id])[0] == (
        "replay mnist1d task-IL", "replay mnist1d task-IL")
    assert lab.manager.wait(run_id, timeout=120) == "finished"


def test_a_config_without_a_name_is_named_after_what_it_runs(tmp_path):
    assert RunConfig().name == "naive digits class-IL"
    assert parse_config({"strategy": {"name": "ewc"}, "scenario": {"setting": "domain", "dataset": "mnist1d"}}
                        ).name == "ewc mnist1d domain-IL"
    path = tmp_path / "no-name.yaml"
    path.write_text("scenario: {dataset: digits, setting: task, n_tasks: 5}\nstrategy: {name: replay}\n")
    assert load_config(path).name == "replay digits task-IL" == default_run_name(load_config(path))
    assert parse_config({"name": "kept"}).name == "kept"
    with pytest.raises(Exception, match="name = ''"):
        parse_config({"name": ""})  # a name given empty is still an error, not replaced


def test_a_sweep_runs_exactly_the_strategies_listed_and_the_page_says_which_and_how_many(lab_launch_page):
    lab, at = lab_launch_page
    set_small(at)
    at.selectbox(key="strategy.name").set_value("replay").run()
    at.number_input(key="strategy.replay.buffer_size").set_value(77)
    at.radio(key="launch_mode").set_value("A sweep").run()
    at.text_input(key="sweep.seeds").set_value("0")
    at.multiselect(key="sweep.strategy.name").set_value(["naive", "ewc"])
    at.text_input(key="sweep.train.lr").set_value("0.01, 0.05").run()
    info = at.info[0].value
    assert info.startswith("This sweep will run 4 runs in all: naive, ewc") and "replay" not in info, info
    assert at.text_input(key="name").value == "naive+ewc digits class-IL"
    # nothing listed: nothing runs, and the page says so rather than falling back on the strategy above
    at.multiselect(key="sweep.strategy.name").set_value([]).run()
    assert any("No strategy picked" in w.value for w in at.warning)
    before = n_runs(lab)
    at.button(key="launch_sweep").click().run()
    assert [e.value for e in at.error] == ["Strategies: pick at least one; the sweep runs exactly the strategies listed"]
    assert n_runs(lab) == before
    # the strategy above, listed, runs with the values shown above; the others with their defaults
    at.multiselect(key="sweep.strategy.name").set_value(["replay", "ewc"]).run()
    info = at.info[0].value
    assert "4 runs in all: replay, ewc" in info and "buffer_size = 77" in info, info
    at.button(key="launch_sweep").click().run()
    assert not at.exception and not at.error
    sweep_id, sweep_name = lab.store.sql("SELECT id, name FROM sweeps ORDER BY id DESC LIMIT 1")[0]
    rows = lab.store.sql("SELECT id, name, config FROM runs WHERE sweep_id = ? ORDER BY id", [sweep_id])
    configs = [json.loads(c) for _, _, c in rows]
    assert sweep_name == "replay+ewc digits class-IL"
    assert sorted((c["strategy"]["name"], c["strategy"].get("buffer_size"), c["train"]["lr"]) for c in configs) == [
        ("ewc", None, 0.01), ("ewc", None, 0.05), ("replay", 77, 0.01), ("replay", 77, 0.05)]
    # each run is named after the values it varies
    assert sorted(name for _, name, _ in rows) == sorted(
        f"replay+ewc digits class-IL/{s} lr={lr} seed=0" for s in ("replay", "ewc") for lr in ("0.01", "0.05"))
    assert [lab.manager.wait(run_id, timeout=120) for run_id, _, _ in rows] == ["finished"] * 4


@pytest.fixture
def cifar_root(tmp_path):
    write_cifar10(tmp_path / "data", per_batch=20, n_test=20)
    return tmp_path / "data"


def source_config(root) -> dict:
    """A run with no field at its default (the test below checks that), on image files so a CNN runs."""
    return {
        "name": "cnn replay on files", "seed": 11,
        "scenario": {"root": str(root), "dataset": "cifar10", "setting": "task", "domain": "rotated", "n_tasks": 2,
                     "class_seed": 5, "seed": 3, "test_size": 0.3, "tasks": [1, 2], "normalize": False},
        "model": {"name": "cnn", "channels": [8, 16], "batch_norm": True},
        "strategy": {"name": "replay", "buffer_size": 30, "replay_batch_size": 8, "policy": "class_balanced"},
        "train": {"optimizer": "adam", "lr": 0.003, "momentum": 0.5, "weight_decay": 0.0001, "batch_size": 16,
                  "epochs_per_task": 2, "iterations_per_task": 3, "optimizer_state": "keep", "augment": "none", "schedule": "cosine", "warmup_steps": 2, "lr_step_every": 2,
                  "lr_gamma": 0.5, "device": "cpu", "precision": "bf16-mixed", "deterministic": True, "weights": "none"},
        "eval": {"every": 3, "batch_size": 64, "subset": 10},
    }


def test_relaunch_fills_every_field_and_launching_it_unchanged_gives_the_same_config(lab_launch_page, cifar_root):
    lab, at = lab_launch_page
    source = parse_config(source_config(cifar_root)).model_dump(mode="json")
    defaults = _flat(RunConfig().model_dump(mode="json"))
    same = [k for k, v in _flat(source).items() if k in defaults and defaults[k] == v]
    assert same == [], same  # every field the form fills is checked with a value of its own
    source_id = lab.manager.submit(parse_config(source))
    assert lab.manager.wait(source_id, timeout=180) == "finished"

    at.query_params["from"] = str(source_id)
    at.run()
    assert not at.exception and not at.error
    assert f"run {source_id}'s config" in at.info[0].value
    shown = {
        "name": "cnn replay on files (2)", "seed": 11, "launch_mode": "One run",
        "scenario.root": str(cifar_root), "scenario.dataset": "cifar10", "scenario.setting": "task",
        "scenario.domain": "rotated", "scenario.n_tasks": 2, "shuffle_classes": True, "scenario.class_seed": 5,
        "scenario.seed": 3, "scenario.test_size": 0.3, "scenario.tasks": "1, 2", "scenario.normalize": False,
        "model.name": "cnn", "model.cnn.channels": "8, 16", "model.cnn.batch_norm": True,
        "strategy.name": "replay", "strategy.replay.buffer_size": 30, "strategy.replay.replay_batch_size": 8,
        "strategy.replay.policy": "class_balanced",
        "train.optimizer": "adam", "train.lr": 0.003, "train.momentum": 0.5, "train.weight_decay": 0.0001,
        "train.batch_size": 16, "train.epochs_per_task": 2, "train.iterations_per_task": 3, "train.optimizer_state": "keep", "train.augment": "none", "train.schedule": "cosine",
        "train.warmup_steps": 2, "train.lr_step_every": 2, "train.lr_gamma": 0.5, "train.device": "cpu",
        "train.precision": "bf16-mixed", "train.deterministic": True, "train.weights": "none",
        "eval.every": 3, "eval.batch_size": 64, "eval.subset": 10,
    }
    assert {key: widget(at, key).value for key in shown} == shown
    at.run()  # a rerun neither refills nor moves anything
    assert widget(at, "name").value == "cnn replay on files (2)"

    at.button(key="launch").click().run()
    assert not at.exception
    copy_id = launched_run(at)
    assert copy_id != source_id
    copy = json.loads(lab.store.sql("SELECT config FROM runs WHERE id = ?", [copy_id])[0][0])
    assert copy["name"] == "cnn replay on files (2)"
    assert {**copy, "name": source["name"]} == source  # what was shown is what ran: the same config but the name
    assert lab.manager.wait(copy_id, timeout=180) == "finished"


def test_relaunch_with_a_change_launches_the_change_and_the_next_copy_is_numbered_on(lab_launch_page):
    lab, at = lab_launch_page
    source = parse_config({"name": "base (2)", "strategy": {"name": "replay", "buffer_size": 40},
                           "scenario": {"n_tasks": 2}, "model": {"name": "mlp", "hidden": [16]},
                           "train": {"epochs_per_task": 1}, "eval": {"every": 4}})
    source_id = lab.manager.submit(source)
    at.query_params["from"] = str(source_id)
    at.run()
    assert widget(at, "name").value == "base (3)"  # the copy number goes on; it does not become "(2) (2)"
    at.number_input(key="strategy.replay.buffer_size").set_value(90)
    at.button(key="launch").click().run()
    copy = json.loads(lab.store.sql("SELECT config FROM runs WHERE id = ?", [launched_run(at)])[0][0])
    assert copy["strategy"]["buffer_size"] == 90 and copy["eval"]["every"] == 4 and copy["model"]["hidden"] == [16]
    assert lab.manager.wait(source_id, timeout=120) == lab.manager.wait(launched_run(at), timeout=120) == "finished"


def test_a_bad_or_unknown_from_is_one_line_and_the_form_keeps_its_defaults(lab_launch_page):
    lab, at = lab_launch_page
    for bad in ["abc", "424242", "", "-3", "1" * 40, "1; DROP TABLE runs", "0"]:
        at.query_params["from"] = bad
        at.run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and errors[0].startswith(f"from = {bad[:40]!r}") and "no such run" in errors[0], errors
        assert widget(at, "strategy.name").value == "naive" and widget(at, "name").value == "naive digits class-IL"
    del at.query_params["from"]
    at.run()
    assert not at.error  # a later visit without from: the line is gone
    assert n_runs(lab) == 0


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_in_a_browser_the_name_follows_the_form_and_a_relaunch_link_opens_the_filled_form(server, page):
    from playwright.sync_api import expect

    url, db = server
    page.goto(f"{url}/launch", wait_until="networkidle")
    page.get_by_role("heading", name="Launch a run").wait_for(timeout=60_000)
    expect(page.get_by_role("textbox", name="Run name")).to_have_value("naive digits class-IL", timeout=60_000)
    source = launch_from_the_form(page, {"Tasks": "2", "Epochs per task": "1"})

    page.goto(f"{url}/launch?from={source}", wait_until="networkidle")
    page.get_by_text(f"The form holds run {source}'s config").wait_for(timeout=60_000)
    expect(page.get_by_role("textbox", name="Run name")).to_have_value("naive digits class-IL (2)", timeout=60_000)
    expect(page.get_by_label("Tasks", exact=True)).to_have_value("2")
    expect(page.get_by_label("Epochs per task")).to_have_value("1")
    no_exception(page)
    # a default name follows the config until the user types one: a change of strategy renames the copy
    choose(page, "Strategy", "Experience Replay")
    expect(page.get_by_role("textbox", name="Run name")).to_have_value("replay digits class-IL")
    choose(page, "Strategy", "Naive (fine-tuning)")
    expect(page.get_by_role("textbox", name="Run name")).to_have_value("naive digits class-IL (2)")
    assert_no_widget_warning(db)  # every widget of the filled form has its value set once, through the state
    page.get_by_role("button", name="Launch").last.click()
    page.wait_for_url("**/run?run=*", timeout=60_000)
    copy = page.url.rsplit("=", 1)[1]
    assert int(copy) != source
    page.get_by_role("heading", name=f"Run {copy}: naive digits class-IL (2)").wait_for(timeout=60_000)

    page.goto(f"{url}/launch?from=nope", wait_until="networkidle")
    page.get_by_text("from = 'nope': no such run").wait_for(timeout=60_000)
    no_exception(page)


def choose(page, label: str, option, typed: str | None = None) -> None:
    """Pick ``option`` (a name or a pattern) in the select box labelled ``label``, as a user does: type
    ``typed`` (the name by default) to filter its list (a long list draws only its first options)."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.focus()
    box.press("ArrowDown")  # opens its list (a click on the input only focuses it)
    box.press_sequentially(typed or option, delay=20)
    page.get_by_role("option", name=option, exact=isinstance(option, str)).click()
    if page.get_by_role("option").count():  # a multiselect's list stays open, hiding the page from roles
        page.keyboard.press("Escape")
    page.wait_for_timeout(1500)


def open_a_small_sweep(page, url: str) -> None:
    """The Launch page's sweep form, for 2 tasks of 1 epoch over seed 0."""
    open_launch(page, url)
    type_in(page, "Tasks", "2")
    type_in(page, "Epochs per task", "1")
    page.locator('[data-testid="stRadio"] label').filter(has_text="A sweep").click()
    page.get_by_role("heading", name="Launch a sweep").wait_for()
    type_in(page, "Seeds", "0")


def open_launch(page, url: str) -> None:
    page.goto(f"{url}/launch", wait_until="networkidle")
    page.get_by_role("heading", name="Launch a run").wait_for(timeout=60_000)


def type_in(page, label: str, value: str, role: str | None = None) -> None:
    field = page.get_by_role(role, name=label, exact=True) if role else page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    page.wait_for_timeout(1500)


def assert_no_widget_warning(db) -> None:
    """The server's log has no widget-state warning (it comes with a stack trace, once per process)."""
    log = db.with_name("streamlit.log").read_text()
    assert "created with a default value" not in log and "Stack (most recent call last)" not in log, log[-3000:]


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_in_a_browser_the_dataset_picked_survives_a_data_directory_and_a_model_change(server, page, cifar_root):
    import re

    from playwright.sync_api import expect

    url, db = server
    open_launch(page, url)
    choose(page, "Dataset", re.compile(r"^CIFAR-10( \(files missing\))?$"), "CIFAR-10")  # the label once said so
    page.get_by_text("cifar-10-batches-py/data_batch_1 not found").first.wait_for()
    type_in(page, "Data directory", str(cifar_root))
    choose(page, "Model", "Small CNN")
    dataset, name = page.get_by_role("combobox", name="Dataset", exact=True), page.get_by_role("textbox", name="Run name")
    expect(dataset).to_have_value("CIFAR-10")
    expect(name).to_have_value("naive cifar10 class-IL")
    type_in(page, "Tasks", "2")  # any other change keeps it too
    expect(dataset).to_have_value("CIFAR-10")
    expect(name).to_have_value("naive cifar10 class-IL")
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    page.get_by_text("Cost: about").wait_for()  # the config shown is valid: cifar10 from the directory typed
    no_exception(page)


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_in_a_browser_a_fraction_in_a_whole_number_field_is_one_line_not_cut(server, page):
    from playwright.sync_api import expect

    url, _ = server
    open_launch(page, url)
    type_in(page, "Epochs per task", "2.5")
    expect(page.get_by_label("Epochs per task", exact=True)).to_have_value("2.5")  # kept as typed, not 2
    errors = page.locator('[data-testid="stAlertContentError"]')
    expect(errors).to_have_count(1)
    assert errors.first.inner_text().endswith("train.epochs_per_task = 2.5: must be a valid integer")
    type_in(page, "Epochs per task", "2")
    expect(errors).to_have_count(0)
    page.get_by_text("Cost: about").wait_for()


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_in_a_browser_a_sweep_runs_the_strategy_box_s_strategy_and_those_added(server, page):
    url, _ = server
    open_a_small_sweep(page, url)
    choose(page, "Strategy", "Experience Replay")  # the Strategy box, after the sweep's list was drawn
    type_in(page, "buffer size", "77", role="spinbutton")  # the Strategy box's, not the sweep's values
    choose(page, "Strategies", "DER++")
    preview = page.locator('[data-testid="stAlertContentInfo"]').filter(has_text="This sweep will run")
    text = preview.inner_text()
    assert "2 runs in all: replay, derpp" in text and "naive" not in text and "buffer_size = 77" in text, text
    page.get_by_role("button", name="Launch the sweep").click()
    page.wait_for_url("**/compare*", timeout=60_000)
    page.goto(f"{url}/runs", wait_until="networkidle")
    page.get_by_text("replay+derpp digits class-IL/replay").first.wait_for(timeout=60_000, state="attached")
    runs = zip(table_column(page, "name"), table_column(page, "strategy"))  # the module's other runs too
    swept = sorted(strategy for name, strategy in runs if name.startswith("replay+derpp digits class-IL/"))
    assert swept == ["derpp", "replay"]  # the sweep's runs, and no other
    no_exception(page)


def table_column(page, header: str) -> list[str]:
    """The cells of a data table's column (the grid is drawn on a canvas; its cells are in the DOM, hidden)."""
    column = page.get_by_role("columnheader", name=header, exact=True, include_hidden=True).first.get_attribute("aria-colindex")
    return page.locator(f'[role="gridcell"][aria-colindex="{column}"]').all_text_contents()


def test_the_form_queues_a_domain_split_run_with_its_two_unit_head(lab_launch_page):
    import torch

    lab, at = lab_launch_page
    set_small(at)
    at.radio(key="scenario.setting").set_value("domain")
    at.selectbox(key="scenario.domain").set_value("split")
    at.number_input(key="scenario.n_tasks").set_value(5)
    at.run()
    at.button(key="launch").click().run()
    assert not at.exception and not at.error
    run_id = launched_run(at)
    config = json.loads(lab.store.sql("SELECT config FROM runs WHERE id = ?", [run_id])[0][0])
    assert (config["scenario"]["setting"], config["scenario"]["domain"], config["scenario"]["n_tasks"]) == ("domain", "split", 5)
    assert lab.manager.wait(run_id, timeout=180) == "finished"
    weights = torch.load(lab.store.artifacts_dir(run_id) / "after-task-5.pt")
    assert [v for k, v in weights.items() if k.endswith("weight")][-1].shape == (2, 16)


@pytest.mark.parametrize("name", ["agem", "icarl"])
def test_the_form_queues_agem_and_icarl_with_a_memory_per_class(lab_launch_page, name):
    lab, at = lab_launch_page
    set_small(at)
    at.selectbox(key="strategy.name").set_value(name).run()
    at.selectbox(key=f"strategy.{name}.policy").set_value("per_class")
    at.number_input(key=f"strategy.{name}.memory_per_class").set_value(7)
    if name == "icarl":
        at.selectbox(key="strategy.icarl.exemplars_joined_to").set_value("dataset")
    at.run()
    at.button(key="launch").click().run()
    assert not at.exception and not at.error
    run_id = launched_run(at)
    strategy = json.loads(lab.store.sql("SELECT config FROM runs WHERE id = ?", [run_id])[0][0])["strategy"]
    assert (strategy["name"], strategy["policy"], strategy["memory_per_class"]) == (name, "per_class", 7)
    assert strategy.get("exemplars_joined_to", "dataset") == "dataset"
    assert lab.manager.wait(run_id, timeout=300) == "finished"
