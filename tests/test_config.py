import subprocess
import sys

import pytest

from engine.config import ConfigError, load_config, parse_config
from engine.strategies import STRATEGIES
from tests.conftest import ROOT

EXAMPLE = """
name: replay-demo
seed: 0
scenario: {dataset: digits, setting: class, n_tasks: 5}
model: {name: mlp, hidden: [256, 256]}
strategy: {name: replay, buffer_size: 200}
train: {optimizer: sgd, lr: 0.05, batch_size: 32, epochs_per_task: 5}
eval: {every: 10, subset: null}
"""


def test_the_issue_example_loads_with_defaults_filled(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(EXAMPLE)
    cfg = load_config(path)
    assert cfg.name == "replay-demo"
    assert cfg.strategy == {"name": "replay", "buffer_size": 200, "replay_batch_size": 32, "policy": "reservoir",
                            "memory_per_class": 100, "weighting": "joined", "new_weight": 0.5}
    assert cfg.scenario.n_tasks == 5 and cfg.model.hidden == [256, 256]
    assert cfg.eval.every == 10 and cfg.eval.subset is None


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"train": {"lr": -1}}, ["train.lr = -1: must be greater than 0"]),
        ({"train": {"bogus": 1}}, ["train.bogus: is not a known field"]),
        ({"strategy": {"name": "replay", "buffer_size": 0}},
         ["strategy.buffer_size = 0: must be greater than or equal to 1"]),
        ({"strategy": {"name": "ewc", "mode": "sometimes"}}, ["strategy.mode = 'sometimes': must be 'separate' or 'online'"]),
        ({"strategy": {"name": "sgd-magic"}}, ["strategy.name = 'sgd-magic': must be one of " + ", ".join(STRATEGIES)]),
        ({"strategy": {"name": "lwf", "beta": 1}}, ["strategy.beta: is not a known field"]),
        ({"scenario": {"n_tasks": 11}}, ["scenario.n_tasks = 11: must be at most 10: digits has 10 classes to share out"]),
        ({"scenario": {"setting": "online"}}, ["scenario.setting = 'online': must be 'class', 'task' or 'domain'"]),
        ({"scenario": {"dataset": "imagenet"}}, ["scenario.dataset = 'imagenet': must be one of cifar10, cifar100, cifar100_coarse, digits, "
                                              "fashion_mnist, image_folder, kmnist, mnist, mnist1d, npz, svhn, tiny_imagenet"]),
        ({"eval": {"every": 0}}, ["eval.every = 0: must be greater than or equal to 1"]),
        ({"model": {"hidden": [64, -3]}}, ["model.hidden = [64, -3]: every entry must be from 1 to 16384 (got -3)"]),
    ],
)
def test_a_bad_config_names_field_value_and_what_is_allowed(data, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert err.value.problems == expected


def test_every_problem_gets_its_own_line():
    with pytest.raises(ConfigError) as err:
        parse_config({"train": {"lr": 0, "batch_size": 0}, "eval": {"subset": 0}, "strategy": {"name": "replay", "buffer_size": -1}})
    assert len(err.value.problems) == 4
    assert err.value.problems[0].startswith("strategy.buffer_size = -1")


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntrain: {lr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "line 3" in err.value.problems[0] and "not valid YAML" in err.value.problems[0]


def test_cli_rejects_a_bad_config_with_exit_2_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntrain: {lr: -1, bogus: 2}\nstrategy: {name: ewc, ewc_lambda: -3}\n")
    db = tmp_path / "lab.duckdb"
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(path), "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert "3 problem(s)" in lines[0]
    assert [line.strip() for line in lines[1:]] == [
        "strategy.ewc_lambda = -3: must be greater than or equal to 0",
        "train.lr = -1: must be greater than 0",
        "train.bogus: is not a known field",
    ]
    assert not db.exists()
