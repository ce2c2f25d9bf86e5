"""The regularization strategies: each one's mechanism against a hand computation, and each trains end
to end on 2-task Split-Digits into a real DuckDB file, the same seed giving the same metrics."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.config import ScenarioConfig, TrainConfig, parse_config
from engine.runs.manager import run_in_process
from engine.module import ContinualModule
from engine.scenarios import build_scenario
from engine.strategies import STRATEGIES
from engine.strategies.base import Experience
from engine.strategies.regularization import quadratic_penalty
from store.metrics.summary import load_run
from tests.conftest import small_config
from tests.test_strategies import metric_rows

CASES = [("cumulative", {}), ("ewc", {"ewc_lambda": 100.0, "fisher": "minibatch"}),
         ("ewc", {"ewc_lambda": 100.0, "fisher": "per_sample", "mode": "online"}), ("si", {}), ("mas", {}),
         ("l2", {}), ("ewc_rank1", {}), ("ewc_rank1", {"direction": "mean_gradient"}),
         ("ewc_rank1", {"direction": "leading"}), ("feature_distill", {}),
         ("classp", {}), ("si", {"gradient": "unregularised"}), ("classp", {"gate": "tensor", "threshold": 0.5}),
         ("ewc", {"ewc_lambda": 100.0, "fisher_labels": "sampled"})]


@pytest.mark.parametrize("name, hparams", CASES, ids=[f"{n}-{'-'.join(map(str, h.values()))}" for n, h in CASES])
def test_trains_end_to_end_and_the_same_seed_gives_the_same_metrics(store, name, hparams):
    config = small_config(name, strategy={"name": name, **hparams})
    run_id = run_in_process(store, config)
    assert store.sql("SELECT status FROM runs WHERE id = ?", [run_id])[0][0] == "finished"
    R = load_run(store, run_id).R
    assert R.shape == (3, 2) and not np.isnan(R).any()
    assert R[1][0] > 0.8 and R[2][1] > 0.4  # learned each task
    assert metric_rows(store, run_in_process(store, config)) == metric_rows(store, run_id)


@pytest.mark.parametrize("name", ["si", "mas", "ewc_rank1", "feature_distill", "classp"])
def test_task_incremental_setting_trains(store, name):
    run_id = run_in_process(store, small_config(name, scenario={"setting": "task"}))
    R = load_run(store, run_id).R
    assert not np.isnan(R).any() and R[2][0] > 0.8


def test_bad_fisher_choice_is_one_clear_line():
    with pytest.raises(ValueError) as err:
        small_config("ewc", strategy={"name": "ewc", "fisher": "exact"})
    assert "fisher" in str(err.value) and "per_sample" in str(err.value)


# ---- mechanisms --------------------------------------------------------------------------------------
def _module(net, strategy, n_classes=3, batch_size=32):
    return ContinualModule(net, strategy, TrainConfig(batch_size=batch_size), None, n_classes)


def _tiny():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    return net, x, y, torch.zeros(10, dtype=torch.long)


def _scenario(n_tasks=2):
    return build_scenario(ScenarioConfig(n_tasks=n_tasks))


def test_ewc_both_fisher_estimates_match_a_hand_computation_and_their_lambda_conventions():
    net, x, y, t = _tiny()
    per_sample = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    for i in range(10):  # one backward a sample
        net.zero_grad()
        F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        for n, p in net.named_parameters():
            per_sample[n] += p.grad ** 2 / 10
    minibatch = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    for lo, hi in [(0, 4), (4, 8), (8, 10)]:  # batches of 4 in order, the last one short: 3 batches
        net.zero_grad()
        F.cross_entropy(net(x[lo:hi]), y[lo:hi]).backward()
        for n, p in net.named_parameters():
            minibatch[n] += p.grad ** 2 / 3
    start = {k: v.clone() for k, v in net.state_dict().items()}
    for kind, expected, scale in [("per_sample", per_sample, 0.5), ("minibatch", minibatch, 1.0)]:
        net.load_state_dict(start)
        ewc = STRATEGIES["ewc"](fisher=kind, fisher_batch=3, ewc_lambda=7.0)
        module = _module(net, ewc, batch_size=4)
        ewc.after_task(module, Experience(1, x, y, t))
        fisher, optimum = ewc.penalties[0]
        for n in expected:
            assert torch.allclose(fisher[n], expected[n], atol=1e-7), (kind, n)
        with torch.no_grad():
            moved = {n: p + 0.1 * torch.randn_like(p) for n, p in net.named_parameters()}
            for n, p in net.named_parameters():
                p.copy_(moved[n])
        hand = scale * 7.0 * sum((expected[n] * (moved[n] - optimum[n]) ** 2).sum() for n in expected)
        assert torch.isclose(ewc.training_loss(module, x, y, t) - module.loss(x, y, t), hand, rtol=1e-5)
    assert any(not torch.allclose(per_sample[n], minibatch[n]) for n in per_sample)


def test_per_sample_fisher_closed_form_equals_vmap_and_the_fallback_is_exact_too():
    net, x, y, t = _tiny()
    normed = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))  # not all Linear
    for model in (net, normed):
        expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        for i in range(10):
            model.zero_grad()
            F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
            for n, p in model.named_parameters():
                expected[n] += p.grad ** 2 / 10
        ewc = STRATEGIES["ewc"](fisher_batch=4)
        fisher = ewc.diagonal_fisher(_module(model, ewc), x, y, t)
        assert all(torch.allclose(fisher[n], expected[n], atol=1e-7) for n in expected)


def _state(strategy) -> dict:
    """What a strategy holds, in short: each attribute's length, or whether it is set."""
    return {k: len(v) if isinstance(v, (list, dict)) else v is not None for k, v in vars(strategy).items()
            if k != "tracking"}


