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


# ---- scenarios over images (files in CIFAR-10's format, written by tests/test_datasets.py's writer) ----
def cifar_scenario(tmp_path, **cfg):
    from tests.test_datasets import write_cifar10

    if not (tmp_path / "cifar-10-batches-py").exists():
        write_cifar10(tmp_path)
    return build_scenario(ScenarioConfig(dataset="cifar10", root=str(tmp_path), **cfg))


def test_split_cifar_tasks_are_index_views_of_one_uint8_tensor_normalised_per_batch(tmp_path):
    from engine.scenarios import load_dataset

    s = cifar_scenario(tmp_path, setting="task", n_tasks=5)
    assert s.input_shape == (3, 32, 32) and [t.classes for t in s.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    data = load_dataset("cifar10", 0, 0.0, str(tmp_path))
    stored = data.train_x.__array_interface__["data"][0]
    # no per-task copies: every task's training samples are the one uint8 array the reader made
    assert {t.train.pool.x.data_ptr() for t in s.tasks} == {stored}
    assert all(t.train.pool.x.dtype == torch.uint8 for t in s.tasks)
    task = s.tasks[2]
    assert set(task.train_y.tolist()) == {4, 5} and set(task.test_y.tolist()) == {4, 5}
    raw = torch.from_numpy(data.test_x)[task.test.index].float() / 255
    mean, std = torch.tensor(data.mean).view(3, 1, 1), torch.tensor(data.std).view(3, 1, 1)
    assert torch.allclose(task.test_x, (raw - mean) / std, atol=1e-6)
    assert s.class_mask.shape == (5, 10) and s.augment == ("crop", "flip")


def test_permuted_images_share_one_pixel_permutation_across_channels_first_task_unpermuted(tmp_path):
    s = cifar_scenario(tmp_path, setting="domain", domain="permuted", n_tasks=3)
    first, second = s.tasks[0].test_x, s.tasks[1].test_x
    assert s.tasks[0].classes == list(range(10)) and torch.equal(s.tasks[0].test_y, s.tasks[1].test_y)
    assert not torch.equal(first, second)
    perm = s.tasks[0].test.pool.shift.perms[1]
    assert torch.equal(second.flatten(2), first.flatten(2)[:, :, perm])
    unpermuted = build_scenario(ScenarioConfig(dataset="cifar10", root=str(tmp_path), setting="class", n_tasks=1))
    assert torch.equal(first, unpermuted.tasks[0].test_x)
    assert s.tasks[2].train.pool is s.tasks[0].train.pool  # domains share the storage too


def test_rotated_tasks_turn_each_image_by_their_angle(tmp_path):
    s = cifar_scenario(tmp_path, setting="domain", domain="rotated", n_tasks=2)  # task 2: 90 degrees
    upright, turned = s.tasks[0].test_x, s.tasks[1].test_x
    assert torch.allclose(turned, torch.rot90(upright, 1, dims=(2, 3)), atol=1e-4)  # counter-clockwise
    assert not torch.allclose(turned, upright, atol=1e-2)
    four = cifar_scenario(tmp_path, setting="domain", domain="rotated", n_tasks=4)  # 0, 45, 90, 135
    assert torch.allclose(four.tasks[2].test_x, turned, atol=1e-4)


def test_batches_keep_the_order_of_the_old_tensor_batches_and_move_and_augment_per_batch(tmp_path):
    from engine.strategies import STRATEGIES

    digits = build_scenario(ScenarioConfig(setting="domain", n_tasks=2))
    experience = STRATEGIES["naive"]().experiences(digits)[1]
    x, y, t = experience.x, experience.y, experience.t
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(3))
    got = list(experience.batches(32, torch.Generator().manual_seed(3)))
    assert len(got) == len(experience.batches(32, torch.Generator())) == -(-len(y) // 32)
    for i, (bx, by, bt) in enumerate(got):
        idx = order[i * 32:(i + 1) * 32]
        assert torch.equal(bx, x[idx]) and torch.equal(by, y[idx]) and torch.equal(bt, t[idx])
    assert (t == 1).all()
    images = STRATEGIES["naive"]().experiences(cifar_scenario(tmp_path, n_tasks=2))[0]
    plain = next(iter(images.batches(16, torch.Generator().manual_seed(0))))[0]
    augmented = next(iter(images.batches(16, torch.Generator().manual_seed(0), "cpu", ("crop", "flip"))))[0]
    assert plain.shape == augmented.shape == (16, 3, 32, 32) and not torch.equal(plain, augmented)
    # augmenting the normalised batch (padding with black as normalised) is exactly torchvision's order,
    # pixels in [0, 1] padded with zeros, cropped and flipped, then normalised; the raw batch rides along
    from engine.augment import augment

    batch = next(iter(images.batches(16, torch.Generator().manual_seed(0), "cpu", ("crop", "flip"))))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:16]
    pool, samples = images.samples.pool, images.samples
    generator = torch.Generator().manual_seed(0)
    torch.randperm(len(images), generator=generator)  # the batches' order, drawn first
    pixels = augment(pool.x[samples.index[order]].float().mul_(1 / 255.0), ("crop", "flip"), generator)
    assert torch.equal(batch[0], pool.normalise(pixels)) and torch.equal(batch.raw, plain)


