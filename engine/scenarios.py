"""Cut a dataset into a sequence of tasks, in one of three settings (van de Ven et al., 2022):

- ``class``: class-incremental. Each task brings new classes; one head over all classes; the task id
  is not given at test time.
- ``task``: task-incremental. The same split by class, but the task id is known: the logits are
  masked to the task's own classes, in training and in evaluation.
- ``domain``: domain-incremental (Permuted-Digits). Every task has all classes, its inputs under a
  fixed pixel permutation (the first task unpermuted).
Each task keeps its own held-out evaluation set.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from engine.datasets import DATASETS

MASKED = -1e9  # added to the logits of classes outside a task (task-incremental)


@dataclass
class TaskData:
    classes: list[int]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass
class Scenario:
    dataset: str
    setting: str
    n_classes: int
    input_dim: int
    tasks: list[TaskData]
    # (n_tasks, n_classes) additive mask for task-incremental, None otherwise
    class_mask: torch.Tensor | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)


def class_order(n_classes: int, class_seed: int | None) -> list[int]:
    if class_seed is None:
        return list(range(n_classes))
    return [int(c) for c in np.random.default_rng(class_seed).permutation(n_classes)]


@functools.lru_cache(maxsize=8)
def load_dataset(name: str, seed: int, test_size: float):
    """A dataset split, kept for the next run of the same scenario in this process (a worker serves
    many runs). Scenarios index into its arrays, which makes copies: it is never changed."""
    return DATASETS[name](seed=seed, test_size=test_size)


def build_scenario(cfg) -> Scenario:
    """``cfg`` is a validated ``ScenarioConfig``."""
    data = load_dataset(cfg.dataset, cfg.seed, cfg.test_size)
    as_x = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    as_y = lambda a: torch.from_numpy(a)  # noqa: E731
    tasks: list[TaskData] = []
    if cfg.setting == "domain":
        rng = np.random.default_rng(cfg.seed)
        dim = data.train_x.shape[1]
        for k in range(cfg.n_tasks):
            perm = np.arange(dim) if k == 0 else rng.permutation(dim)
            tasks.append(TaskData(list(range(data.n_classes)), as_x(data.train_x[:, perm]), as_y(data.train_y),
                                  as_x(data.test_x[:, perm]), as_y(data.test_y)))
    else:
        order = class_order(data.n_classes, cfg.class_seed)
        for classes in np.array_split(np.array(order), cfg.n_tasks):
            classes = [int(c) for c in classes]
            tr = np.isin(data.train_y, classes)
            te = np.isin(data.test_y, classes)
            tasks.append(TaskData(classes, as_x(data.train_x[tr]), as_y(data.train_y[tr]),
                                  as_x(data.test_x[te]), as_y(data.test_y[te])))
    if cfg.tasks is not None:  # a part of the sequence, e.g. one task for a single-task expert
        tasks = [tasks[t - 1] for t in cfg.tasks]
    class_mask = None
    if cfg.setting == "task":
        class_mask = torch.full((len(tasks), data.n_classes), MASKED)
        for k, task in enumerate(tasks):
            class_mask[k, task.classes] = 0.0
    return Scenario(cfg.dataset, cfg.setting, data.n_classes, data.train_x.shape[1], tasks, class_mask)
