"""Exemplar-free (FeTrIL, ACIL, SLCA) and architecture (CLR, PackNet, HAT) strategies: each trains end
to end on 2-task Split-Digits into a real DuckDB file, and a test of its mechanism."""

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ConfigError, parse_config
from engine.evaluation import BufferedSink, ContinualEvaluation, StoreSink
from engine.runs.manager import run_in_process
from engine.models import MODELS, Backbone, build_model
from engine.module import ContinualModule
from engine.scenarios import build_scenario
from engine.strategies import STRATEGIES
from engine.training.train import _fabric_loop
from store.metrics.summary import load_run
from tests.conftest import small_config

CASES = [("fetril", "class", {}), ("acil", "class", {"buffer_size": 256}),
         ("slca", "class", {"ca_samples": 64, "ca_epochs": 2}),
         ("packnet", "task", {}), ("hat", "task", {})]


class SmallCNN(Backbone):
    """A CNN over the 8x8 digits, until the models package has its own: two convolutions (one with
    batch norm), pooled to 4x4, and a linear head."""

    name = "test_cnn"

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Linear(16 * 4 * 4, n_classes)


class Rows(BufferedSink):
    def __init__(self):
        super().__init__(0)
        self.batches = []

    def emit(self, batch):
        self.batches.append(batch)


def train(config, net=None, sink=None):
    """The engine's training loop on ``config``, with ``net`` if given (a model the registry lacks);
    returns the module, its strategy, the scenario and the network's weights at each task's end."""
    L.seed_everything(config.seed, verbose=False)
    scenario = build_scenario(config.scenario)
    strategy = STRATEGIES[config.strategy["name"]](seed=config.seed, **config.strategy_hparams)
    net = net or build_model(config.model, scenario.input_dim, scenario.n_classes)
    module = ContinualModule(net, strategy, config.train, scenario.class_mask, scenario.n_classes)
    evaluation = ContinualEvaluation([(t.test_x, t.test_y) for t in scenario.tasks], sink or Rows(),
                                     every=config.eval.every, class_mask=scenario.class_mask)
    snapshots = {}
    evaluation.on_task_end = lambda task: snapshots.__setitem__(
        task, {k: v.detach().clone() for k, v in net.state_dict().items()})
    experiences = strategy.experiences(scenario)
    strategy.setup(module, scenario)
    fabric = L.Fabric(accelerator="cpu", devices=1, precision="32-true")
    _fabric_loop(config, fabric, module, strategy, evaluation, experiences, torch.Generator().manual_seed(config.seed))
    evaluation.sink.flush()
    return module, strategy, scenario, snapshots


def metric_rows(store, run_id):
    return store.sql("SELECT step, task, metric, value FROM metrics WHERE run_id = ? ORDER BY ALL", [run_id])


@pytest.mark.parametrize("name, setting, hparams", CASES, ids=[c[0] for c in CASES])
def test_trains_end_to_end_into_the_store(store, name, setting, hparams):
    config = small_config(name, scenario={"setting": setting}, strategy={"name": name, **hparams})
    run_id = run_in_process(store, config)
    status, total, last = store.sql("SELECT status, total_steps, last_step FROM runs WHERE id = ?", [run_id])[0]
    assert status == "finished" and last == total > 0
    R = load_run(store, run_id).R
    assert R.shape == (3, 2) and not np.isnan(R).any()
    assert R[-1].mean() > 0.45  # both tasks' classes learned
    again = run_in_process(store, config)
    assert metric_rows(store, again) == metric_rows(store, run_id)