def test_no_importance_is_computed_after_the_last_task():
    from engine.models.mlp import MLP
    scenario = _scenario(2)
    task = scenario.tasks[0]
    for name in ("ewc", "mas", "ewc_rank1", "l2", "si", "feature_distill"):
        strategy = STRATEGIES[name]()
        module = ContinualModule(MLP((64,), 10, [8]), strategy, TrainConfig(), None, 10)
        strategy.setup(module, scenario)
        before = _state(strategy)
        last = Experience(2, task.train_x, task.train_y, torch.ones_like(task.train_y))
        strategy.before_task(module, last)
        strategy.after_task(module, last)
        assert _state(strategy) == before, name  # nothing consolidated, nothing kept
        first = Experience(1, task.train_x, task.train_y, torch.zeros_like(task.train_y))
        strategy.before_task(module, first)
        strategy.after_task(module, first)
        assert _state(strategy) != before, name  # after a task that is not the last, it does consolidate


def _si_step(si, module, optimizer, loss):
    """One optimizer step on ``loss`` with SI's hooks around it, as the loop's observe."""
    optimizer.zero_grad()
    loss.backward()
    si.after_backward(module, None)
    optimizer.step()
    si.after_step(module, None)


def test_si_importance_is_the_path_integral_on_a_quadratic_by_hand():
    a, w0, lr, xi, steps = 3.0, 2.0, 0.1, 0.1, 6
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.5)
    si = STRATEGIES["si"](xi=xi)
    module = _module(net, si)
    si.before_task(module, Experience(1, torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1)))
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    w, omega = 0.5, 0.0
    for _ in range(steps):  # loss 0.5 a (w - w0)^2, its gradient a (w - w0)
        _si_step(si, module, optimizer, 0.5 * a * (net.weight - w0).pow(2).sum())
        g = a * (w - w0)
        omega += -g * (-lr * g)
        w -= lr * g
    si.after_task(module, Experience(1, torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1)))
    assert si.importance["weight"].item() == pytest.approx(omega / ((w - 0.5) ** 2 + xi), rel=1e-5)
    assert si.optimum["weight"].item() == pytest.approx(w, rel=1e-6)
    with torch.no_grad():
        net.weight += 1.0
    x, y, t = torch.ones(2, 1), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    module.n_classes = 1
    extra = si.training_loss(module, x, y, t) - module.loss(x, y, t)
    assert extra.item() == pytest.approx(si.c * si.importance["weight"].item() * 1.0, rel=1e-5)


