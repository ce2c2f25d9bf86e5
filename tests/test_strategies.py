"""Every strategy trains end to end on 2-task Split-Digits into a real DuckDB file."""

import math

import numpy as np
import pytest
import torch

from engine.runs.manager import run_in_process
from engine.module import ContinualModule
from engine.config import TrainConfig
from engine.strategies import STRATEGIES
from engine.strategies.ewc import EWC
from engine.strategies.lwf import LwF
from engine.strategies.replay import ReservoirBuffer
from store.metrics.summary import load_run
from tests.conftest import small_config

STRATEGY_CASES = [("naive", {}), ("joint", {}), ("joint", {"mode": "cumulative"}), ("replay", {"buffer_size": 50}),
                  ("ewc", {"ewc_lambda": 100.0}), ("ewc", {"mode": "online", "decay": 0.5, "ewc_lambda": 100.0}), ("lwf", {"alpha": 1.0})]


def metric_rows(store, run_id):
    return store.sql("SELECT step, task, metric, value FROM metrics WHERE run_id = ? ORDER BY ALL", [run_id])


@pytest.mark.parametrize("name, hparams", STRATEGY_CASES, ids=[f"{n}-{h.get('mode', '')}" for n, h in STRATEGY_CASES])
def test_strategy_trains_end_to_end_into_the_store(store, name, hparams):
    config = small_config(name, strategy={"name": name, **hparams})
    run_id = run_in_process(store, config)
    run = store.sql("SELECT status, total_steps, last_step, torch_version, lab_version FROM runs WHERE id = ?", [run_id])[0]
    assert run[0] == "finished" and run[3] and run[4]
    total = run[1]
    assert run[2] == total > 0

    # the training loss at every step, once
    steps = [r[0] for r in store.sql("SELECT step FROM metrics WHERE run_id = ? AND metric = 'train_loss' ORDER BY step", [run_id])]
    assert steps == list(range(1, total + 1))
    # continual evaluation every 5 steps and at each task's last step, of both tasks, seen or not
    bounds = store.sql("SELECT task, start_step, end_step FROM task_boundaries WHERE run_id = ? ORDER BY task", [run_id])
    evals = store.sql("SELECT step, count(*) FROM metrics WHERE run_id = ? AND metric = 'acc' GROUP BY step ORDER BY step", [run_id])
    expected = sorted(set(range(5, total + 1, 5)) | {end for _, _, end in bounds})
    assert [s for s, _ in evals] == expected and all(n == 2 for _, n in evals)

    R = load_run(store, run_id).R
    assert R.shape == (3, 2)
    if name == "joint" and hparams.get("mode", "all") == "all":
        assert bounds == [(2, 0, total)]  # one experience over both tasks
        assert np.isnan(R[1]).all() and not np.isnan(R[[0, 2]]).any()
    else:
        assert [b[0] for b in bounds] == [1, 2] and bounds[0][1] == 0 and bounds[0][2] == bounds[1][1] and bounds[1][2] == total
        assert not np.isnan(R).any()
    assert R[-1].mean() > 0.45  # learned something: both tasks' classes are in the last row's reach

    # the same config and seed give the same metrics
    again = run_in_process(store, config)
    assert metric_rows(store, again) == metric_rows(store, run_id)


@pytest.mark.parametrize("setting", ["task", "domain"])
def test_other_settings_train(store, setting):
    run_id = run_in_process(store, small_config("replay", scenario={"setting": setting}))
    R = load_run(store, run_id).R
    assert R.shape == (3, 2) and not np.isnan(R).any()
    if setting == "task":
        assert R[2][0] > 0.85  # the task id given, the first task is not forgotten


def test_eval_subset_uses_a_fixed_subset_but_boundaries_use_everything(store):
    run_id = run_in_process(store, small_config("naive", eval={"every": 1, "subset": 7}))
    # accuracies on 7 samples are multiples of 1/7; the full boundary evaluations are not
    accs = [v for (v,) in store.sql("SELECT value FROM metrics WHERE run_id = ? AND metric = 'acc'", [run_id])]
    assert all(abs(v * 7 - round(v * 7)) < 1e-9 for v in accs)
    full = [v for (v,) in store.sql("SELECT value FROM metrics WHERE run_id = ? AND metric = 'boundary_acc'", [run_id])]
    assert any(abs(v * 7 - round(v * 7)) > 1e-6 for v in full)


