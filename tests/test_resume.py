"""Resume a stopped run from its last completed task: real training, real workers, a real DuckDB file."""

import copy
import os
import threading
import time

import pytest
import torch
from streamlit.testing.v1 import AppTest

from engine.training import checkpoint as checkpoints
from engine.runs import artifacts
from engine.training.checkpoint import CheckpointError
from engine.evaluation import BufferedSink
from engine.strategies import STRATEGIES
from engine.strategies.naive import Naive
from engine.training.train import train_run
from tests.conftest import ROOT, small_config


class ListSink(BufferedSink):
    """Keeps every metric row and task boundary in memory."""

    def __init__(self):
        super().__init__(run_id=1)
        self.rows, self.bounds = [], []

    def emit(self, batch):
        self.rows += zip(batch["step"].tolist(), batch["task"].tolist(), batch["metric"], batch["value"].tolist())

    def task_start(self, task, step):
        super().task_start(task, step)
        self.bounds.append(("start", task, step))

    def task_end(self, task, step):
        super().task_end(task, step)
        self.bounds.append(("end", task, step))


def stop_during_task(path, done: int, after_steps: int = 5):
    """should_stop: True a few steps after the checkpoint at ``path`` records ``done`` experiences."""
    seen = [0]

    def should_stop() -> bool:
        if path.exists() and checkpoints.read_header(path)["experiences_done"] == done:
            seen[0] += 1
        return seen[0] > after_steps
    return should_stop


def assert_same_rows(resumed, uninterrupted):
    assert [r[:3] for r in resumed] == [r[:3] for r in uninterrupted]
    assert max(abs(a[3] - b[3]) for a, b in zip(resumed, uninterrupted)) <= 1e-9


@pytest.mark.parametrize("name, hparams", [("replay", {"buffer_size": 50}), ("lwf", {})])
def test_a_run_stopped_in_task_3_and_resumed_matches_an_uninterrupted_run(tmp_path, name, hparams):
    # replay: a buffer and a generator shared with it; lwf: a teacher network made at each task's end
    config = small_config(name, n_tasks=3, strategy={"name": name, **hparams})
    whole = ListSink()
    assert train_run(config, whole).status == "finished"
    path = tmp_path / "resume.pt"
    stopped = ListSink()
    result = train_run(config, stopped, should_stop=stop_during_task(path, done=2), checkpoint=path)
    header = checkpoints.read_header(path)
    assert result.status == "cancelled" and header["task"] == 2 and result.step > header["step"]
    resumed = ListSink()
    assert train_run(config, resumed, resume=path, checkpoint=path).status == "finished"
    step = header["step"]
    assert [r for r in stopped.rows if r[0] <= step] == [r for r in whole.rows if r[0] <= step]
    assert_same_rows(resumed.rows, [r for r in whole.rows if r[0] > step])
    assert resumed.bounds == [b for b in whole.bounds if b[1] == 3]  # numbering goes on: task 3 at its step
    assert resumed.rows[0][0] == step + 1


class WithALambda(Naive):
    name = "with_a_lambda"

    def setup(self, module, scenario):
        self.weigh = lambda loss: loss  # cannot be pickled
        self.generator = torch.Generator().manual_seed(self.seed)


def test_a_strategy_state_that_cannot_be_saved_is_named_and_resuming_refuses(tmp_path, monkeypatch):
    monkeypatch.setitem(STRATEGIES, WithALambda.name, WithALambda)
    config = small_config("naive", n_tasks=2).model_copy(update={"strategy": {"name": WithALambda.name}})
    path = tmp_path / "resume.pt"
    assert train_run(config, ListSink(), checkpoint=path).status == "finished"
    header = checkpoints.read_header(path)
    assert len(header["unsupported"]) == 1 and header["unsupported"][0].startswith("WithALambda.weigh (function)")
    with pytest.raises(CheckpointError, match="could not save this strategy's state.*WithALambda.weigh"):
        train_run(config, ListSink(), resume=path)
    with pytest.raises(CheckpointError, match="another config"):
        train_run(small_config("naive", n_tasks=2), ListSink(), resume=path)


def test_strategy_state_keeps_shared_objects_shared_and_refers_to_the_run_it_resumes_in():
    from engine.models import build_model
    from engine.module import ContinualModule
    from engine.scenarios import build_scenario

    def build():
        config = small_config("naive")
        scenario = build_scenario(config.scenario)
        strategy = Naive()
        net = build_model(config.model, scenario.input_dim, scenario.n_classes)
        return ContinualModule(net, strategy, config.train, scenario.class_mask, scenario.n_classes), strategy, scenario

    module, strategy, scenario = build()
    generator = torch.Generator().manual_seed(3)
    strategy.module, strategy.first_task = module, scenario.tasks[0].train  # references to the run
    strategy.pool_x = scenario.tasks[0].train.pool.x  # the data itself
    strategy.generators = {"a": generator, "b": generator}  # one object, twice
    strategy.teacher = copy.deepcopy(module.net)  # a copy: saved as one
    strategy.importance = {n: p.detach() * 2 for n, p in module.net.named_parameters()}
    blob, missing = checkpoints.strategy_blob(strategy, checkpoints.live_objects(module, scenario))
    assert missing == [] and len(blob) < scenario.tasks[0].train.pool.x.numel() * 4  # the data is not in it
    module2, strategy2, scenario2 = build()
    state = checkpoints.strategy_state(blob, checkpoints.live_objects(module2, scenario2))
    assert state["module"] is module2 and state["first_task"] is scenario2.tasks[0].train
    assert state["pool_x"] is scenario2.tasks[0].train.pool.x
    assert state["generators"]["a"] is state["generators"]["b"]
    assert torch.rand(1, generator=state["generators"]["a"]) == torch.rand(1, generator=generator)
    assert state["teacher"] is not module2.net
    assert all(torch.equal(a, b) for a, b in zip(state["teacher"].parameters(), module.net.parameters()))
    assert all(torch.equal(state["importance"][n], v) for n, v in strategy.importance.items())


