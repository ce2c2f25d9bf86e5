"""Settings the published tables need: the optimizer's state kept across tasks (van de Ven's code) and
raw [0, 1] pixels (Mammoth's and van de Ven's MNIST code). Real training into an in-memory sink."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.training import checkpoint as checkpoints
from engine.config import ScenarioConfig
from engine.datasets.mnist import DEBIAN_FASHION_MNIST
from engine.module import carry_optimizer_state, optimizer_state_by_name
from engine.scenarios import build_scenario
from engine.training.train import train_run
from tests.conftest import small_config
from tests.test_resume import ListSink, assert_same_rows, stop_during_task


def losses(config):
    sink = ListSink()
    assert train_run(config, sink).status == "finished"
    bounds = {task: step for kind, task, step in sink.bounds if kind == "end"}
    return sink, {r[0]: r[3] for r in sink.rows if r[2] == "train_loss"}, bounds


def test_kept_adam_state_changes_the_later_tasks_only():
    base = dict(n_tasks=3, train={"optimizer": "adam", "lr": 0.01})
    _, reset, ends = losses(small_config("naive", **base))
    _, kept, _ = losses(small_config("naive", **{**base, "train": {**base["train"], "optimizer_state": "keep"}}))
    first = [s for s in reset if s <= ends[1]]
    assert [reset[s] for s in first] == [kept[s] for s in first]  # task 1: the same fresh optimizer
    later = [s for s in reset if s > ends[1]]
    assert max(abs(reset[s] - kept[s]) for s in later) > 1e-4  # Adam's moments and step carried over


def test_plain_sgd_has_no_state_to_keep():
    base = dict(n_tasks=2, train={"optimizer": "sgd", "momentum": 0.0})
    _, reset, _ = losses(small_config("naive", **base))
    _, kept, _ = losses(small_config("naive", **{**base, "train": {**base["train"], "optimizer_state": "keep"}}))
    assert reset == kept


def test_carried_state_is_the_last_tasks_by_parameter_name():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    old = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.randn(5, 4)).sum().backward()
    old.step()
    kept = optimizer_state_by_name(old, net)
    assert set(kept) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    new = torch.optim.Adam(net[1].parameters(), lr=0.1)  # a strategy may optimise fewer parameters
    carry_optimizer_state(new, net, kept)
    assert set(new.state) == {net[1].weight, net[1].bias}
    assert torch.equal(new.state[net[1].weight]["exp_avg"], old.state[net[1].weight]["exp_avg"])
    assert float(new.state[net[1].bias]["step"]) == 1.0


def test_a_run_keeping_adam_state_resumes_to_the_same_metrics(tmp_path):
    config = small_config("naive", n_tasks=3, train={"optimizer": "adam", "lr": 0.01, "optimizer_state": "keep"})
    whole = ListSink()
    assert train_run(config, whole).status == "finished"
    path = tmp_path / "resume.pt"
    assert train_run(config, ListSink(), should_stop=stop_during_task(path, done=2), checkpoint=path).status == "cancelled"
    step = checkpoints.read_header(path)["step"]
    resumed = ListSink()
    assert train_run(config, resumed, resume=path, checkpoint=path).status == "finished"
    assert_same_rows(resumed.rows, [r for r in whole.rows if r[0] > step])


@pytest.mark.skipif(not Path(DEBIAN_FASHION_MNIST).is_dir() and not os.environ.get("CI"),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_raw_pixels_skip_the_datasets_normalisation():
    normalised = build_scenario(ScenarioConfig(dataset="fashion_mnist", n_tasks=2))
    raw = build_scenario(ScenarioConfig(dataset="fashion_mnist", n_tasks=2, normalize=False))
    x_raw, x_norm = raw.tasks[0].test_x, normalised.tasks[0].test_x
    assert float(x_raw.min()) == 0.0 and float(x_raw.max()) == 1.0
    assert np.isclose(float(x_norm.mean()), float(((x_raw - 0.2860) / 0.3530).mean()), atol=1e-5)
    assert float(x_norm.min()) < 0


def test_the_launch_form_offers_both_settings_and_queues_them(lab_launch_page):
    """Through the Launch page (AppTest over a real lab): the settings are in "More ... settings" and
    reach the queued run's config."""
    import json

    lab, at = lab_launch_page
    at.selectbox(key="train.optimizer_state").set_value("keep")
    at.checkbox(key="scenario.normalize").uncheck()
    at.button(key="launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    config = json.loads(lab.store.sql("SELECT config FROM runs ORDER BY id DESC LIMIT 1")[0][0])
    assert config["train"]["optimizer_state"] == "keep" and config["scenario"]["normalize"] is False


def test_iterations_per_task_trains_each_task_exactly_that_many_steps(store):
    """train.iterations_per_task (van de Ven et al.'s 2,000 a task): 30 steps is 2.5 passes over a task of
    Split-Digits, 5 is less than one; the boundaries, the run's total and the cost estimate all count them."""
    from engine.config import ConfigError, parse_config
    from engine.training.cost import estimate
    from engine.runs.manager import run_in_process

    config = small_config("naive", n_tasks=3, train={"iterations_per_task": 30})
    run_id = run_in_process(store, config)
    spans = store.sql("SELECT task, start_step, end_step FROM task_boundaries WHERE run_id = ? ORDER BY task", [run_id])
    assert spans == [(1, 0, 30), (2, 30, 60), (3, 60, 90)]
    assert store.sql("SELECT total_steps, last_step FROM runs WHERE id = ?", [run_id]) == [(90, 90)]
    per_task = store.sql("SELECT task, count(*) FROM metrics WHERE run_id = ? AND metric = 'train_loss' "
                         "GROUP BY task ORDER BY task", [run_id])
    assert per_task == [(1, 30), (2, 30), (3, 30)]
    assert estimate(config).steps == 90 != estimate(small_config("naive", n_tasks=3)).steps
    _, _, ends = losses(small_config("naive", n_tasks=2, train={"iterations_per_task": 5}))
    assert ends == {1: 5, 2: 10}
    with pytest.raises(ConfigError) as err:
        parse_config({"train": {"iterations_per_task": 0}})
    assert err.value.problems == ["train.iterations_per_task = 0: must be greater than or equal to 1"]


def test_the_launch_form_queues_iterations_per_task_and_zero_means_epochs(lab_launch_page):
    import json

    lab, at = lab_launch_page
    at.number_input(key="train.iterations_per_task").set_value(7)
    at.button(key="launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    config = json.loads(lab.store.sql("SELECT config FROM runs ORDER BY id DESC LIMIT 1")[0][0])
    assert config["train"]["iterations_per_task"] == 7
    at.switch_page("pages/launch.py").run()  # launching opened the Run page
    at.number_input(key="train.iterations_per_task").set_value(0)
    at.button(key="launch").click().run()
    config = json.loads(lab.store.sql("SELECT config FROM runs ORDER BY id DESC LIMIT 1")[0][0])
    assert config["train"]["iterations_per_task"] is None
