"""Methods made faithful to their papers and their authors' code (issue 21): each test fails on the
deviation it names."""

import pytest
import torch

from engine.runs.manager import run_in_process
from engine.models import build_model
from engine.module import ContinualModule
from engine.scenarios import build_scenario
from engine.strategies import STRATEGIES
from store.metrics.summary import load_run
from tests.conftest import small_config
from tests.test_strategies_rehearsal import experiences, make, train


def rebuilt(config, store, run_id, task):
    """The run's strategy and module rebuilt from its saved weights after ``task``, its hooks replayed
    on the scenario's own experiences up to the end of ``task``."""
    scenario = build_scenario(config.scenario)
    net = build_model(config.model, scenario.input_shape, scenario.n_classes)
    strategy = STRATEGIES[config.strategy["name"]](seed=config.seed, **config.strategy_hparams)
    module = ContinualModule(net, strategy, config.train, scenario.class_mask, scenario.n_classes)
    strategy.setup(module, scenario)
    for k, experience in enumerate(strategy.experiences(scenario)[:task], 1):
        strategy.before_task(module, experience)
        net.load_state_dict(torch.load(store.artifacts_dir(run_id) / f"after-task-{k}.pt"))
        strategy.after_task(module, experience)
    return scenario, strategy, module


# ---- iCaRL -----------------------------------------------------------------------------------------------
def test_icarl_end_of_task_accuracy_is_that_of_the_exemplar_means(store):
    # one exemplar a class after task 2: the means of the exemplars differ from the training data's
    config = small_config("icarl", strategy={"name": "icarl", "memory_size": 10}, train={"weights": "every"})
    run_id = run_in_process(store, config)
    R = load_run(store, run_id).R
    for task in (1, 2):
        scenario, strategy, module = rebuilt(config, store, run_id, task)
        classifier = strategy.eval_model(module).eval()
        with torch.no_grad():
            expected = [float((classifier(t.test_x).argmax(1) == t.test_y).float().mean()) for t in scenario.tasks]
        assert abs(R[task, 0] - expected[0]) < 1e-6 and abs(R[task, 1] - expected[1]) < 1e-6, (task, R[task], expected)


def test_icarl_raw_features_follow_mammoth_and_normalised_the_paper():
    scenario, (first, second) = experiences(2)
    for ncm_features in ("normalised", "raw"):
        icarl, module = make("icarl", scenario, memory_size=50, ncm_features=ncm_features)
        train(icarl, module, first, 10)
        features = module.features(first.x)
        if ncm_features == "normalised":
            features = torch.nn.functional.normalize(features, dim=1)
        assert torch.allclose(icarl.embed(module, first.x), features)
        with torch.no_grad():
            means = torch.stack([icarl.embed(module, icarl.exemplars[c]).mean(0) for c in range(5)])
            if ncm_features == "normalised":
                means = torch.nn.functional.normalize(means, dim=1)
            scores = icarl.eval_model(module)(first.x[:20])
        expected = -torch.cdist(features[:20], means).pow(2)
        assert torch.allclose(scores[:, :5], expected, atol=1e-4)
        assert torch.all(scores[:, 5:] == torch.finfo(scores.dtype).min)


# ---- ER-ACE ----------------------------------------------------------------------------------------------
def er_ace_incoming_bias_gradient(**hparams):
    """ER-ACE after 5 steps on classes 0-4, then a batch of classes 5 and 6: the incoming loss's gradient
    on each class's output bias (the step's gradient less the replayed batch's)."""
    scenario, (first, second) = experiences(2)
    ace, module = make("er_ace", scenario, **hparams)
    train(ace, module, first, 5)
    keep = second.y < 7
    x, y, t = second.x[keep][:32], second.y[keep][:32], second.t[keep][:32]
    assert set(y.tolist()) == {5, 6}
    state = ace.generator.get_state()
    bx, by, bt = ace.buffer.sample(32)  # the replay batch the step will draw
    ace.generator.set_state(state)
    module.zero_grad()
    ace.training_loss(module, x, y, t).backward()
    total = module.head.bias.grad.clone()
    module.zero_grad()
    module.loss(bx, by, bt).backward()
    return total - module.head.bias.grad


