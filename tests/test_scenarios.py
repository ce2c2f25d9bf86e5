import numpy as np
import torch

from engine.config import ScenarioConfig
from engine.datasets import DATASETS
from engine.scenarios import MASKED, build_scenario


def test_digits_split_is_stratified_fixed_by_seed_and_scaled_on_train_only():
    a, b, c = DATASETS["digits"](seed=0), DATASETS["digits"](seed=0), DATASETS["digits"](seed=1)
    assert np.array_equal(a.train_x, b.train_x) and not np.array_equal(a.train_x, c.train_x)
    assert len(a.train_y) + len(a.test_y) == 1797 and a.n_classes == 10
    # stratified: every class has about a quarter of its samples held out
    for k in range(10):
        share = (a.test_y == k).sum() / ((a.test_y == k).sum() + (a.train_y == k).sum())
        assert abs(share - 0.25) < 0.02
    # standardized with the training part's statistics: train columns exactly mean 0, test only close
    varying = a.train_x.std(0) > 0
    assert np.allclose(a.train_x.mean(0), 0, atol=1e-5)
    assert np.allclose(a.train_x.std(0)[varying], 1, atol=1e-4)
    assert not np.allclose(a.test_x.mean(0)[varying], 0, atol=1e-3)


def test_class_incremental_cuts_disjoint_class_pairs_with_held_out_sets():
    s = build_scenario(ScenarioConfig(setting="class", n_tasks=5))
    assert [t.classes for t in s.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    for t in s.tasks:
        assert set(t.train_y.tolist()) == set(t.classes) == set(t.test_y.tolist())
    assert sum(len(t.test_y) for t in s.tasks) == len(DATASETS["digits"]().test_y)
    assert s.class_mask is None


def test_class_order_shuffled_by_a_seed_and_uneven_tasks():
    a = build_scenario(ScenarioConfig(n_tasks=5, class_seed=3))
    b = build_scenario(ScenarioConfig(n_tasks=5, class_seed=3))
    order = [c for t in a.tasks for c in t.classes]
    assert order == [c for t in b.tasks for c in t.classes]
    assert sorted(order) == list(range(10)) and order != list(range(10))
    three = build_scenario(ScenarioConfig(n_tasks=3))
    assert [len(t.classes) for t in three.tasks] == [4, 3, 3]


def test_task_incremental_masks_logits_to_the_tasks_classes():
    s = build_scenario(ScenarioConfig(setting="task", n_tasks=5))
    assert s.class_mask.shape == (5, 10)
    assert s.class_mask[1, 2] == 0 and s.class_mask[1, 3] == 0 and s.class_mask[1, 0] == MASKED
    assert (s.class_mask == 0).sum() == 10


def test_domain_incremental_permutes_pixels_per_task_with_all_classes():
    s = build_scenario(ScenarioConfig(setting="domain", n_tasks=3))
    first, second = s.tasks[0], s.tasks[1]
    assert first.classes == second.classes == list(range(10))
    assert torch.equal(first.train_y, second.train_y)
    assert not torch.equal(first.train_x, second.train_x)
    # the same pixels, in another order: sorted rows agree
    assert torch.equal(first.train_x.sort(1).values, second.train_x.sort(1).values)
    again = build_scenario(ScenarioConfig(setting="domain", n_tasks=3))
    assert torch.equal(again.tasks[2].test_x, s.tasks[2].test_x)


def test_a_part_of_the_sequence_trains_only_those_tasks():
    whole = build_scenario(ScenarioConfig(n_tasks=5))
    expert = build_scenario(ScenarioConfig(n_tasks=5, tasks=[3]))
    assert expert.n_tasks == 1 and expert.tasks[0].classes == whole.tasks[2].classes == [4, 5]
    assert torch.equal(expert.tasks[0].test_x, whole.tasks[2].test_x)
    masked = build_scenario(ScenarioConfig(setting="task", n_tasks=5, tasks=[2, 4]))
    assert masked.class_mask.shape == (2, 10) and (masked.class_mask[1, [6, 7]] == 0).all()


def test_tasks_outside_the_sequence_are_refused():
    import pytest
    from engine.config import ConfigError, parse_config
    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"n_tasks": 5, "tasks": [6]}})
    assert err.value.problems == ["scenario.tasks = [6]: every task must be from 1 to n_tasks = 5 (got 6)"]
