import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.config import parse_config  # noqa: E402
from store import Store  # noqa: E402


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "lab.duckdb")
    yield s
    s.close()


def small_config(strategy_name: str = "naive", n_tasks: int = 2, **sections):
    """A small run: 2 tasks of Split-Digits (5 classes each), a narrow MLP, 1 epoch a task, evaluation every 5 steps."""
    cfg = {
        "name": f"test-{strategy_name}",
        "scenario": {"dataset": "digits", "setting": "class", "n_tasks": n_tasks},
        "model": {"name": "mlp", "hidden": [64]},
        "strategy": {"name": strategy_name},
        "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs_per_task": 1},
        "eval": {"every": 5},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return parse_config(cfg)


@pytest.fixture
def lab_launch_page(tmp_path, monkeypatch):
    """A lab of its own (real DuckDB file, run manager, workers) and its Launch page in AppTest."""
    from streamlit.testing.v1 import AppTest

    db = tmp_path / "lab.duckdb"
    monkeypatch.setenv("CL_LAB_DB", str(db))
    from pages.ui.lab import close_labs, lab_at

    lab = lab_at(str(db.resolve()), False)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.switch_page("pages/launch.py").run()
        yield lab, at
    finally:
        close_labs()


def page_lab(tmp_path_factory, name: str):
    """For a module-scoped fixture: a lab of its own (real DuckDB file, run manager, workers), the
    same object the pages get through CL_LAB_DB; released (workers stopped, file closed) after."""
    import os

    from pages.ui.lab import close_labs, lab_at

    path = tmp_path_factory.mktemp(name) / "lab.duckdb"
    os.environ["CL_LAB_DB"] = str(path)
    try:
        yield lab_at(str(path.resolve()), False)
    finally:
        close_labs()
        del os.environ["CL_LAB_DB"]


def launched_run(at) -> int:
    """The run the Launch page just queued (the Run page's query parameter)."""
    run = at.query_params["run"]
    return int(run[0] if isinstance(run, list) else run)
