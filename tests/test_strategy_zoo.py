"""Every registered method runs on the default scenario and on a CNN scenario of image files, from the
command line's sweeps and from the Launch form; a method that cannot run in a setting or with a model
is refused by the config check with one line."""

import json
import subprocess
import sys

import pytest

from engine.config import ConfigError, parse_config
from engine.runs.manager import run_in_process
from engine.strategies import STRATEGIES
from store import Store
from tests.conftest import ROOT, launched_run
from tests.test_datasets import write_cifar10

CNN = {"name": "cnn", "channels": [8]}
SMALL_TRAIN = {"batch_size": 16, "epochs_per_task": 1}


def setting_of(name: str) -> str:
    return "class" if "class" in STRATEGIES[name].settings else STRATEGIES[name].settings[0]


def works_with_mlp(name: str) -> bool:
    return STRATEGIES[name].models is None or "mlp" in STRATEGIES[name].models


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, per_batch=20, n_test=20)
    return root


def cnn_config(name, root, **scenario):
    return {"name": f"zoo-{name}", "scenario": {"dataset": "cifar10", "root": str(root), "n_tasks": 2,
                                                "setting": setting_of(name), **scenario},
            "model": CNN, "strategy": {"name": name}, "train": SMALL_TRAIN, "eval": {"every": 3}}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_method_trains_a_cnn_on_image_files(store, cifar_root, name):
    run_id = run_in_process(store, parse_config(cnn_config(name, cifar_root)))
    status, last, total = store.sql("SELECT status, last_step, total_steps FROM runs WHERE id = ?", [run_id])[0]
    assert status == "finished" and last == total > 0
    assert store.sql("SELECT count(*) FROM metrics WHERE run_id = ? AND metric = 'boundary_acc' AND step = ?",
                     [run_id, total])[0][0] == 2  # both tasks evaluated at the end


def test_a_method_outside_its_setting_or_model_is_refused_with_one_line():
    with pytest.raises(ConfigError) as err:
        parse_config({"strategy": {"name": "clr"}, "scenario": {"setting": "task"}})
    assert err.value.problems == ["strategy.name = 'clr': does not work with model mlp "
                                  "(model.name; it works with: cnn, resnet18_reduced, resnet18)"]
    with pytest.raises(ConfigError) as err:
        parse_config({"strategy": {"name": "packnet"}})
    assert len(err.value.problems) == 1 and "does not support the class-incremental setting" in err.value.problems[0]


def sweep(tmp_path, db, name, base, names) -> list[tuple]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"name": name, "base": base, "grid": {"strategy.name": names}, "seeds": [0]}))
    proc = subprocess.run([sys.executable, "-m", "engine", "sweep", str(path), "--db", str(db), "--parallel", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with Store(db, serve=False) as store:
        return store.sql("SELECT config->'strategy'->>'name', status FROM runs r JOIN sweeps s ON r.sweep_id = s.id "
                         "WHERE s.name = ? ORDER BY r.id", [name])


def test_every_method_runs_from_sweeps_on_the_default_scenario_and_a_cnn_scenario(tmp_path, cifar_root):
    db = tmp_path / "lab.duckdb"
    for setting in ("class", "task"):
        names = [n for n in STRATEGIES if setting_of(n) == setting]
        mlp_names = [n for n in names if works_with_mlp(n)]
        default = {"scenario": {"dataset": "digits", "setting": setting, "n_tasks": 2}, "model": {"hidden": [32]},
                   "train": SMALL_TRAIN, "eval": {"every": 5}}
        assert sweep(tmp_path, db, f"default-{setting}", default, mlp_names) == [(n, "finished") for n in mlp_names]
        images = {k: v for k, v in cnn_config(names[0], cifar_root).items() if k not in ("name", "strategy")}
        images["scenario"]["setting"] = setting
        assert sweep(tmp_path, db, f"cnn-{setting}", images, names) == [(n, "finished") for n in names]


def test_every_method_runs_from_the_launch_form(lab_launch_page):
    lab, at = lab_launch_page
    at.number_input(key="scenario.n_tasks").set_value(2)
    at.text_input(key="model.mlp.hidden").set_value("32")
    at.number_input(key="train.epochs_per_task").set_value(1)
    launched = {}
    for name in [n for n in STRATEGIES if works_with_mlp(n)]:
        at.radio(key="scenario.setting").set_value(setting_of(name)).run()
        at.selectbox(key="strategy.name").set_value(name).run()
        at.button(key="launch").click().run()
        launched[name] = launched_run(at)
        at.switch_page("pages/launch.py").run()
    for name, run_id in launched.items():
        assert lab.manager.wait(run_id, timeout=600) == "finished", name
        config = json.loads(lab.store.sql("SELECT config FROM runs WHERE id = ?", [run_id])[0][0])
        assert config["strategy"]["name"] == name