def test_mas_importance_on_a_linear_net_is_the_hand_gradient_of_the_squared_output_norm():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    x = torch.randn(9, 4)
    mas = STRATEGIES["mas"](chunk=4)
    module = _module(net, mas)
    omega = mas.output_sensitivity(module, x, torch.zeros(9, dtype=torch.long))
    with torch.no_grad():
        f = net(x)  # d ||f||^2 / dW = 2 f x^T, / db = 2 f, per sample
        hand_w = (2 * f.unsqueeze(2) * x.unsqueeze(1)).abs().mean(0)
        hand_b = (2 * f).abs().mean(0)
    assert torch.allclose(omega["weight"], hand_w, atol=1e-6) and torch.allclose(omega["bias"], hand_b, atol=1e-6)


def test_l2_penalty_gradient_pulls_toward_the_previous_weights():
    net, x, y, t = _tiny()
    l2 = STRATEGIES["l2"](l2_lambda=4.0)
    module = _module(net, l2)
    l2.after_task(module, Experience(1, x, y, t))
    old = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net.zero_grad()
    (l2.training_loss(module, x, y, t) - module.loss(x, y, t)).backward()
    for n, p in net.named_parameters():
        assert torch.allclose(p.grad, 4.0 * (p - old[n]), atol=1e-5)  # d/dtheta 0.5 lambda ||theta - theta*||^2


def _flat_per_sample_grads(net, x, y):
    rows = []
    for i in range(len(y)):
        net.zero_grad()
        F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    return torch.stack(rows)


