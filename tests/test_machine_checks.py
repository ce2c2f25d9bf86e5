"""A run config's shape (``RunConfig``) apart from what it needs of this machine (``machine_problems``):
a stored config reads back typed on a machine without its dataset's files or its GPU, while admission
(``parse_config``, the run manager) still refuses to run it here, with the same one line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from engine.config import ConfigError, RunConfig, parse_config, stored_config
from engine.machine_checks import machine_problems
from engine.runs.manager import RunManager, run_in_process
from store import Store
from tests.conftest import ROOT, small_config


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def stored_text(store: Store, run_id: int) -> str:
    return store.sql("SELECT config FROM runs WHERE id = ?", [run_id])[0][0]


def test_a_run_whose_dataset_folder_is_gone_reads_back_typed_and_its_report_renders(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.savez(folder / "rows.npz", x=rng.normal(size=(80, 6)).astype(np.float32), y=np.arange(80) % 4)
    config = parse_config({"name": "rows run", "scenario": {"dataset": "npz", "root": str(folder / "rows.npz"),
                                                            "n_tasks": 2},
                           "model": {"name": "mlp", "hidden": [8]}, "train": {"epochs_per_task": 1},
                           "eval": {"every": 5}})
    db = tmp_path / "lab.duckdb"
    with Store(db) as store:
        run_id = run_in_process(store, config)
        (folder / "rows.npz").unlink()
        folder.rmdir()
        text = stored_text(store, run_id)
        assert RunConfig.model_validate_json(text) == config  # the shape alone: the files are not looked for
        assert stored_config(text) == stored_config(json.loads(text)) == config
        missing = f"scenario.dataset = 'npz': {folder / 'rows.npz'} not found; give scenario.root = a .npz file"
        assert machine_problems(config)[0].startswith(missing)
        with pytest.raises(ConfigError) as err:  # admitted to run here: refused, as before
            parse_config(json.loads(text))
        assert len(err.value.problems) == 1 and err.value.problems[0].startswith(missing)
        manager = RunManager(store, max_parallel=1, warm_workers=0, paused=True)
        try:
            with pytest.raises(ConfigError) as err:  # a typed config read back is checked again at submit
                manager.submit(stored_config(text))
            assert len(err.value.problems) == 1 and err.value.problems[0].startswith(missing)
        finally:
            manager.shutdown()
        assert store.sql("SELECT count(*) FROM runs")[0][0] == 1  # nothing written
    out = tmp_path / "run.html"
    proc = cli("report", run_id, "-o", out, "--db", db)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "rows run" in out.read_text()


def test_a_run_stored_on_a_gpu_machine_reads_back_here_and_its_tradeoffs_compute(tmp_path):
    """The database of a machine with GPUs, opened on one without that GPU: its run's config reads back
    (the trade-off curve rebuilds its scenario from it) and relaunching it here is refused at submit."""
    db = tmp_path / "lab.duckdb"
    with Store(db) as store:
        run_id = run_in_process(store, small_config("naive", train={"weights": "every"}))
        gpu_config = {**json.loads(stored_text(store, run_id))}
        gpu_config["train"] = {**gpu_config["train"], "device": "cuda:999"}  # no machine has GPU 999
        store.write("UPDATE runs SET config = ? WHERE id = ?", [json.dumps(gpu_config), run_id])
        config = stored_config(stored_text(store, run_id))
        assert config.train.device == "cuda:999"
        [line] = machine_problems(config)
        assert line.startswith("train.device = 'cuda:999': ")
        manager = RunManager(store, max_parallel=1, warm_workers=0, paused=True)
        try:
            with pytest.raises(ConfigError) as err:
                manager.submit(config)
            assert err.value.problems == [line]
        finally:
            manager.shutdown()
    proc = cli("tradeoff", run_id, "--db", db, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {row["to_task"] for row in json.loads(proc.stdout)} == {2}


def test_a_stored_config_that_is_not_a_run_config_is_one_line_per_problem():
    with pytest.raises(ConfigError) as err:
        stored_config({"note": "my own trainer"})  # a user's own run (README)
    assert err.value.problems == ["note: is not a known field"]
    with pytest.raises(ConfigError) as err:
        stored_config("[1, 2]")
    assert err.value.problems == ["config: must be a mapping of sections (name, seed, scenario, model, strategy, "
                                  "train, eval)"]
