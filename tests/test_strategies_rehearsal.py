"""The rehearsal strategies: each one's mechanism, then each trained end to end into a real DuckDB file."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.augment import InputAugment
from engine.config import ConfigError, ScenarioConfig, TrainConfig, parse_config
from engine.training.cost import estimate
from engine.runs.manager import run_in_process
from engine.models.mlp import MLP
from engine.module import ContinualModule
from engine.scenarios import build_scenario
from engine.strategies import STRATEGIES
from engine.strategies.base import Experience
from engine.strategies.buffers import BalancedBuffer, GreedyClassBalancedBuffer, ReservoirBuffer
from engine.strategies.icarl import herding
from store.metrics.summary import load_run, summaries
from tests.conftest import small_config


def experiences(n_tasks=2):
    scenario = build_scenario(ScenarioConfig(n_tasks=n_tasks))
    return scenario, [Experience(k + 1, task.train_x, task.train_y, torch.full_like(task.train_y, k))
                      for k, task in enumerate(scenario.tasks)]


def make(name, scenario, hidden=16, **hparams):
    torch.manual_seed(0)
    net = MLP((64,), 10, hidden=[hidden])
    strategy = STRATEGIES[name](seed=0, **hparams)
    module = ContinualModule(net, strategy, TrainConfig(), scenario.class_mask, scenario.n_classes)
    strategy.setup(module, scenario)
    return strategy, module


def batches(experience, n, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        idx = torch.randint(len(experience.y), (size,), generator=g)
        yield experience.x[idx], experience.y[idx], experience.t[idx]


def train(strategy, module, experience, steps, lr=0.05):
    strategy.before_task(module, experience)
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    for batch in batches(experience, steps):
        strategy.observe(module, batch, optimizer, lambda loss: loss.backward())
    strategy.after_task(module, experience)


def flat_grad(module):
    return torch.cat([p.grad.reshape(-1) for p in module.parameters()])


def memory_gradient(module, x, y, t):
    module.zero_grad()
    module.loss(x, y, t).backward()
    return flat_grad(module)


# ---- memories -----------------------------------------------------------------------------------------
def test_reservoir_keeps_every_sample_with_equal_chance_and_extra_fields_follow():
    counts = torch.zeros(120)
    trials = 400
    for trial in range(trials):
        buffer = ReservoirBuffer(12, torch.Generator().manual_seed(1000 + trial))
        for start in range(0, 120, 20):  # batches of 5 and 15, one straddling the filling point
            for ids in (torch.arange(start, start + 5), torch.arange(start + 5, start + 20)):
                buffer.add(ids.float().unsqueeze(1), ids, ids, logits=-ids.float().unsqueeze(1))
        assert len(buffer) == 12 and len(set(buffer.y.tolist())) == 12
        assert torch.equal(buffer.x.squeeze(1).long(), buffer.y)  # the fields of a sample stay together
        assert torch.equal(-buffer.logits.squeeze(1), buffer.x.squeeze(1))
        counts[buffer.y] += 1
    # each sample kept with probability 12/120: 40 of 400 trials; sd of a block mean of 30 samples ~1.1
    for block in counts.split(30):
        assert abs(block.mean() - 40) < 4.5, counts
    # and a chi-square over the 120 samples stays near its 119 degrees of freedom
    chi2 = ((counts - 40) ** 2 / 40).sum()
    assert 70 < chi2 < 180


def test_reservoir_keeps_the_later_sample_of_a_slot_drawn_twice_so_a_seed_repeats():
    """The one-at-a-time algorithm, drawing the same numbers, is the reference. Over 60 batches some slot
    is drawn twice in one call; with wide inputs and two threads, index_put once kept either sample."""
    size, batch, width, steps = 200, 32, 3072, 60

    def reference(seed, steps):
        g, memory, seen = torch.Generator().manual_seed(seed), {}, 0
        for step in range(steps):
            ids = range(step * batch, (step + 1) * batch)
            free = min(max(size - seen, 0), batch)
            for i in ids[:free]:
                memory[seen] = i
                seen += 1
            scale = torch.arange(seen + 1, seen + batch - free + 1, dtype=torch.float64)
            draws = (torch.rand(batch - free, generator=g, dtype=torch.float64) * scale).long().tolist()
            for i, d in zip(ids[free:], draws):
                if d < size:
                    memory[d] = i
            seen += batch - free
        return [memory[k] for k in range(size)]

    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        for seed in range(5):
            buffer = ReservoirBuffer(size, torch.Generator().manual_seed(seed))
            for step in range(steps):
                ids = torch.arange(step * batch, (step + 1) * batch)
                buffer.add(ids.float()[:, None].expand(batch, width).contiguous(), ids, ids)
            assert buffer.y.tolist() == reference(seed, steps), seed
            assert torch.equal(buffer.x[:, 0].long(), buffer.y) and bool((buffer.x == buffer.x[:, :1]).all())
    finally:
        torch.set_num_threads(threads)


def test_class_balanced_memory_holds_equal_counts_per_class():
    scenario, (first, second) = experiences(2)
    buffer = BalancedBuffer(200, "class", torch.Generator().manual_seed(0))
    buffer.update(first.x, first.y, first.t)
    assert torch.bincount(buffer.y, minlength=10)[:5].tolist() == [40] * 5
    buffer.update(second.x, second.y, second.t)
    assert torch.bincount(buffer.y, minlength=10).tolist() == [20] * 10
    # old samples kept are a subset of the old ones, each row with its own label
    rows = {tuple(r.tolist()): int(c) for r, c in zip(first.x, first.y)}
    assert all(rows[tuple(r.tolist())] == int(c) for r, c in zip(buffer.x, buffer.y) if int(c) < 5)
    odd = BalancedBuffer(203, "class", torch.Generator().manual_seed(0))
    odd.update(first.x, first.y, first.t)
    assert torch.bincount(odd.y).tolist() == [41, 41, 41, 40, 40]  # the remainder goes to the first groups


def test_experience_balanced_memory_and_a_fixed_memory_per_task():
    scenario, exps = experiences(3)
    buffer = BalancedBuffer(100, "experience", torch.Generator().manual_seed(0))
    fixed = BalancedBuffer(100, "experience", torch.Generator().manual_seed(0), per_group=20)
    for k, e in enumerate(exps):
        buffer.update(e.x, e.y, e.t)
        fixed.update(e.x, e.y, e.t)
        assert torch.bincount(buffer.t).tolist() == {0: [100], 1: [50, 50], 2: [34, 33, 33]}[k]
        assert torch.bincount(fixed.t).tolist() == [20] * (k + 1)
    assert [len(g[0]) for g in fixed.groups()] == [20, 20, 20]
    assert [set(g[2].tolist()) for g in fixed.groups()] == [{0}, {1}, {2}]


def test_greedy_class_balanced_sampler_of_gdumb():
    scenario, (first, second) = experiences(2)
    buffer = GreedyClassBalancedBuffer(200, torch.Generator().manual_seed(0))
    buffer.update(first.x, first.y, first.t)
    assert torch.bincount(buffer.y).tolist() == [40] * 5
    buffer.update(second.x, second.y, second.t)
    assert torch.bincount(buffer.y).tolist() == [20] * 10
    assert sorted(s for slots in buffer.slots.values() for s in slots) == list(range(200))


@pytest.mark.parametrize("policy", ["class_balanced", "experience_balanced"])
def test_balanced_replay_fills_at_task_end_only(policy):
    scenario, (first, second) = experiences(2)
    replay, module = make("replay", scenario, policy=policy, buffer_size=50)
    replay.before_task(module, first)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
    for batch in batches(first, 3):
        replay.observe(module, batch, optimizer, lambda loss: loss.backward())
    assert len(replay.replay_buffer) == 0  # nothing during the task
    replay.after_task(module, first)
    assert len(replay.replay_buffer) == 50 and set(replay.replay_buffer.y.tolist()) <= set(first.y.tolist())


# ---- van de Ven's conventions: a memory per class, replay weighted 1/k --------------------------------
@pytest.mark.parametrize("setting", ["class", "domain"])
def test_a_memory_per_class_grows_with_the_classes_of_each_task(setting):
    scenario = build_scenario(ScenarioConfig(n_tasks=2, setting=setting))
    replay, module = make("replay", scenario, policy="per_class", memory_per_class=12)
    for experience in replay.experiences(scenario):
        replay.after_task(module, experience)
        memory = replay.replay_buffer
        classes = [c for task in scenario.tasks[:experience.task] for c in task.classes]
        assert len(memory) == 12 * len(classes)  # van de Ven: budget x classes seen (domain: each task's own)
        for k, task in enumerate(scenario.tasks[:experience.task]):
            assert torch.bincount(memory.y[memory.t == k], minlength=10)[task.classes].tolist() == [12] * len(task.classes)


def test_replay_weighted_one_over_k_against_joined():
    scenario, (first, second) = experiences(2)
    x, y, t = second.x[:32], second.y[:32], second.t[:32]
    losses = {}
    for weighting in ("joined", "one_over_k"):
        replay, module = make("replay", scenario, weighting=weighting, policy="class_balanced", buffer_size=50,
                              replay_batch_size=16)  # joined: 2/3 and 1/3
        replay.before_task(module, first)
        assert torch.isclose(replay.training_loss(module, x, y, t), module.loss(x, y, t))  # nothing held yet
        replay.after_task(module, first)
        replay.before_task(module, second)  # k = 2
        state = replay.generator.get_state()
        loss = replay.training_loss(module, x, y, t)
        replay.generator.set_state(state)
        bx, by, bt = replay.replay_buffer.sample(replay.replay_batch_size)  # the same draw
        losses[weighting] = (loss, module.loss(x, y, t), module.loss(bx, by, bt),
                             module.loss(torch.cat([x, bx]), torch.cat([y, by]), torch.cat([t, bt])))
    loss, current, replayed, joined = losses["one_over_k"]
    assert torch.isclose(loss, current / 2 + replayed / 2)  # van de Ven's rnt = 1/k, k = 2
    loss, current, replayed, joined = losses["joined"]
    assert torch.isclose(loss, joined) and not torch.isclose(loss, current / 2 + replayed / 2)  # Mammoth's ER
    reservoir, module = make("replay", scenario, weighting="one_over_k", buffer_size=50)
    reservoir.before_task(module, first)
    train(reservoir, module, first, 3)
    assert torch.isclose(reservoir.training_loss(module, x, y, t), module.loss(x, y, t))  # k = 1: no replay
    reservoir.before_task(module, second)
    assert reservoir.tasks_seen == 2


def test_replay_weighted_as_de_lange_et_al_new_weight():
    """weighting new_weight: Lw_new x the current batch's loss + (1 - Lw_new) x the replayed batch's, and
    Lw_new x the current loss while nothing is held (De Lange et al.'s ERStrategy)."""
    scenario, (first, second) = experiences(2)
    x, y, t = second.x[:32], second.y[:32], second.t[:32]
    replay, module = make("replay", scenario, weighting="new_weight", new_weight=0.3, policy="class_balanced",
                          buffer_size=50, replay_batch_size=16)
    replay.before_task(module, first)
    assert torch.isclose(replay.training_loss(module, x, y, t), 0.3 * module.loss(x, y, t))  # nothing held yet
    replay.after_task(module, first)
    for task in (second, second):  # the same weight at every task, unlike 1/k
        replay.before_task(module, task)
        state = replay.generator.get_state()
        loss = replay.training_loss(module, x, y, t)
        replay.generator.set_state(state)
        bx, by, bt = replay.replay_buffer.sample(16)
        assert torch.isclose(loss, 0.3 * module.loss(x, y, t) + 0.7 * module.loss(bx, by, bt))


def test_the_cli_runs_van_de_vens_replay_and_refuses_an_unknown_weighting(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    config = tmp_path / "c.yaml"
    base = "scenario: {n_tasks: 3}\nmodel: {hidden: [32]}\ntrain: {epochs_per_task: 1}\neval: {every: 20}\n"
    config.write_text(base + "strategy: {name: replay, policy: per_class, memory_per_class: 30, weighting: one_over_k}\n")
    de_lange = tmp_path / "de_lange.yaml"
    de_lange.write_text(base + "strategy: {name: replay, weighting: new_weight, new_weight: 0.3}\n")
    run = lambda path: subprocess.run([sys.executable, "-m", "engine", "run", str(path), "--db", str(tmp_path / "lab.duckdb")],  # noqa: E731
                                      cwd=ROOT, capture_output=True, text=True, timeout=180)
    for path in (config, de_lange):
        proc = run(path)
        assert proc.returncode == 0 and " finished " in proc.stdout, proc.stdout + proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "strategy: {name: replay, weighting: 1/k}\n")
    proc = run(bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "strategy.weighting = '1/k': must be 'joined', 'one_over_k' or 'new_weight'" in proc.stdout + proc.stderr


# ---- DER, DER++, ER-ACE -------------------------------------------------------------------------------
def test_der_stores_the_logits_of_the_step_a_sample_was_seen_and_replays_them():
    scenario, (first, second) = experiences(2)
    der, module = make("der", scenario, buffer_size=10_000, alpha=0.5)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    seen = []
    for batch in batches(first, 6):
        with torch.no_grad():
            seen.append(module(batch[0]))  # the logits at this step, before its update
        der.observe(module, batch, optimizer, lambda loss: loss.backward())
    assert len(der.buffer) == 6 * 32
    assert torch.allclose(der.buffer.logits, torch.cat(seen), atol=1e-6)
    assert not torch.allclose(der.buffer.logits[:32], module(der.buffer.x[:32]), atol=1e-3)  # the model moved on

    state = der.generator.get_state()
    replayed = der.replay_loss(module)
    der.generator.set_state(state)
    idx = torch.randint(len(der.buffer), (der.replay_batch_size,), generator=der.generator)
    expected = 0.5 * F.mse_loss(module(der.buffer.x[idx]), der.buffer.logits[idx])
    assert torch.isclose(replayed, expected)

    derpp, module = make("derpp", scenario, buffer_size=10_000, alpha=0.5, beta=2.0)
    train(derpp, module, first, 3)
    state = derpp.generator.get_state()
    replayed = derpp.replay_loss(module)
    derpp.generator.set_state(state)
    b = derpp.buffer
    ce_idx = torch.randint(len(b), (32,), generator=derpp.generator)
    mse_idx = torch.randint(len(b), (32,), generator=derpp.generator)
    expected = (0.5 * F.mse_loss(module(b.x[mse_idx]), b.logits[mse_idx])
                + 2.0 * F.cross_entropy(module(b.x[ce_idx]), b.y[ce_idx]))
    assert torch.isclose(replayed, expected)


# ---- augmentation: raw inputs stored, replayed ones augmented at every draw (Mammoth) ----------------
def test_a_memory_augments_the_inputs_it_replays_anew_at_every_draw():
    x = torch.rand(1, 3, 8, 8)
    buffer = ReservoirBuffer(1, torch.Generator().manual_seed(0))  # one sample: every draw is it
    buffer.add(x, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    black = torch.tensor([-1.0, -2.0, -3.0])  # black after normalisation, one value a channel
    draws = [buffer.sample(4, InputAugment(("crop", "flip"), black))[0][0] for _ in range(12)]
    padded = black.view(3, 1, 1).expand(3, 16, 16).clone()
    padded[:, 4:12, 4:12] = x[0]
    windows = [w for r in range(9) for c in range(9) for w in (padded[:, r:r + 8, c:c + 8], padded[:, r:r + 8, c:c + 8].flip(2))]
    assert all(any(torch.equal(d, w) for w in windows) for d in draws)  # a window of the padded sample, maybe mirrored
    assert len({d.numpy().tobytes() for d in draws}) > 6 and sum(torch.equal(d, x[0]) for d in draws) < 3
    assert torch.equal(buffer.x, x)  # what is stored stays raw
    assert torch.equal(buffer.sample(4)[0], x) and torch.equal(buffer.sample(4, InputAugment())[0], x)  # none: as stored


@pytest.mark.parametrize("name, field", [("replay", "replay_buffer"), ("der", "buffer"), ("er_ace", "buffer"),
                                         ("replay", "class_balanced")])
def test_a_real_run_with_augmentation_stores_the_raw_inputs(tmp_path, name, field):
    """Through the training loop on CIFAR-format files with the dataset's crop and flip: the memory
    saved with the checkpoint after task 1 holds exactly task 1's inputs before augmentation."""
    import pickle

    from engine.training import checkpoint as checkpoints
    from engine.models import build_model
    from engine.training.train import train_run
    from tests.test_datasets import write_cifar10
    from tests.test_resume import ListSink

    write_cifar10(tmp_path, per_batch=40, n_test=20)
    strategy = {"name": name, "buffer_size": 60, **({"alpha": 0.3} if name == "der" else {})}  # DER's alpha 1 diverges on random pixels
    if field == "class_balanced":
        strategy["policy"], field = "class_balanced", "replay_buffer"
    config = parse_config({
        "scenario": {"dataset": "cifar10", "root": str(tmp_path), "n_tasks": 2}, "model": {"name": "mlp", "hidden": [32]},
        "strategy": strategy, "train": {"batch_size": 20, "epochs_per_task": 2, "augment": "default"},
        "eval": {"every": 10}})
    path = tmp_path / "resume.ckpt"
    assert train_run(config, ListSink(), checkpoint=path).status == "finished"
    scenario = build_scenario(config.scenario)
    fresh = STRATEGIES[name](**config.strategy_hparams)
    net = build_model(config.model, scenario.input_shape, scenario.n_classes)
    module = ContinualModule(net, fresh, config.train, scenario.class_mask, scenario.n_classes)
    with open(path, "rb") as f:
        pickle.load(f)  # the header
        blob = pickle.load(f)["strategy"]
    state = checkpoints.strategy_state(blob, checkpoints.live_objects(module, scenario, fresh.experiences(scenario)))
    memory = state[field]
    raw = scenario.tasks[0].train.x()  # task 1's 100 images, normalised, not augmented
    assert len(memory) == 60 and state["augment"].names == ("crop", "flip")
    same = (memory.x[:, None] == raw[None]).flatten(2).all(2)  # (held, task 1's samples)
    assert same.any(1).all()  # every held input is one of them, exactly
    assert torch.equal(raw[same.float().argmax(1)], memory.x)


# ---- A-GEM, GEM ---------------------------------------------------------------------------------------
def test_agem_update_never_points_against_the_memory_gradient():
    scenario, (first, second) = experiences(2)
    agem, module = make("agem", scenario, replay_batch_size=64)
    train(agem, module, first, 20)
    assert len(agem.memory) == 100  # 200 / 2 tasks
    projected = 0
    for x, y, t in batches(second, 15, seed=1):
        module.zero_grad()
        module.loss(x, y, t).backward()
        g = flat_grad(module).clone()
        state = agem.generator.get_state()
        agem.after_backward(module, (x, y, t))
        final = flat_grad(module).clone()
        agem.generator.set_state(state)
        ref = memory_gradient(module, *agem.memory.sample(64))
        if g @ ref < 0:
            projected += 1
            assert abs(float(final @ ref)) < 1e-4 * float(ref @ ref)  # projected onto the boundary
        else:
            assert torch.equal(final, g)
        assert final @ ref >= -1e-5
        torch.optim.SGD(module.parameters(), lr=0.05).step()  # apply the (projected) update
    assert projected > 0  # the case that matters happened


@pytest.mark.parametrize("setting", ["class", "task"])
def test_gem_update_has_non_negative_dot_products_with_every_past_task(setting):
    scenario = build_scenario(ScenarioConfig(n_tasks=3, setting=setting))
    exps = [Experience(k + 1, task.train_x, task.train_y, torch.full_like(task.train_y, k))
            for k, task in enumerate(scenario.tasks)]
    gem, module = make("gem", scenario, buffer_size=90, margin=0.0)
    train(gem, module, exps[0], 15)
    train(gem, module, exps[1], 15)
    assert [len(g[0]) for g in gem.memory.groups()] == [30, 30]
    projected = 0
    for x, y, t in batches(exps[2], 10, seed=2):
        module.zero_grad()
        module.loss(x, y, t).backward()
        g = flat_grad(module).clone()
        gem.after_backward(module, (x, y, t))
        final = flat_grad(module).clone()
        refs = torch.stack([memory_gradient(module, *task) for task in gem.memory.groups()])
        if (refs @ g < 0).any():
            projected += 1
            # the QP's answer: the closest vector to g (up to the solver's eps) with every dot product >= 0
            assert (refs @ final >= -1e-3 * refs.norm(dim=1) * final.norm()).all()
            assert (final - g).norm() < g.norm() * 1.5
        else:
            assert torch.equal(final, g)
        for p, v in zip(module.parameters(), final.split([p.numel() for p in module.parameters()])):
            p.grad = v.view_as(p).clone()
        torch.optim.SGD(module.parameters(), lr=0.05).step()
    assert projected > 0


def test_gem_margin_pushes_past_the_constraint():
    scenario, _ = experiences(2)
    gem, _ = make("gem", scenario, margin=0.5)
    G = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g = torch.tensor([-1.0, 2.0])
    # the violated constraint is met with equality; the margin (a lower bound on the dual variables)
    # adds half of the satisfied constraint's gradient: [0, 2] + 0.5 [0, 1]
    assert torch.allclose(gem.project(g, G), torch.tensor([0.0, 2.5]), atol=1e-2)
    gem.margin = 0.0
    assert torch.allclose(gem.project(g, G), torch.tensor([0.0, 2.0]), atol=1e-2)  # the plain projection


# ---- GDumb, iCaRL, EMA --------------------------------------------------------------------------------
def test_gdumb_trains_from_scratch_on_its_memory_alone_for_its_own_epochs():
    scenario, (first, second) = experiences(2)
    gdumb, module = make("gdumb", scenario, buffer_size=100, epochs=7)
    initial = copy.deepcopy(module.net.state_dict())
    train(gdumb, module, first, 5)
    gdumb.before_task(module, second)
    assert all(torch.equal(v, initial[k]) for k, v in module.net.state_dict().items())  # from scratch
    assert torch.bincount(gdumb.memory.y).tolist() == [10] * 10
    data = gdumb.train_data(second)  # what the loop's epochs go over: the memory, not the stream
    assert len(data) == 100 and torch.equal(data.y, gdumb.memory.y) and torch.equal(data.x, gdumb.memory.x)
    train_cfg = TrainConfig(batch_size=32, epochs_per_task=2)
    assert gdumb.epochs_per_experience(train_cfg) == 7  # its own budget, not the run's epochs_per_task
    assert gdumb.epoch_sizes([first, second]) == [min(100, len(first)), 100]
    assert gdumb.planned_steps([first, second], train_cfg) == 7 * (math.ceil(min(100, len(first)) / 32) + 4)


def test_gdumb_run_takes_epochs_over_the_memory_and_improves_with_them(store):
    """Through the run: its steps are epochs x memory batches a task, and more epochs fit the memory."""
    accs = []
    for epochs in (1, 30):
        config = small_config("gdumb", strategy={"name": "gdumb", "buffer_size": 100, "epochs": epochs})
        run_id = run_in_process(store, config)
        status, steps, total = store.sql("SELECT status, last_step, total_steps FROM runs WHERE id = ?", [run_id])[0]
        assert status == "finished" and steps == total == epochs * 2 * math.ceil(100 / 32)
        assert estimate(config).steps == total  # the cost estimate made before queueing counts the same
        accs.append(summaries(store, [run_id], only=["acc"])[0]["acc"])
    assert accs[1] > accs[0] + 0.1, accs


def test_icarl_herding_approaches_the_class_mean():
    torch.manual_seed(0)
    features = F.normalize(torch.randn(60, 8) + torch.tensor([2.0] + [0.0] * 7), dim=1)
    mean = features.mean(0)
    picked = herding(features, 10)
    assert len(set(picked.tolist())) == 10
    assert picked[0] == (features - mean).norm(dim=1).argmin()  # the first pick: the closest to the mean
    for k in range(1, 11):  # each running mean is the best among all one-sample extensions of the last
        prev, best = features[picked[:k - 1]].sum(0), features[picked[:k]].mean(0)
        others = [i for i in range(60) if i not in picked[:k - 1].tolist()]
        assert (mean - best).norm() <= min((mean - (prev + features[i]) / k).norm() for i in others) + 1e-6
    random_error = torch.stack([(features[torch.randperm(60)[:10]].mean(0) - mean).norm() for _ in range(200)])
    assert (features[picked].mean(0) - mean).norm() < random_error.quantile(0.05)
    assert sorted(herding(features, 100).tolist()) == list(range(60))  # m beyond the class: all of it


def test_icarl_keeps_balanced_exemplars_and_predicts_the_nearest_class_mean():
    scenario, (first, second) = experiences(2)
    icarl, module = make("icarl", scenario, memory_size=50)
    train(icarl, module, first, 10)
    assert {c: len(v) for c, v in icarl.exemplars.items()} == {c: 10 for c in range(5)}
    icarl.before_task(module, second)
    nme = icarl.eval_model(module)
    x = torch.cat([first.x[:40], second.x[:40]])
    with torch.no_grad():
        scores = nme(x)
        f = F.normalize(module.features(x), dim=1)
        means = {}
        for c in range(10):  # old classes: exemplars; new classes (no exemplars yet): their training data
            data = icarl.exemplars[c] if c < 5 else second.x[second.y == c]
            means[c] = F.normalize(F.normalize(module.features(data), dim=1).mean(0), dim=0)
        distance = torch.stack([(f - means[c]).pow(2).sum(1) for c in range(10)], 1)
    assert torch.equal(scores.argmax(1), distance.argmin(1))
    assert torch.allclose(scores, -distance, atol=1e-5)
    train_more = list(batches(second, 5))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
    for batch in train_more:
        icarl.observe(module, batch, optimizer, lambda loss: loss.backward())
    icarl.after_task(module, second)
    assert {c: len(v) for c, v in icarl.exemplars.items()} == {c: 5 for c in range(10)}


def test_icarl_distils_the_old_model_on_old_classes():
    scenario, (first, second) = experiences(2)
    icarl, module = make("icarl", scenario)
    train(icarl, module, first, 5)
    icarl.before_task(module, second)
    x, y, t = next(batches(second, 1))
    state = icarl.generator.get_state()
    loss = icarl.training_loss(module, x, y, t)
    icarl.generator.set_state(state)
    idx = torch.randint(len(icarl.memory_y), (32,), generator=icarl.generator)
    xs, ys = torch.cat([x, icarl.memory_x[idx]]), torch.cat([y, icarl.memory_y[idx]])
    logits = module(xs)
    target = F.one_hot(ys, 10).float()
    target[:, :5] = torch.sigmoid(logits[:, :5]).detach()  # the teacher equals the model at the task's start
    assert torch.isclose(loss, F.binary_cross_entropy_with_logits(logits, target))


def test_icarl_is_class_incremental_only_and_says_so():
    with pytest.raises(ConfigError) as err:
        parse_config({"strategy": {"name": "icarl"}, "scenario": {"setting": "task"}})
    assert "icarl" in str(err.value) and "class" in str(err.value)


def test_ema_weights_equal_the_hand_computed_average():
    scenario, (first, _) = experiences(2)
    ema, module = make("ema", scenario, decay=0.9, distill_weight=0.0)
    ema.before_task(module, first)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    expected = None
    for n, batch in enumerate(batches(first, 25)):
        ema.observe(module, batch, optimizer, lambda loss: loss.backward())
        w = [p.detach().clone() for p in module.net.parameters()]
        decay = min(0.9, 1 - 1 / (n + 1))
        expected = w if expected is None else [decay * e + (1 - decay) * wi for e, wi in zip(expected, w)]
    assert all(torch.allclose(e, p, atol=1e-6) for e, p in zip(expected, ema.ema.parameters()))
    assert ema.eval_model(module) is ema.ema
    assert not all(torch.allclose(e, p) for e, p in zip(expected, module.net.parameters()))


def test_ema_default_decay_follows_the_task_length():
    """A fixed 0.99 spans 69 steps, more than a Split-Digits task (45): its average then lags a task
    behind. By default the half-life is a fraction of each task's steps, whatever the task's length."""
    scenario, (first, second) = experiences(2)
    short = Experience(2, second.x[:64], second.y[:64], second.t[:64])
    ema, module = make("ema", scenario)
    halves = []
    for experience in (first, short):
        ema.before_task(module, experience)
        steps = module.train_cfg.epochs_per_task * math.ceil(len(experience.y) / module.train_cfg.batch_size)
        halves.append(math.log(0.5) / math.log(ema.task_decay))  # the half-life in steps
        assert halves[-1] == pytest.approx(0.1 * steps, rel=1e-6)
    assert halves[0] > 5 * halves[1]  # the shorter task, the shorter memory
    fixed, module = make("ema", scenario, decay=0.99)
    fixed.before_task(module, first)
    assert fixed.task_decay == 0.99  # a decay given keeps its meaning (runs stored with one)


def test_ema_distillation_pulls_towards_the_slow_weights():
    scenario, (first, _) = experiences(2)
    ema, module = make("ema", scenario, distill_weight=3.0)
    ema.before_task(module, first)
    x, y, t = next(batches(first, 1))
    assert torch.isclose(ema.training_loss(module, x, y, t), module.loss(x, y, t))  # the EMA equals the model
    with torch.no_grad():
        module.head.bias += 1.0
    assert torch.isclose(ema.training_loss(module, x, y, t), module.loss(x, y, t) + 3.0)  # MSE of a shift of 1


# ---- end to end -----------------------------------------------------------------------------------------
CASES = [("replay", {"policy": "class_balanced"}), ("replay", {"policy": "experience_balanced"}),
         ("der", {}), ("derpp", {}), ("er_ace", {}), ("agem", {}), ("gem", {}), ("gdumb", {}),
         ("icarl", {}), ("ema", {"decay": 0.9}), ("ema", {"decay": 0.9, "buffer_size": 100})]


@pytest.mark.parametrize("name, hparams", CASES, ids=[f"{n}-{'-'.join(map(str, h.values()))}" for n, h in CASES])
def test_trains_end_to_end_into_the_store_and_repeats_exactly(store, name, hparams):
    config = small_config(name, strategy={"name": name, **hparams})
    run_id = run_in_process(store, config)
    status, total, last = store.sql("SELECT status, total_steps, last_step FROM runs WHERE id = ?", [run_id])[0]
    assert status == "finished" and last == total > 0
    R = load_run(store, run_id).R
    assert R.shape == (3, 2) and not np.isnan(R).any()
    assert R[1, 0] > 0.6 and R[2].mean() > 0.45  # learned the first task; both within reach at the end
    rows = "SELECT step, task, metric, value FROM metrics WHERE run_id = ? ORDER BY ALL"
    again = run_in_process(store, config)
    assert store.sql(rows, [again]) == store.sql(rows, [run_id])


def test_every_rehearsal_strategy_names_its_paper():
    for name in ("replay", "der", "derpp", "er_ace", "agem", "gem", "gdumb", "icarl", "ema"):
        assert STRATEGIES[name].paper and STRATEGIES[name].hparams, name


# ---- van de Ven's memory per class for A-GEM and iCaRL; iCaRL's exemplars joined to the task's dataset ----
@pytest.mark.parametrize("name, setting", [("agem", "class"), ("agem", "domain"), ("icarl", "class")])
def test_agem_and_icarl_keep_a_memory_per_class_that_grows_with_the_classes(name, setting):
    scenario = build_scenario(ScenarioConfig(n_tasks=2, setting=setting))
    strategy, module = make(name, scenario, policy="per_class", memory_per_class=12, buffer_size=10)
    for experience in strategy.experiences(scenario):
        train(strategy, module, experience, 3)
        y, t = (strategy.memory_y, strategy.memory_t) if name == "icarl" else (strategy.memory.y, strategy.memory.t)
        for k, task in enumerate(scenario.tasks[:experience.task]):  # 12 of each class of each task seen
            assert torch.bincount(y[t == k], minlength=10)[task.classes].tolist() == [12] * len(task.classes)
        assert len(y) == 12 * sum(len(task.classes) for task in scenario.tasks[:experience.task])
    fixed, module = make(name, scenario, buffer_size=10, memory_size=10)  # the default: a fixed total
    for experience in fixed.experiences(scenario):
        train(fixed, module, experience, 3)
    assert len(fixed.memory_y if name == "icarl" else fixed.memory) == 10 if name == "icarl" else 5


def test_icarl_joins_its_exemplars_to_the_task_dataset():
    scenario = build_scenario(ScenarioConfig(n_tasks=3))
    icarl, module = make("icarl", scenario, memory_size=40, exemplars_joined_to="dataset")
    experiences_ = icarl.experiences(scenario)
    planned = icarl.epoch_sizes(experiences_)
    for experience in experiences_:
        icarl.before_task(module, experience)
        data = icarl.train_data(experience)
        assert len(data) == planned[experience.task - 1]  # the plan knew the exemplars' count
        if experience.task == 1:
            assert data is experience
        else:  # the task's samples, then every exemplar once, with its class's task
            seen = len(icarl.exemplars)  # the classes before this task, 40 // seen exemplars each
            assert len(data) == len(experience) + len(icarl.memory_y) == len(experience) + 40 // seen * seen
            assert torch.equal(data.x[len(experience):], icarl.memory_x) and torch.equal(data.y[len(experience):], icarl.memory_y)
            assert set(data.t[len(experience):].tolist()) == set(range(experience.task - 1))
            x, y, t = data.x[:16], data.y[:16], data.t[:16]
            state = icarl.generator.get_state()
            loss = icarl.training_loss(module, x, y, t)
            assert torch.equal(icarl.generator.get_state(), state)  # no batch of exemplars drawn
            logits = module(x)[:, icarl.order]
            target = F.one_hot(icarl.position[y], len(icarl.order)).float()
            target[:, :icarl.n_old] = torch.sigmoid(icarl.teacher(x)[:, icarl.order[:icarl.n_old]])
            assert torch.isclose(loss, F.binary_cross_entropy_with_logits(logits, target))
        optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
        for batch in batches(data, 3):
            icarl.observe(module, batch, optimizer, lambda loss: loss.backward())
        icarl.after_task(module, experience)
    batch_mode, module = make("icarl", scenario, memory_size=40)  # the default draws a batch of them
    assert batch_mode.epoch_sizes(experiences_) == [len(e) for e in experiences_]
    train(batch_mode, module, experiences_[0], 3)
    batch_mode.before_task(module, experiences_[1])
    assert batch_mode.train_data(experiences_[1]) is experiences_[1]


def test_the_cli_sweeps_agem_and_icarl_with_a_memory_per_class_and_refuses_a_bad_one(tmp_path):
    import json
    import subprocess
    import sys

    from store import Store
    from tests.conftest import ROOT

    cli = lambda *args: subprocess.run([sys.executable, "-m", "engine", *map(str, args), "--db", tmp_path / "lab.duckdb"],  # noqa: E731
                                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    base = {"scenario": {"n_tasks": 3}, "model": {"hidden": [32]}, "train": {"epochs_per_task": 1}, "eval": {"every": 50},
            "strategy": {"name": "agem", "policy": "per_class"}}
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps({"name": "per-class", "base": base, "seeds": [0], "grid": [
        {"strategy.name": ["agem"], "strategy.memory_per_class": [4, 20]},
        {"strategy.name": ["icarl"], "strategy.memory_per_class": [4, 20], "strategy.exemplars_joined_to": ["dataset"]}]}))
    proc = cli("sweep", sweep, "--parallel", 1)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    store = Store(tmp_path / "lab.duckdb", serve=False)
    try:
        runs = [(json.loads(c)["strategy"], s, last, total) for c, s, last, total in
                store.sql("SELECT config, status, last_step, total_steps FROM runs ORDER BY id")]
    finally:
        store.close()
    assert [(s["name"], s["policy"], s["memory_per_class"]) for s, *_ in runs] == [
        ("agem", "per_class", 4), ("agem", "per_class", 20), ("icarl", "per_class", 4), ("icarl", "per_class", 20)]
    assert all(status == "finished" and last == total for _, status, last, total in runs)
    # iCaRL's joined exemplars lengthen tasks 2 and 3 by the memory's batches: 4 or 20 a class seen
    assert runs[3][3] > runs[2][3] > runs[0][3] == runs[1][3]
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({**base, "strategy": {"name": "icarl", "policy": "per_class", "memory_per_class": 0}}))
    proc = cli("run", bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "strategy.memory_per_class = 0: must be greater than or equal to 1" in proc.stdout + proc.stderr
