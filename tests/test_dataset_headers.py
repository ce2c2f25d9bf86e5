"""The generic datasets (npz, image_folder) through every real entry point (the CLI's run, a sweep, a
bundle, the Launch form in a browser): their shape and classes come from the files' header at the config
check. And the cost estimate from the files' real sizes: its steps are the steps a real run takes, its
evaluation term follows eval.batch_size."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.config import ConfigError, parse_config
from engine.training.cost import estimate
from store import Store
from tests.conftest import ROOT
from tests.test_datasets import write_cifar10

RNG = np.random.default_rng(1)


def write_npz_images(path: Path, n: int = 60, classes: int = 4) -> Path:
    """(N, 8, 8, 3) uint8 images whose brightness says the class, unequal class sizes (the estimate must
    count each class, not a mean)."""
    y = np.concatenate([np.full(n // classes + k, k) for k in range(classes)])
    x = (y[:, None, None, None] * 60 + RNG.integers(0, 20, (len(y), 8, 8, 3))).astype(np.uint8)
    np.savez(path, x=x, y=y)
    return path


def write_image_folder(folder: Path, classes: int = 4, per_class: int = 15) -> Path:
    from PIL import Image

    for k in range(classes):
        (folder / f"class{k}").mkdir(parents=True)
        for i in range(per_class + k):
            Image.fromarray(np.full((8, 10), 60 * k + i, np.uint8)).save(folder / f"class{k}" / f"{i}.png")
    return folder


def config_for(dataset: str, root: Path, **train) -> dict:
    return {"scenario": {"dataset": dataset, "root": str(root), "n_tasks": 2},
            "model": {"name": "cnn", "channels": [4]}, "strategy": {"name": "naive"},
            "train": {"batch_size": 8, "epochs_per_task": 2, **train}, "eval": {"every": 5}}


def engine_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def steps_of(db: Path) -> list[tuple[str, int, int]]:
    store = Store(db, serve=False)
    try:
        return store.sql("SELECT status, last_step, total_steps FROM runs ORDER BY id")
    finally:
        store.close()


@pytest.fixture(params=["npz", "image_folder"])
def generic(request, tmp_path) -> dict:
    """A config of a small CNN on a generic dataset written here."""
    root = write_npz_images(tmp_path / "images.npz") if request.param == "npz" else write_image_folder(tmp_path / "folder")
    return config_for(request.param, root)


def test_a_generic_dataset_runs_from_the_cli_with_a_cnn_and_takes_the_steps_estimated(tmp_path, generic):
    path, db = tmp_path / "run.yaml", tmp_path / "lab.duckdb"
    path.write_text(json.dumps(generic))
    out = engine_cli("run", path, "--db", db)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    [(status, last, total)] = steps_of(db)
    assert status == "finished" and last == total == estimate(parse_config(generic)).steps


def test_a_sweep_over_a_generic_dataset_runs_each_of_its_runs(tmp_path, generic):
    spec, db = tmp_path / "sweep.yaml", tmp_path / "lab.duckdb"
    spec.write_text(json.dumps({"name": "generic", "base": generic, "grid": {"train.lr": [0.01, 0.05]}, "seeds": [0]}))
    out = engine_cli("sweep", spec, "--db", db, "--parallel", 1, timeout=600)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    steps = estimate(parse_config(generic)).steps
    assert steps_of(db) == [("finished", steps, steps)] * 2


def test_a_bundle_of_a_generic_dataset_reruns(tmp_path, generic):
    bundle, db = tmp_path / "run.zip", tmp_path / "lab.duckdb"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.yaml", json.dumps(generic))
    bundle.write_bytes(out.getvalue())
    proc = engine_cli("run", bundle, "--db", db)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert steps_of(db)[0][0] == "finished"


def test_the_config_check_knows_a_generic_datasets_shape_and_classes_from_its_files(tmp_path):
    rows = tmp_path / "rows.npz"
    np.savez(rows, x=RNG.normal(size=(40, 5)), y=np.arange(40) % 4)
    with pytest.raises(ConfigError) as err:
        parse_config(config_for("npz", rows))  # a CNN on rows
    assert err.value.problems == ["model.name = 'cnn': needs image input (channels, height, width), and dataset npz gives "
                                  "flat rows of 5 values (use mlp, or an image dataset)"]
    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"dataset": "npz", "root": str(rows), "n_tasks": 5}})
    assert err.value.problems == ["scenario.n_tasks = 5: must be at most 4: npz has 4 classes to share out"]
    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"dataset": "npz", "root": str(rows), "setting": "domain", "domain": "rotated"}})
    assert err.value.problems == ["scenario.domain = 'rotated': needs an image dataset (npz has rows of 5 values)"]
    folder = write_image_folder(tmp_path / "folder")
    assert parse_config(config_for("image_folder", folder)).scenario.header().input_shape == (1, 8, 10)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ConfigError) as err:
        parse_config(config_for("npz", tmp_path / "broken.npz"))
    [line] = err.value.problems
    assert line.startswith(f"scenario.dataset = 'npz': {tmp_path}/broken.npz: cannot be read as a NumPy .npz file")


def test_the_estimate_counts_the_files_real_samples_steps_and_memory(tmp_path, store):
    """The probe's case, smaller: a small CNN on a few CIFAR-format images was estimated as if the files
    held the 60,000 of CIFAR-10 (40 times the steps, gigabytes of memory)."""
    from engine.runs.manager import run_in_process

    write_cifar10(tmp_path, per_batch=30, n_test=20)  # 150 training images, 20 test
    config = parse_config({
        "scenario": {"dataset": "cifar10", "root": str(tmp_path), "n_tasks": 5},
        "model": {"name": "cnn", "channels": [4]}, "strategy": {"name": "naive"},
        "train": {"batch_size": 8, "epochs_per_task": 2}, "eval": {"every": 10}})
    cost = estimate(config)
    run_id = run_in_process(store, config)
    assert store.sql("SELECT status, total_steps FROM runs WHERE id = ?", [run_id])[0] == ("finished", cost.steps)
    assert cost.steps == 5 * 2 * 4  # each task: 2 classes, 30 images, 4 batches of 8
    largest_task = 30 * (3 * 32 * 32 * 4 + 16)  # float32 features, a label and a task id
    assert cost.memory["data"] == 170 * 3 * 32 * 32 + largest_task  # the pool of uint8 images, and one task whole


def test_the_evaluation_memory_follows_eval_batch_size(tmp_path):
    write_cifar10(tmp_path, per_batch=20, n_test=1000)
    base = {"scenario": {"dataset": "cifar10", "root": str(tmp_path), "n_tasks": 5}, "model": {"name": "cnn"}}
    evaluation = {size: estimate(parse_config({**base, "eval": {"batch_size": size}})).memory["evaluation"]
                  for size in (100, 200, 400, 5000)}
    assert evaluation[400] - evaluation[200] == 2 * (evaluation[200] - evaluation[100]) > 0  # one pass of a batch
    assert evaluation[5000] == evaluation[400] + (1000 - 400) / 100 * (evaluation[200] - evaluation[100])  # all 1,000



@pytest.mark.parametrize("kind", ["npz", "image_folder"])
def test_the_launch_form_queues_a_cnn_on_a_generic_dataset(lab_launch_page, tmp_path, kind):
    """The Launch page (AppTest over a real lab): picking npz or image_folder, giving its file and a CNN
    shows the cost from the files and queues a run that trains (it showed a traceback at the check)."""
    lab, at = lab_launch_page
    root = write_npz_images(tmp_path / "images.npz") if kind == "npz" else write_image_folder(tmp_path / "folder")
    at.selectbox(key="scenario.dataset").set_value(kind).run()
    at.text_input(key="scenario.root").set_value(str(root)).run()
    at.selectbox(key="model.name").set_value("cnn").run()
    at.number_input(key="scenario.n_tasks").set_value(2)
    at.number_input(key="train.epochs_per_task").set_value(1)
    at.run()
    assert not at.exception, at.exception
    assert any(i.value.startswith("Cost:") for i in at.info), [i.value for i in at.info]
    at.button(key="launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_id, config = lab.store.sql("SELECT id, config FROM runs ORDER BY id DESC LIMIT 1")[0]
    config = json.loads(config)
    assert (config["scenario"]["dataset"], config["scenario"]["root"], config["model"]["name"]) == (kind, str(root), "cnn")
    assert lab.manager.wait(run_id, timeout=180) == "finished"
