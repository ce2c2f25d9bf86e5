"""Research scale end to end: a reduced ResNet-18 trains 5-task Split-CIFAR-10 from files in torchvision's
layout (cifar-10-batches-py), through the command line, a sweep and the Launch form, on the CPU."""

import json
import subprocess
import sys

import pytest

from store import Store
from tests.conftest import ROOT, launched_run
from tests.test_datasets import write_cifar10

SCENARIO = {"dataset": "cifar10", "setting": "class", "n_tasks": 5}
SMALL = {"model": {"name": "resnet18_reduced"}, "train": {"batch_size": 16, "epochs_per_task": 1, "lr": 0.05},
         "eval": {"every": 2, "batch_size": 64}}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, per_batch=40, n_test=40)  # 200 training images: 40 a task, 3 steps a task at batch 16
    return root


def engine(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def finished_resnet_runs(db) -> list[tuple]:
    with Store(db, serve=False) as store:
        return store.sql("SELECT id, status, total_steps, last_step, config->'model'->>'name', "
                         "config->'scenario'->>'dataset' FROM runs ORDER BY id")


def assert_trained(db, run_id):
    with Store(db, serve=False) as store:
        R = store.sql("SELECT count(*) FROM metrics WHERE run_id = ? AND metric = 'boundary_acc'", [run_id])[0][0]
        bounds = store.sql("SELECT count(*) FROM task_boundaries WHERE run_id = ? AND end_step IS NOT NULL", [run_id])[0][0]
    assert R == 6 * 5 and bounds == 5  # rows 0..5 of the accuracy matrix over 5 tasks; 5 tasks ended


def test_the_cli_trains_a_reduced_resnet_on_split_cifar10_files(tmp_path, cifar_root):
    config = tmp_path / "cifar.yaml"
    config.write_text(json.dumps({"name": "cifar-cli", "scenario": {**SCENARIO, "root": str(cifar_root)}, **SMALL}))
    db = tmp_path / "lab.duckdb"
    proc = engine("run", str(config), "--db", str(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ((run_id, status, total, last, model, dataset),) = finished_resnet_runs(db)
    assert (status, model, dataset) == ("finished", "resnet18_reduced", "cifar10") and total == last == 5 * 3
    assert_trained(db, run_id)
    # the same config without the files: one clear line, exit 2, nothing written
    config.write_text(json.dumps({"name": "x", "scenario": {**SCENARIO, "root": str(tmp_path / "none")}, **SMALL}))
    missing = engine("run", str(config), "--db", str(tmp_path / "other.duckdb"))
    assert missing.returncode == 2 and "cifar-10-batches-py" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "other.duckdb").exists()


def test_a_sweep_trains_split_cifar10_over_seeds(tmp_path, cifar_root):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps({"name": "cifar-seeds", "base": {"scenario": {**SCENARIO, "root": str(cifar_root)},
                                                                 **SMALL}, "seeds": [0, 1]}))
    db = tmp_path / "lab.duckdb"
    proc = engine("sweep", str(sweep), "--db", str(db), "--parallel", "2", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = finished_resnet_runs(db)
    assert [r[1:] for r in runs] == [("finished", 15, 15, "resnet18_reduced", "cifar10")] * 2
    for run_id, *_ in runs:
        assert_trained(db, run_id)


def test_the_launch_form_trains_split_cifar10(cifar_root, lab_launch_page):
    lab, at = lab_launch_page
    at.text_input(key="scenario.root").set_value(str(cifar_root)).run()
    at.selectbox(key="scenario.dataset").set_value("cifar10").run()
    assert not [e.value for e in at.error]
    at.selectbox(key="model.name").set_value("resnet18_reduced").run()
    at.number_input(key="train.batch_size").set_value(16)
    at.number_input(key="train.epochs_per_task").set_value(1)
    at.number_input(key="eval.every").set_value(2)
    at.button(key="launch").click().run()
    run_id = launched_run(at)
    assert lab.manager.wait(run_id, timeout=600) == "finished"
    config = json.loads(lab.store.sql("SELECT config FROM runs WHERE id = ?", [run_id])[0][0])
    assert config["model"]["name"] == "resnet18_reduced" and config["scenario"]["dataset"] == "cifar10"
    assert config["scenario"]["root"] == str(cifar_root) and config["train"]["batch_size"] == 16
    assert lab.store.sql("SELECT count(*) FROM task_boundaries WHERE run_id = ? AND end_step IS NOT NULL",
                         [run_id])[0][0] == 5