def test_joint_training_joins_tasks_without_copying_their_images(tmp_path):
    from engine.strategies import STRATEGIES

    s = cifar_scenario(tmp_path, n_tasks=5)
    (everything,) = STRATEGIES["joint"]().experiences(s)
    assert len(everything) == 100 and everything.samples.pool is s.tasks[0].train.pool
    assert sorted(everything.t.unique().tolist()) == [0, 1, 2, 3, 4] and everything.task == 5
    assert torch.equal(everything.x[:20], s.tasks[0].train_x)
    permuted = cifar_scenario(tmp_path, setting="domain", n_tasks=3)  # a batch mixes the tasks' permutations
    (mixed,) = STRATEGIES["joint"]().experiences(permuted)
    assert torch.equal(mixed.x, torch.cat([t.train_x for t in permuted.tasks]))


def test_a_scenario_moves_to_a_device_once_and_its_experiences_follow(tmp_path):
    from engine.strategies import STRATEGIES

    s = cifar_scenario(tmp_path, n_tasks=2)
    experience = STRATEGIES["naive"]().experiences(s)[1]
    s.to("meta")  # a device with no data: only where tensors live is checked
    assert s.tasks[0].train.pool.x.device.type == "meta" and s.tasks[1].test_x.device.type == "meta"
    x, y, t = next(iter(experience.batches(8, torch.Generator().manual_seed(0), "meta", ("crop", "flip"))))
    assert x.device.type == y.device.type == t.device.type == "meta" and x.shape == (8, 3, 32, 32)


def test_domain_split_relabels_each_task_by_the_place_in_it_with_one_head_of_that_size():
    """van de Ven et al.'s domain-incremental Split MNIST: the class split, each pair read "first or second"."""
    split = build_scenario(ScenarioConfig(setting="domain", domain="split", n_tasks=5))
    classes = build_scenario(ScenarioConfig(setting="class", n_tasks=5))
    assert split.n_classes == 2 and split.class_mask is None and split.task_masks is None
    for s, c in zip(split.tasks, classes.tasks):
        assert s.classes == [0, 1]
        assert torch.equal(s.train_x, c.train_x) and torch.equal(s.test_x, c.test_x)  # the inputs are not changed
        assert torch.equal(s.train_y, c.train_y % 2) and torch.equal(s.test_y, c.test_y % 2)
    shuffled = build_scenario(ScenarioConfig(setting="domain", domain="split", n_tasks=2, class_seed=3))
    order = build_scenario(ScenarioConfig(setting="class", n_tasks=2, class_seed=3))
    for s, c in zip(shuffled.tasks, order.tasks):  # the place in the task, whatever the class order
        assert s.train_y.tolist() == [c.classes.index(y) for y in c.train_y.tolist()]
    assert shuffled.n_classes == 5


def test_domain_split_refuses_classes_that_do_not_divide_in_one_line():
    import pytest

    from engine.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"setting": "domain", "domain": "split", "n_tasks": 3}})
    assert err.value.problems == ["scenario.n_tasks = 3: scenario.domain = 'split' needs as many classes in every "
                                  "task: the 10 classes of digits do not divide by 3"]
    parse_config({"scenario": {"setting": "domain", "domain": "permuted", "n_tasks": 3}})  # the others need not


def test_a_domain_split_run_from_the_cli_has_a_two_unit_head_and_learns_above_chance(tmp_path):
    import re
    import subprocess
    import sys

    from store import Store
    from store.metrics.summary import summary
    from tests.conftest import ROOT

    config = tmp_path / "split.yaml"
    config.write_text("name: domain split\nscenario: {setting: domain, domain: split, n_tasks: 5}\n"
                      "model: {hidden: [64]}\ntrain: {epochs_per_task: 1}\neval: {every: 5}\n")
    db = tmp_path / "lab.duckdb"
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(config), "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_id = int(re.match(r"run (\d+)", proc.stdout).group(1))
    store = Store(db, read_only=True)
    try:
        weights = torch.load(store.artifacts_dir(run_id) / "after-task-5.pt")
        s = summary(store, run_id)
    finally:
        store.close()
    head = [v for k, v in weights.items() if k.endswith("weight")][-1]
    assert head.shape == (2, 64)
    assert s["acc"] > 0.7  # chance is 0.5 (measured 0.862)