def test_er_ace_keeps_the_classes_not_seen_yet_unmasked_as_the_authors_code():
    incoming = er_ace_incoming_bias_gradient()  # the default: the original masking
    assert torch.all(incoming[:5].abs() < 1e-7)  # seen before, absent from the batch: masked
    assert torch.all(incoming[5:] != 0)  # the batch's classes and 7-9, not seen yet, compete
    named = er_ace_incoming_bias_gradient(mask="batch")  # CL Lab's old rule: every absent class masked
    assert torch.all(named[[0, 1, 2, 3, 4, 7, 8, 9]].abs() < 1e-7) and torch.all(named[[5, 6]] != 0)
    # with an empty buffer (the first step) the incoming loss is plain cross-entropy
    scenario, (first, _) = experiences(2)
    fresh, module = make("er_ace", scenario)
    x, y, t = first.x[:32], first.y[:32], first.t[:32]
    assert torch.isclose(fresh.training_loss(module, x, y, t), module.loss(x, y, t))


# ---- SLCA ------------------------------------------------------------------------------------------------
def test_slca_trains_each_task_with_cross_entropy_over_its_own_classes():
    scenario, (first, second) = experiences(2)
    slca, module = make("slca", scenario, ca_samples=16, ca_epochs=1)
    train(slca, module, first, 5)
    slca.before_task(module, second)
    x, y, t = second.x[:32], second.y[:32], second.t[:32]
    module.zero_grad()
    loss = slca.training_loss(module, x, y, t)
    loss.backward()
    # the authors' loss: the task's logits alone, its labels counted from its first class
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(module(x)[:, 5:], y - 5))
    assert torch.all(module.head.bias.grad[:5] == 0) and torch.all(module.head.bias.grad[5:] != 0)


# ---- PackNet ---------------------------------------------------------------------------------------------
def test_packnet_prunes_the_feature_layers_and_each_task_trains_its_own_head_rows():
    from tests.test_strategies_arch import train as train_loop

    config = small_config("packnet", n_tasks=3, scenario={"setting": "task"}, strategy={"name": "packnet"})
    module, packnet, scenario, snapshots = train_loop(config)
    assert packnet.owner and not any(name.startswith("head.") for name in packnet.owner)  # the head is not pruned
    for task in (2, 3):
        rows = scenario.tasks[task - 1].classes
        for name in ("head.weight", "head.bias"):
            before, after = snapshots[task - 1][name][rows], snapshots[task][name][rows]
            assert (before != after).float().mean() > 0.9, (task, name)  # its classifier trained in its task
            for later in range(task, 4):  # and stays as it was after
                assert torch.equal(snapshots[later][name][rows], after)
        if task == 2:  # not touched before its task
            later_rows = scenario.tasks[2].classes
            assert torch.equal(snapshots[1]["head.weight"][later_rows], snapshots[2]["head.weight"][later_rows])


# ---- rank-1 EWC ------------------------------------------------------------------------------------------
def test_rank1_ewc_default_is_the_papers_scaled_mean_gradient_with_ewcs_penalty():
    from engine.strategies.base import Experience
    from tests.test_strategies_reg import _flat_per_sample_grads, _module, _tiny

    net, x, y, t = _tiny()
    G = _flat_per_sample_grads(net, x, y).double()
    mu = G.mean(0)
    fisher = G.T @ G / len(y)  # the full empirical Fisher, here only, to check against
    c_star = (G @ mu).pow(2).mean() / mu.dot(mu) ** 2  # the authors' rank1_opt: E[(mu.g)^2] / ||mu||^4
    rank1 = STRATEGIES["ewc_rank1"](fisher_batch=4)
    module = _module(net, rank1)
    rank1.after_task(module, Experience(1, x, y, t))
    u, optimum = rank1.penalties[0]
    flat_u = torch.cat([u[n].flatten() for n, _ in net.named_parameters()]).double()
    assert torch.allclose(torch.outer(flat_u, flat_u), c_star * torch.outer(mu, mu), atol=1e-6)
    # c* is the scale of mu mu^T nearest the Fisher: any other is further off
    error = lambda c: torch.linalg.norm(fisher - c * torch.outer(mu, mu))  # noqa: E731
    assert error(c_star) < error(0.9 * c_star) and error(c_star) < error(1.1 * c_star) and error(c_star) < error(1.0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    delta = torch.cat([(p - optimum[n]).flatten() for n, p in net.named_parameters()]).double()
    extra = rank1.training_loss(module, x, y, t) - module.loss(x, y, t)
    # EWC's per_sample penalty 0.5 x lambda x d^T F d with F = c* mu mu^T
    assert extra.item() == pytest.approx(0.5 * rank1.ewc_lambda * (delta @ (c_star * torch.outer(mu, mu)) @ delta).item(),
                                         rel=1e-4)