def test_rank1_penalty_is_the_squared_projection_on_the_fishers_leading_direction():
    net, x, y, t = _tiny()
    G = _flat_per_sample_grads(net, x, y).double()
    fisher = G.T @ G / len(y)  # the full P x P empirical Fisher, here only, to check against
    values, vectors = torch.linalg.eigh(fisher)
    best = values[-1] * torch.outer(vectors[:, -1], vectors[:, -1])
    rank1 = STRATEGIES["ewc_rank1"](ewc_lambda=3.0, fisher_batch=4, direction="leading")
    module = _module(net, rank1)
    rank1.after_task(module, Experience(1, x, y, t))
    u, optimum = rank1.penalties[0]
    flat_u = torch.cat([u[n].flatten() for n, _ in net.named_parameters()]).double()
    assert torch.allclose(torch.outer(flat_u, flat_u), best, atol=1e-5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    delta = torch.cat([(p - optimum[n]).flatten() for n, p in net.named_parameters()]).double()
    extra = rank1.training_loss(module, x, y, t) - module.loss(x, y, t)
    assert extra.item() == pytest.approx(0.5 * 3.0 * (flat_u @ delta).item() ** 2, rel=1e-4)
    mean = STRATEGIES["ewc_rank1"](direction="mean_gradient")
    mean.after_task(module, Experience(1, x, y, t))
    flat_mean = torch.cat([mean.penalties[0][0][n].flatten() for n, _ in net.named_parameters()])
    assert torch.allclose(flat_mean, _flat_per_sample_grads(net, x, y).mean(0), atol=1e-6)


def test_feature_distillation_is_zero_after_a_task_and_grows_as_features_move():
    from engine.models.mlp import MLP
    torch.manual_seed(0)
    net = MLP((64,), 10, [16])
    fd = STRATEGIES["feature_distill"](fd_lambda=2.0)
    module = ContinualModule(net, fd, TrainConfig(), None, 10)
    fd.setup(module, _scenario(2))
    x, y = torch.randn(12, 64), torch.randint(0, 10, (12,))
    t = torch.zeros(12, dtype=torch.long)
    fd.after_task(module, Experience(1, x, y, t))
    assert fd.distance(module, x).item() == 0.0
    assert torch.isclose(fd.training_loss(module, x, y, t), module.loss(x, y, t))
    distances = []
    for _ in range(3):
        with torch.no_grad():
            net.features[1].weight += 0.05
        distances.append(fd.distance(module, x).item())
    assert 0 < distances[0] < distances[1] < distances[2]
    with torch.no_grad():
        hand = ((net.features(x) - fd.teacher.features(x)) ** 2).sum(1).mean()
    assert fd.training_loss(module, x, y, t).item() == pytest.approx(module.loss(x, y, t).item() + 2.0 * hand.item(), rel=1e-5)


def test_classp_leaves_weights_under_the_threshold_unchanged_and_decays_the_step():
    net, x, y, t = _tiny()
    threshold = 1e-3
    classp = STRATEGIES["classp"](threshold=threshold, epsilon=1e-5, power=2.0)
    module = _module(net, classp)
    optimizer = classp.configure_optimizer(module, TrainConfig(lr=0.1))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    classp.observe(module, (x, y, t), optimizer, lambda loss: loss.backward())
    below = above = 0
    for n, p in net.named_parameters():
        g = grads[n]
        passes = g ** 2 > threshold
        assert torch.equal(p[~passes], before[n][~passes])  # under the threshold: not moved at all
        expected = before[n] - 0.1 * g / (1e-5 + g.abs() ** 2).sqrt()  # the first step: its own gradient
        assert torch.allclose(p[passes], expected[passes], atol=1e-5)
        below, above = below + int((~passes).sum()), above + int(passes.sum())
    assert below > 0 and above > 0
    # a second step on the same gradient: the accumulated sum doubles, the step shrinks by sqrt(2)
    mid = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p, (n, g) in zip(net.parameters(), grads.items()):
        p.grad = g.clone()
    classp.after_backward(module, None)
    for n, p in net.named_parameters():
        passes = grads[n] ** 2 > threshold
        step = 0.1 * grads[n] / (1e-5 + 2 * grads[n].abs() ** 2).sqrt()
        assert torch.allclose(p.grad[passes] * 0.1, step[passes], atol=1e-6)
        assert torch.equal(mid[n], p.detach())


def test_cumulative_trains_task_k_on_tasks_1_to_k():
    scenario = _scenario(3)
    experiences = STRATEGIES["cumulative"]().experiences(scenario)
    assert [e.task for e in experiences] == [1, 2, 3]
    assert [len(e.y) for e in experiences] == [sum(len(t.train_y) for t in scenario.tasks[:k]) for k in (1, 2, 3)]
    assert set(experiences[2].y.tolist()) == set(range(10))
    with pytest.raises(ValueError):
        parse_config({**small_config("cumulative").model_dump(mode="json"), "strategy": {"name": "cumulative", "mode": "all"}})


# ---- EWC: van de Ven's lambdas and the sampled-label (expected) Fisher ---------------------------------
def test_ewc_sampled_label_fisher_is_the_expected_fisher_and_true_labels_the_empirical_one():
    net, x, y, t = _tiny()
    expected = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    for i in range(10):  # sum over labels c of p(c | x_i) g_c^2, one backward a label
        probs = F.softmax(net(x[i:i + 1]), 1).detach()[0]
        for c in range(3):
            net.zero_grad()
            F.cross_entropy(net(x[i:i + 1]), torch.tensor([c])).backward()
            for n, p in net.named_parameters():
                expected[n] += probs[c] * p.grad ** 2 / 10
    many = 3000  # each sample repeated: the sampled labels' Fisher converges to the expected one
    xs, ts = x.repeat(many, 1), t.repeat(many)
    for kind in ("per_sample", "minibatch"):
        ewc = STRATEGIES["ewc"](fisher=kind, fisher_labels="sampled", fisher_batch=4096, seed=3)
        ewc.after_task(_module(net, ewc, batch_size=1), Experience(1, xs, y.repeat(many), ts))
        sampled = ewc.penalties[0][0]
        for n in expected:
            assert torch.allclose(sampled[n], expected[n], rtol=0.08, atol=2e-4), (kind, n)
    empirical = STRATEGIES["ewc"](fisher_labels="true")
    empirical.after_task(_module(net, empirical), Experience(1, x, y, t))
    assert any(not torch.allclose(empirical.penalties[0][0][n], expected[n], rtol=0.2) for n in expected)


def test_ewc_runs_van_de_vens_class_il_lambda_with_sampled_labels_from_the_cli(tmp_path):
    """lambda 1e9 (van de Ven's class-IL Split MNIST, Adam 0.001) was refused above 1e7."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    config = tmp_path / "c.yaml"
    config.write_text("name: ewc-1e9\nscenario: {n_tasks: 2}\nmodel: {hidden: [32]}\n"
                      "strategy: {name: ewc, ewc_lambda: 1.0e9, fisher_labels: sampled}\n"
                      "train: {optimizer: adam, lr: 0.001, epochs_per_task: 1}\neval: {every: 5}\n")
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(config), "--db", str(tmp_path / "l.duckdb")],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"run \d+ finished", proc.stdout), proc.stdout
    config.write_text(config.read_text().replace("1.0e9", "1.0e13"))
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(config), "--db", str(tmp_path / "l.duckdb")],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode != 0 and "strategy.ewc_lambda" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


# ---- the conventions offered beside the defaults -------------------------------------------------------
@pytest.mark.parametrize("gradient", ["total", "unregularised"])
def test_si_path_integral_of_a_second_task_uses_the_chosen_gradient(gradient):
    """Task 2's loss is 0.5 b (w - w1)^2 plus SI's c Omega (w - w*)^2; the optimizer follows the total
    gradient, and omega integrates -g dw with g the total one or the task loss's alone (Zenke's)."""
    b, w1, lr, xi, c, steps = 2.0, -1.0, 0.1, 0.1, 0.5, 5
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.5)
    si = STRATEGIES["si"](xi=xi, c=c, gradient=gradient)
    module = _module(net, si)
    task = Experience(1, torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1))
    si.before_task(module, task)
    si.importance, si.optimum = {"weight": torch.tensor([[3.0]])}, {"weight": torch.tensor([[0.5]])}
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    w, omega = 0.5, 0.0
    for _ in range(steps):
        _si_step(si, module, optimizer, 0.5 * b * (net.weight - w1).pow(2).sum()
                 + c * quadratic_penalty(net, [(si.importance, si.optimum)]))
        task_grad = b * (w - w1)
        total = task_grad + 2 * c * 3.0 * (w - 0.5)
        omega += -(total if gradient == "total" else task_grad) * (-lr * total)
        w -= lr * total
    assert si.omega["weight"].item() == pytest.approx(omega, rel=1e-5)


def test_lwf_t_squared_and_the_classes_of_its_cross_entropy():
    scenario = _scenario(2)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    x, y = scenario.tasks[0].train.x()[:20], scenario.tasks[0].train.y[:20]
    t = torch.zeros(20, dtype=torch.long)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    out = net(x).detach()
    losses = {}
    for t_squared in (True, False):
        for ce_classes in ("all", "seen"):
            lwf = STRATEGIES["lwf"](temperature=3.0, t_squared=t_squared, ce_classes=ce_classes)
            module = _module(net, lwf, n_classes=10)
            lwf.setup(module, scenario)
            lwf.before_task(module, Experience(1, x, y, t))
            losses[t_squared, ce_classes, "first"] = lwf.training_loss(module, x, y, t).item()
            lwf.after_task(module, Experience(1, x, y, t))
            torch.manual_seed(1)
            with torch.no_grad():  # the student moves away from its teacher
                for p in net.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            lwf.before_task(module, Experience(2, x, y, t + 1))
            losses[t_squared, ce_classes] = lwf.training_loss(module, x, y, t).item() - module.loss(x, y, t).item()
            net.load_state_dict(start)
    seen = scenario.tasks[0].classes
    remapped = torch.tensor([seen.index(int(c)) for c in y])
    assert losses[True, "seen", "first"] == pytest.approx(F.cross_entropy(out[:, seen], remapped).item(), rel=1e-5)
    assert losses[True, "all", "first"] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
    assert losses[True, "all"] == pytest.approx(9.0 * losses[False, "all"], rel=1e-4)  # T^2 = 9


def test_classp_tensor_gate_moves_a_whole_tensor_as_the_authors_code():
    net, x, y, t = _tiny()
    for gate, threshold in [("tensor", 0.5), ("tensor", 1.0), ("weight", 0.5)]:
        torch.manual_seed(1)
        net, x, y, t = _tiny()
        classp = STRATEGIES["classp"](threshold=threshold, gate=gate)
        module = _module(net, classp)
        optimizer = classp.configure_optimizer(module, TrainConfig(lr=0.1))
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        classp.observe(module, (x, y, t), optimizer, lambda loss: loss.backward())
        moved = {n: (p.detach() != before[n]) for n, p in net.named_parameters()}
        if gate == "tensor" and threshold < 1:  # every weight with a non-zero gradient moves, small ones too
            assert all(m.all() for m in moved.values()), moved
        elif gate == "tensor":
            assert not any(m.any() for m in moved.values())
        else:  # the paper's per-weight rule: at 0.5 few weights, if any, pass
            assert not all(m.all() for m in moved.values())