def test_clr_trains_a_cnn_into_the_store_and_task_one_never_changes(store):
    # the config check refuses clr with the registry's MLP, so the config is checked for naive
    config = small_config("naive", scenario={"setting": "task"}, train={"momentum": 0.9}).model_copy(update={"strategy": {"name": "clr", "kernel_size": 3}})
    run_id = store.create_run(config.model_dump(mode="json"), name="clr-test-cnn")
    torch.manual_seed(0)
    module, clr, scenario, snapshots = train(config, SmallCNN(), StoreSink(store, run_id))
    R = load_run(store, run_id).R
    assert R.shape == (3, 2) and not np.isnan(R).any() and R[-1].mean() > 0.6
    assert R[2][0] == R[1][0]  # the frozen CNN serves task 1 unchanged: no forgetting at all
    for key, value in snapshots[1].items():  # weights and batch-norm statistics
        assert torch.equal(value, snapshots[2][key]), key
    first, second = clr.adapters[1]
    assert first.groups == first.in_channels == 8 and second.weight.shape == (16, 1, 3, 3)  # channel-wise
    assert not torch.allclose(first.weight[:, 0, 1, 1], torch.ones(8))  # trained away from the identity

    # a fresh reprogramming is the identity: the CNN's own features
    x = scenario.tasks[1].test_x[:20]
    module.eval()
    clr.before_task(module, type("E", (), {"task": 3})())
    clr.heads[2] = module.head
    assert torch.allclose(clr.forward_task(module, x, 2), module(x), atol=1e-6)


def test_clr_is_refused_for_the_mlp_and_without_the_task_id():
    for setting, word in [("task", "mlp"), ("class", "class-incremental")]:
        with pytest.raises(ConfigError) as err:
            parse_config({"scenario": {"setting": setting}, "model": {"name": "mlp"}, "strategy": {"name": "clr"}})
        problems = err.value.problems
        assert len(problems) == 1 and "clr" in problems[0] and word in problems[0], problems


def test_clr_trains_end_to_end_with_the_cnn_model(store, tmp_path):
    from engine.config import parse_config
    from tests.test_datasets import write_cifar10

    write_cifar10(tmp_path, per_batch=20, n_test=20)
    config = parse_config({"scenario": {"dataset": "cifar10", "root": str(tmp_path), "setting": "task", "n_tasks": 2},
                           "model": {"name": "cnn", "channels": [8]}, "strategy": {"name": "clr"},
                           "train": {"batch_size": 16, "epochs_per_task": 1}, "eval": {"every": 3}})
    run_id = run_in_process(store, config)
    R = load_run(store, run_id).R
    assert not np.isnan(R).any() and R[2][0] == R[1][0]


def test_fetril_freezes_the_encoder_after_task_one_and_translates_to_the_old_means():
    config = small_config("fetril")
    module, fetril, scenario, snapshots = train(config)
    features = [k for k in snapshots[1] if k.startswith("features.")]
    assert features and all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in features)
    assert not torch.equal(snapshots[1]["head.weight"], snapshots[2]["head.weight"])
    # the stored means are those of the frozen encoder on each class's data
    with torch.no_grad():
        for task in scenario.tasks:
            f = module.features(task.train_x)
            for c in task.classes:
                assert torch.allclose(fetril.means[c], f[task.train_y == c].mean(0), atol=1e-5)
    # pseudo-features of each old class: the mean of that class, the spread of a new class
    old = scenario.tasks[0].classes
    assert sorted(set(fetril.pseudo_y.tolist())) == old
    for c in old:
        assert torch.allclose(fetril.pseudo_x[fetril.pseudo_y == c].mean(0), fetril.means[c], atol=1e-5)
    assert fetril.pseudo_x[fetril.pseudo_y == old[0]].std(0).sum() > 0


def test_acil_head_equals_ridge_regression_on_all_data_seen():
    config = small_config("acil", n_tasks=3, strategy={"name": "acil", "gamma": 0.5, "buffer_size": 128},
                          train={"epochs_per_task": 2})  # the second epoch must not count samples twice
    module, acil, scenario, _ = train(config)
    analytic = acil.eval_model(module)
    with torch.no_grad():
        X = torch.cat([analytic.embed(t.train_x) for t in scenario.tasks]).double()
        Y = F.one_hot(torch.cat([t.train_y for t in scenario.tasks]), 10).double()
        W = torch.linalg.solve(X.T @ X + 0.5 * torch.eye(X.shape[1], dtype=X.dtype), X.T @ Y)
        assert torch.allclose(acil.ridge.W, W, atol=1e-5)
        x = scenario.tasks[0].test_x
        assert torch.allclose(analytic(x), (analytic.embed(x).double() @ W).float(), atol=1e-4)
    assert all(not p.requires_grad for p in module.net.features.parameters())


