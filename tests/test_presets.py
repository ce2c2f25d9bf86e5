"""Published settings as presets: ``preset: NAME`` in a config or a sweep's base starts from the paper's
setting (the base of its reproduction sweep), the config's own values win, and the Launch form's
"Start from" fills the form with the same settings."""

import json

import pytest

from engine.config import ConfigError, parse_config
from engine.core.inputs import read_yaml
from engine.presets import PRESETS, REPRODUCE, get_preset, is_preset, list_presets, merged
from engine.sweeps.sweep import parse_sweep
from store.pareto import _flat
from tests.conftest import launched_run
from tests.test_launch_page import widget


def test_every_preset_is_its_reproduction_sweeps_base_without_the_bookkeeping():
    assert list_presets() and all(is_preset(name) for name in list_presets()) and not is_preset("nope")
    for name, preset in PRESETS.items():
        base = read_yaml(REPRODUCE / preset.file)["base"]
        config = preset.config()
        assert config["scenario"] == base["scenario"] and config["model"] == base["model"]
        assert {k: v for k, v in base["train"].items() if k != "weights"} == config["train"]
        assert ("eval" in config) == ("eval" not in preset.not_the_papers)
        config["train"]["lr"] = -1.0  # a copy: the next caller gets the file's values
        assert get_preset(name).config()["train"]["lr"] == base["train"]["lr"]


def test_a_config_starts_from_the_preset_and_its_own_values_win():
    preset = get_preset("mammoth-seq-mnist").config()
    config = parse_config({"preset": "mammoth-seq-mnist", "scenario": {"dataset": "digits"},
                           "strategy": {"name": "derpp", "alpha": 0.2}, "train": {"lr": 0.1}})
    assert config.scenario.dataset == "digits" and config.scenario.normalize is preset["scenario"]["normalize"] is False
    assert config.model.hidden == preset["model"]["hidden"] and config.train.batch_size == preset["train"]["batch_size"]
    assert config.train.optimizer == "sgd" and config.train.lr == 0.1 and config.strategy["alpha"] == 0.2
    assert "preset" not in config.model_dump()  # the stored config is the resolved one
    # another strategy than the preset's: the preset's strategy settings do not leak into it
    gap = parse_config({"preset": "delange-stability-gap", "scenario": {"dataset": "digits"}, "strategy": {"name": "naive"}})
    assert gap.strategy == {"name": "naive"} and gap.eval.every == 1 and gap.train.momentum == 0.9


def test_merging_replaces_a_section_of_another_name_and_merges_one_of_the_same():
    preset = {"strategy": {"name": "replay", "buffer_size": 9}, "model": {"name": "mlp", "hidden": [4]}, "seed": 1}
    out = merged(preset, {"strategy": {"buffer_size": 3}, "model": {"name": "cnn"}, "seed": 2})
    assert out == {"strategy": {"name": "replay", "buffer_size": 3}, "model": {"name": "cnn"}, "seed": 2}
    assert preset["strategy"]["buffer_size"] == 9  # not changed


@pytest.mark.parametrize("value", ["nope", 3, None, ["mammoth-seq-mnist"]])
def test_an_unknown_preset_is_one_line_beside_the_configs_other_problems(value):
    with pytest.raises(ConfigError) as err:
        parse_config({"preset": value, "train": {"lr": -1}})
    lines = err.value.problems
    assert lines[0].startswith("preset = ") and "must be one of mammoth-seq-mnist" in lines[0]
    assert any(line.startswith("train.lr") for line in lines) and len(lines) == 2
    with pytest.raises(ConfigError) as err:
        parse_sweep({"name": "s", "base": {"preset": value}, "grid": {"train.lr": [0.1]}})
    assert any(line.startswith("base.preset = ") for line in err.value.problems)


def test_a_sweep_base_starts_from_the_preset():
    spec = parse_sweep({"name": "s", "base": {"preset": "mammoth-seq-mnist", "scenario": {"dataset": "digits"}},
                        "grid": {"strategy.name": ["naive", "replay"]}})
    assert spec.base["train"]["batch_size"] == 10 and spec.base["scenario"] == {
        "dataset": "digits", "setting": "class", "n_tasks": 5, "normalize": False}


def test_the_launch_forms_start_from_fills_the_form_with_the_preset_and_launches_it(lab_launch_page):
    lab, at = lab_launch_page
    defaults = {key: widget(at, key).value for key in ("train.batch_size", "train.lr", "model.mlp.hidden")}
    at.selectbox(key="preset").set_value("mammoth-seq-mnist").run()
    assert not at.exception
    assert all("mnist" in e.value.lower() for e in at.error), [e.value for e in at.error]  # only MNIST's files, if absent
    assert any("buzzega2020-seq-mnist.yaml" in c.value for c in at.caption)  # where its settings come from
    shown = {"scenario.dataset": "mnist", "scenario.normalize": False, "scenario.n_tasks": 5, "train.optimizer": "sgd",
             "train.lr": 0.03, "train.momentum": 0.0, "train.batch_size": 10.0, "train.epochs_per_task": 1.0,
             "model.mlp.hidden": "100, 100"}
    got = {key: widget(at, key).value for key in shown}
    assert got == shown and got["train.batch_size"] != defaults["train.batch_size"]
    # on the embedded data (MNIST's files are not in CI) and small, the rest as the preset
    at.selectbox(key="scenario.dataset").set_value("digits").run()
    at.number_input(key="scenario.n_tasks").set_value(2).run()
    at.button(key="launch").click().run()
    assert not at.exception
    stored = json.loads(lab.store.sql("SELECT config FROM runs WHERE id = ?", [launched_run(at)])[0][0])
    want = _flat(parse_config({"preset": "mammoth-seq-mnist", "scenario": {"dataset": "digits", "n_tasks": 2}})
                 .model_dump(mode="json"))
    got = _flat(stored)
    assert {k: got[k] for k in want if k != "name"} == {k: v for k, v in want.items() if k != "name"}
    assert lab.manager.wait(launched_run(at), timeout=180) == "finished"