def test_every_strategy_declares_hparams_the_form_can_build_from():
    for name, cls in STRATEGIES.items():
        assert cls.name == name and cls.title and cls.settings
        for key, spec in cls.hparams.items():
            assert spec.help and isinstance(spec.default, spec.type), (name, key)
            if spec.choices:
                assert spec.default in spec.choices
            if spec.low is not None:
                assert spec.low <= spec.default <= (spec.high if spec.high is not None else math.inf)


def test_reservoir_buffer_keeps_every_sample_with_equal_chance():
    counts = torch.zeros(100)
    for trial in range(300):
        buffer = ReservoirBuffer(10, torch.Generator().manual_seed(trial))
        for start in range(0, 100, 7):  # batches of 7 of samples 0..99
            ids = torch.arange(start, min(start + 7, 100))
            buffer.add(ids.float().unsqueeze(1), ids, ids)
        assert len(buffer) == 10 and len(set(buffer.y.tolist())) == 10
        counts[buffer.y] += 1
    # each sample is kept with probability 10/100: 30 of 300 trials, give or take sampling noise
    assert counts.sum() == 3000
    first, last = counts[:50].mean(), counts[50:].mean()
    assert abs(first - 30) < 4 and abs(last - 30) < 4


def _module(net, strategy):
    return ContinualModule(net, strategy, TrainConfig(), None, 3)


def test_ewc_fisher_is_the_mean_squared_per_sample_gradient():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    ewc = EWC(fisher_batch=3)
    module = _module(net, ewc)
    x, y, t = torch.randn(8, 4), torch.randint(0, 3, (8,)), torch.zeros(8, dtype=torch.long)
    fisher = ewc.diagonal_fisher(module, x, y, t)
    expected = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    for i in range(8):  # one backward a sample, the slow way
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        for n, p in net.named_parameters():
            expected[n] += p.grad ** 2 / 8
    for n in expected:
        assert torch.allclose(fisher[n], expected[n], atol=1e-6)


def test_ewc_penalty_is_zero_at_the_optimum_and_online_keeps_one_decayed_fisher():
    from engine.strategies.base import Experience
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    t = torch.zeros(6, dtype=torch.long)
    exp = Experience(task=1, x=x, y=y, t=t)
    ewc = EWC(ewc_lambda=10.0, mode="online", decay=0.5)
    module = _module(net, ewc)
    ewc.after_task(module, exp)
    f1 = ewc.penalties[0][0]["weight"].clone()
    assert torch.isclose(ewc.training_loss(module, x, y, t), module.loss(x, y, t))  # at the optimum
    with torch.no_grad():
        net.weight += 1.0
    assert ewc.training_loss(module, x, y, t) > module.loss(x, y, t)
    ewc.after_task(module, exp)
    assert len(ewc.penalties) == 1
    f_now = ewc.diagonal_fisher(module, x, y, t)["weight"]
    assert torch.allclose(ewc.penalties[0][0]["weight"], 0.5 * f1 + f_now)
    separate = EWC(mode="separate")
    separate.after_task(module, exp)
    separate.after_task(module, exp)
    assert len(separate.penalties) == 2


def test_lwf_distillation_vanishes_when_the_model_equals_its_teacher():
    from engine.scenarios import build_scenario
    from engine.config import ScenarioConfig
    scenario = build_scenario(ScenarioConfig(n_tasks=2))
    torch.manual_seed(0)
    net = torch.nn.Linear(64, 10)
    lwf = LwF(alpha=5.0)
    module = ContinualModule(net, lwf, TrainConfig(), None, 10)
    lwf.setup(module, scenario)
    task = scenario.tasks[0]
    from engine.strategies.base import Experience
    lwf.after_task(module, Experience(1, task.train_x, task.train_y, torch.zeros_like(task.train_y)))
    assert lwf.old_classes.tolist() == [0, 1, 2, 3, 4]  # 2 tasks of 5 classes
    x, y = scenario.tasks[1].train_x[:16], scenario.tasks[1].train_y[:16]
    t = torch.ones_like(y)
    assert torch.isclose(lwf.training_loss(module, x, y, t), module.loss(x, y, t), atol=1e-6)
    with torch.no_grad():
        net.weight[:2] += 0.5
    assert lwf.training_loss(module, x, y, t) > module.loss(x, y, t) + 1e-4