def test_slca_slows_the_backbone_and_aligns_the_head_on_the_stored_gaussians():
    config = small_config("slca", strategy={"name": "slca", "backbone_lr_scale": 0.01,
                                                   "ca_samples": 64, "ca_epochs": 2})
    module, slca, scenario, snapshots = train(config)
    groups = slca.configure_optimizer(module, config.train).param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(0.05 * 0.01), 0.05]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in module.net.features.parameters()}
    assert sorted(slca.stats) == list(range(10))
    # the samples the head aligns on have the stored moments
    n = 20_000
    x, y = slca.sample(n)
    for c, (mean, cov) in slca.stats.items():
        f = x[y == c].double()
        scale = cov.diagonal().max()
        assert (f.mean(0) - mean).abs().max() < 5 * (scale / n).sqrt()
        assert (torch.cov(f.T) - cov).abs().max() < 0.05 * scale
    # alignment trains the head only, towards those samples
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    with torch.no_grad():
        module.head.reset_parameters()
        loss_before = F.cross_entropy(module.head(x), y)
    slca.align(module)
    with torch.no_grad():
        assert F.cross_entropy(module.head(x), y) < loss_before
    for k, v in module.net.state_dict().items():
        assert torch.equal(v, before[k]) != k.startswith("head."), k


def test_packnet_keeps_each_tasks_weights_and_prunes_the_configured_share():
    config = small_config("packnet", n_tasks=3, scenario={"setting": "task"},
                          strategy={"name": "packnet", "prune_ratio": 0.6}, train={"epochs_per_task": 2})
    module, packnet, scenario, snapshots = train(config)
    for name, owner in packnet.owner.items():
        total = owner.numel()
        free = total
        for task in (1, 2, 3):  # each task kept 40% of what was free, then the rest stayed free
            kept = int((owner == task).sum())
            assert kept == free - round(0.6 * free), (name, task)
            free -= kept
            mine = owner == task
            for later in range(task, 4):
                assert torch.equal(snapshots[later][name][mine], snapshots[task][name][mine])
        assert torch.all(snapshots[3][name][owner == 0] == 0)  # released weights are zero
    assert torch.equal(snapshots[1]["features.1.bias"], snapshots[3]["features.1.bias"])  # trained on task 1 only
    # task 1 sees exactly the network it had at its end, on its classes (its classifier)
    model = packnet.eval_model(module).eval()
    x, classes = scenario.tasks[0].test_x, scenario.tasks[0].classes
    t = torch.zeros(len(x), dtype=torch.long)
    with torch.no_grad():
        now = model(x, t)
        module.net.load_state_dict(snapshots[1])
        assert torch.allclose(now[:, classes], module(x)[:, classes], atol=1e-5)


def test_hat_blocks_gradients_of_units_earlier_tasks_use_and_gates_are_binary_at_s_max():
    config = small_config("hat", scenario={"setting": "task"})
    module, hat, scenario, _ = train(config)
    e = hat.embeddings[0][0]
    gates = hat.task_gates(0, hat.s_max)[0]
    decided = e.abs() > 0.02  # sigmoid(400 e) is within 1e-3 of 0 or 1
    assert decided.float().mean() > 0.9
    assert torch.all((gates[decided] - (e[decided] > 0).float()).abs() < 1e-3)
    assert torch.allclose(hat.task_gates(0, 1 / hat.s_max)[0], torch.full_like(gates, 0.5), atol=0.02)

    # units task 1 used fully take no gradient in task 2; free units do
    with torch.no_grad():
        e.copy_(torch.where(torch.arange(len(e)) < len(e) // 2, 6.0, -6.0))
    hat.cumulative, hat.task = None, 0  # as if task 1 had just ended with these gates
    hat.after_task(module, None)
    task2 = scenario.tasks[1]
    hat.before_task(module, type("E", (), {"task": 2, "y": task2.train_y})())
    module.zero_grad()
    x, y = task2.train_x[:64], task2.train_y[:64]
    hat.training_loss(module, x, y, torch.ones_like(y)).backward()
    hat.after_backward(module, (x, y, None))
    layer = hat.layers[0]
    used = torch.arange(len(e)) < len(e) // 2
    assert torch.all(layer.weight.grad[used] == 0) and torch.all(layer.bias.grad[used] == 0)
    assert layer.weight.grad[~used].abs().sum() > 0