@pytest.fixture(scope="module")
def the_lab(tmp_path_factory):
    """The lab the pages get (pages/ui/lab.py), with its store, run manager and warm workers."""
    path = tmp_path_factory.mktemp("resume") / "lab.duckdb"
    os.environ["CL_LAB_DB"] = str(path)
    from pages.ui.lab import close_labs, lab_at

    the_lab = lab_at(str(path.resolve()), False)
    the_lab.manager.warm_workers = 2
    yield the_lab
    close_labs()
    del os.environ["CL_LAB_DB"]


@pytest.fixture
def lab(the_lab):
    return the_lab.store, the_lab.manager


def rows(store, run_id):
    return store.sql("SELECT step, task, metric, value FROM metrics WHERE run_id = ? ORDER BY step, metric, task",
                     [run_id])


def cancel_when(manager, store, run_id, done: int) -> None:
    """Cancel the run as soon as its checkpoint records ``done`` experiences (from a thread)."""
    path = artifacts.checkpoint_path(store.artifacts_dir(run_id))

    def watch():
        while not (path.exists() and checkpoints.read_header(path)["experiences_done"] == done):
            time.sleep(0.005)
        manager.cancel(run_id)
    threading.Thread(target=watch, daemon=True).start()


def test_a_cancelled_worker_run_resumes_under_its_id_and_matches_an_uninterrupted_one(lab):
    store, manager = lab
    config = small_config("replay", n_tasks=3, train={"epochs_per_task": 10})
    whole = manager.submit(config)
    stopped = manager.submit(config)
    cancel_when(manager, store, stopped, done=1)
    assert manager.wait(whole, timeout=180) == "finished"
    assert manager.wait(stopped, timeout=180) == "cancelled", "the run ended before the cancel reached it"
    header = manager.resume_run(stopped)
    assert header["task"] == 1
    assert store.sql("SELECT status, last_step FROM runs WHERE id = ?", [stopped])[0] == ("queued", header["step"])
    assert manager.wait(stopped, timeout=180) == "finished"
    resumed, uninterrupted = rows(store, stopped), rows(store, whole)
    assert len(resumed) == len(uninterrupted)
    assert_same_rows(resumed, uninterrupted)
    assert store.sql("SELECT task, start_step, end_step FROM task_boundaries WHERE run_id = ? ORDER BY task", [stopped]) \
        == store.sql("SELECT task, start_step, end_step FROM task_boundaries WHERE run_id = ? ORDER BY task", [whole])
    assert not artifacts.checkpoint_path(store.artifacts_dir(stopped)).exists()  # deleted when it finished
    with pytest.raises(CheckpointError, match="is finished: only a failed or cancelled run"):
        manager.resume_run(stopped)


def test_a_run_cancelled_before_its_first_task_ended_has_nothing_to_resume(lab):
    store, manager = lab
    run_id = manager.submit(small_config("naive", train={"epochs_per_task": 2000}))
    while store.sql("SELECT last_step FROM runs WHERE id = ?", [run_id])[0][0] < 5:
        time.sleep(0.02)
    manager.cancel(run_id)
    assert manager.wait(run_id, timeout=60) == "cancelled"
    with pytest.raises(CheckpointError, match="has no checkpoint: it stopped before its first task ended"):
        manager.resume_run(run_id)
    with pytest.raises(CheckpointError, match="there is no run 999"):
        manager.resume_run(999)


def test_the_run_page_offers_resume_from_the_next_task_and_queues_it(the_lab):
    store, manager = the_lab.store, the_lab.manager
    run_id = manager.submit(small_config("naive", n_tasks=3, train={"epochs_per_task": 10}))
    cancel_when(manager, store, run_id, done=2)
    assert manager.wait(run_id, timeout=180) == "cancelled", "the run ended before the cancel reached it"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.switch_page("pages/run.py").run()
    button = at.button(key="resume")
    assert button.label == "Resume from task 3"
    button.click().run()
    assert not at.exception
    assert manager.wait(run_id, timeout=180) == "finished"
    assert store.sql("SELECT count(DISTINCT step) FROM metrics WHERE run_id = ? AND metric = 'train_loss'",
                     [run_id])[0][0] == store.sql("SELECT total_steps FROM runs WHERE id = ?", [run_id])[0][0]
    at.run()
    assert not [b for b in at.button if b.key == "resume"]  # finished: nothing to resume
