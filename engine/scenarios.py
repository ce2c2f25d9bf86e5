"""Cut a dataset into a sequence of tasks, in one of three settings (van de Ven et al., 2022):

- ``class``: class-incremental. Each task brings new classes; one head over all classes; the task id
  is not given at test time.
- ``task``: task-incremental. The same split by class, but the task id is known: the logits are
  masked to the task's own classes, in training and in evaluation.
- ``domain``: domain-incremental. Every task has all classes, its inputs shifted by the task's fixed
  transform (``scenario.domain``): ``permuted``, a pixel permutation (Permuted MNIST; the first task
  unpermuted; an image's channels share its pixels' permutation), or ``rotated``, a rotation by
  k x 180 / n_tasks degrees counter-clockwise for task k = 0, 1, ... (Rotated MNIST as in GEM,
  Lopez-Paz & Ranzato, 2017; bilinear, corners filled with black), or ``split``, van de Ven et al.'s
  domain-incremental Split MNIST: the classes shared out into tasks as in the class setting, each label
  relabelled to its place in its task (y mod classes-per-task with the class order 0, 1, 2, ...: "first
  or second" for pairs), one head of classes-per-task units; the inputs are not changed.
Each task keeps its own held-out evaluation set.

Nothing is copied per task: a dataset's split is one tensor (uint8 for images, float32 rows) in a
``Pool``, and a task holds indices into it (``Samples``). Normalisation, the domain transform and
augmentation happen per batch (``Batches``), or when a task's tensors are asked for (``x()``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from engine.augment import InputAugment
from engine.datasets import DATASET_INFO, DatasetError

MASKED = -1e9  # added to the logits of classes outside a task (task-incremental)


class DomainShift:
    """Task k's input transform (domain-incremental), applied to a batch given each sample's k."""

    def __init__(self, kind: str | None, sample_shape: tuple[int, ...], n_tasks: int, seed: int):
        self.kind = kind
        self.perms = self.angles = None
        if kind == "permuted":  # the digits' rows draw exactly as before: one generator, task 0 unpermuted
            rng = np.random.default_rng(seed)
            dim = math.prod(sample_shape[1:]) if len(sample_shape) == 3 else sample_shape[0]
            self.perms = torch.from_numpy(np.stack([np.arange(dim) if k == 0 else rng.permutation(dim)
                                                    for k in range(n_tasks)]))
        elif kind == "rotated":
            self.angles = torch.tensor([k * 180.0 / n_tasks for k in range(n_tasks)], dtype=torch.float64)

    def __call__(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        if self.kind is None:
            return x
        if self.kind == "permuted":
            flat = x if x.dim() == 2 else x.flatten(2)  # (B, D) rows or (B, C, H*W) pixels
            if len(domain) and bool((domain == domain[0]).all()):  # one task (the usual batch): one index
                out = flat[..., self.perms[int(domain[0])].to(x.device)]
            else:
                perm = self.perms.to(x.device)[domain.to(x.device)]  # (B, D)
                out = flat.gather(-1, perm if x.dim() == 2 else perm[:, None, :].expand_as(flat))
            return out.view(x.shape)
        theta = self.angles[domain.cpu()] * (math.pi / 180)
        cos, sin = theta.cos(), theta.sin()
        # affine_grid maps output to input coordinates (x right, y down): the inverse rotation
        matrix = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                              torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1).to(x.device, x.dtype)
        grid = torch.nn.functional.affine_grid(matrix, list(x.shape), align_corners=False)
        return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Pool:
    """One split of a dataset as one tensor, shared by every task; ``to(device)`` moves it once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std, shift: DomainShift):
        self.x, self.y, self.shift = x, y, shift
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def to(self, device) -> "Pool":
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def prepare(self, raw: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Raw samples -> the network's input before augmentation: pixels to [0, 1], the task's domain
        shift, then normalisation (images); rows are already standardised."""
        x = raw.to(torch.float32, copy=True)  # a copy of its own: the in-place steps below never touch the pool
        if raw.dtype == torch.uint8:
            x.mul_(1 / 255.0)
        return self.normalise(self.shift(x, domain))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))
        return x

    def augmenter(self, names: tuple[str, ...]) -> InputAugment:
        """``names`` on this pool's prepared inputs: crops padded with black as normalised here, which
        equals padding [0, 1] pixels with zeros before normalising."""
        black = None if self.mean is None else self.normalise(torch.zeros(1, len(self.mean), 1, 1)).view(-1)
        return InputAugment(names, black)


@dataclass
class Samples:
    """Some samples of a pool, by index: nothing is copied until asked for."""

    pool: Pool
    index: torch.Tensor   # int64 positions in the pool
    domain: torch.Tensor  # int64, each sample's domain-shift task (may be an expanded scalar)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def y(self) -> torch.Tensor:
        return self.pool.y[self.index.to(self.pool.y.device)]

    def x(self) -> torch.Tensor:
        """All of them, normalised: a new tensor on each call (keep it if you need it twice)."""
        return self.take()[0]

    def take(self, rows: torch.Tensor | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at ``rows`` (positions in this selection; None: all), as (x, y) on ``device``,
        not augmented: the raw samples move (uint8 for images: 4x less than floats), then are prepared there."""
        index = self.index if rows is None else self.index[rows]
        domain = self.domain if rows is None else self.domain[rows]
        at = self.pool.x.device
        raw, y = self.pool.x[index.to(at)], self.pool.y[index.to(self.pool.y.device)]
        if device is not None:
            raw, y = raw.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return self.pool.prepare(raw, domain), y

    @staticmethod
    def cat(parts: list["Samples"]) -> "Samples":
        if any(p.pool is not parts[0].pool for p in parts):
            raise ValueError("samples of different pools cannot be joined")
        return Samples(parts[0].pool, torch.cat([p.index for p in parts]), torch.cat([p.domain for p in parts]))


class Batch(tuple):
    """One training step's (x, y, t); ``raw``: its inputs before augmentation (``x`` itself when
    nothing augments), which rehearsal methods store (Mammoth's ``not_aug_inputs``)."""

    def __new__(cls, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, raw: torch.Tensor | None = None):
        batch = super().__new__(cls, (x, y, t))
        batch.raw = x if raw is None else raw
        return batch


class Batches:
    """Shuffled mini-batches (one pass is one epoch; ``len`` is the batches per epoch) of an
    experience: from its samples (prepared per batch on ``device``) or from plain tensors. A
    DataLoader's per-sample collate would cost more than the step itself at the embedded sizes. The
    order is ``torch.randperm`` from ``generator``, as it always was, so a seed keeps its batches;
    augmentation draws from it too. Each is a ``Batch``, its inputs before augmentation at hand."""

    def __init__(self, experience, batch_size: int, generator: torch.Generator, device=None,
                 augment: tuple[str, ...] = ()):
        self.experience, self.batch_size, self.generator = experience, batch_size, generator
        self.device, self.augment = device, tuple(augment)
        samples = experience.samples
        self.augmenter = samples.pool.augmenter(self.augment) if samples is not None else InputAugment(self.augment)

    def __len__(self) -> int:
        return math.ceil(len(self.experience) / self.batch_size)

    def __iter__(self):
        e = self.experience
        order = torch.randperm(len(e), generator=self.generator)
        for i in range(0, len(order), self.batch_size):
            rows = order[i:i + self.batch_size]
            if e.samples is not None:
                raw, y = e.samples.take(rows, self.device)
            else:
                raw, y = e.x[rows.to(e.x.device)], e.y[rows.to(e.y.device)]
            t = e.t[rows.to(e.t.device)]
            if self.device is not None:
                raw, y, t = raw.to(self.device), y.to(self.device), t.to(self.device)
            yield Batch(self.augmenter(raw, self.generator), y, t, raw)


@dataclass
class TaskData:
    classes: list[int]
    train: Samples
    test: Samples

    @property
    def train_x(self) -> torch.Tensor:  # materialised on each access
        return self.train.x()

    @property
    def train_y(self) -> torch.Tensor:
        return self.train.y

    @property
    def test_x(self) -> torch.Tensor:  # materialised on each access
        return self.test.x()

    @property
    def test_y(self) -> torch.Tensor:
        return self.test.y


@dataclass
class Scenario:
    dataset: str
    setting: str
    n_classes: int
    input_shape: tuple[int, ...]  # one sample: (features,) or (C, H, W)
    tasks: list[TaskData]
    # (n_tasks, n_classes) additive mask for task-incremental, None otherwise
    class_mask: torch.Tensor | None = None
    augment: tuple[str, ...] = ()  # the dataset's suggested training augmentations

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_masks(self) -> torch.Tensor | None:
        """(n_tasks, n_classes) additive masks that keep each task's own classes: what a class-incremental
        run's logits get at test time for Mammoth's Task-IL figure; None in the domain setting."""
        if self.setting == "domain":
            return None
        mask = torch.full((len(self.tasks), self.n_classes), MASKED)
        for k, task in enumerate(self.tasks):
            mask[k, task.classes] = 0.0
        return mask

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    def augmenter(self, names: tuple[str, ...]) -> InputAugment:
        """``names`` on this scenario's prepared training inputs (``Pool.augmenter``)."""
        return self.tasks[0].train.pool.augmenter(names)

    def to(self, device) -> "Scenario":
        """Move the data (the pools, once) to ``device``; tasks and experiences follow."""
        for pool in {id(p): p for t in self.tasks for p in (t.train.pool, t.test.pool)}.values():
            pool.to(device)
        return self


def class_order(n_classes: int, class_seed: int | None) -> list[int]:
    if class_seed is None:
        return list(range(n_classes))
    return [int(c) for c in np.random.default_rng(class_seed).permutation(n_classes)]


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, seed: int, test_size: float, root: str | None = None):
    """A dataset split, kept for the next run of the same scenario in this process (a worker serves
    many runs). Scenarios share its arrays: it is never changed."""
    return DATASET_INFO[name].load(seed=seed, test_size=test_size, root=root)


def task_classes(n_classes: int, cfg) -> list[list[int]]:
    """The classes of each task, in order, as the class and task settings (and domain ``split``) share them out."""
    order = class_order(n_classes, cfg.class_seed)
    return [[int(c) for c in classes] for classes in np.array_split(np.array(order), cfg.n_tasks)]


def is_split_domain(cfg) -> bool:
    return cfg.setting == "domain" and cfg.domain == "split"


def split_domain_problem(dataset: str, n_classes: int, n_tasks: int) -> str | None:
    """Why domain ``split`` cannot cut ``n_classes`` classes into ``n_tasks`` tasks; None if it can."""
    if n_classes % n_tasks:
        return (f"scenario.domain = 'split' needs as many classes in every task: the {n_classes} classes of {dataset} "
                f"do not divide by {n_tasks}")
    return None


def build_scenario(cfg) -> Scenario:
    """``cfg`` is a validated ``ScenarioConfig``. Raises ``DatasetError`` (one line) when the files
    cannot be read or do not fit the scenario."""
    info = DATASET_INFO[cfg.dataset]
    root = str(info.location(cfg.root)) if not info.embedded else None
    seed, test_size = (0, 0.0) if info.own_split else (cfg.seed, cfg.test_size)  # one cache entry per file set
    data = load_dataset(cfg.dataset, seed, test_size, root)
    shape = tuple(data.train_x.shape[1:])
    if cfg.setting != "domain" and cfg.n_tasks > data.n_classes:
        raise DatasetError(f"scenario.n_tasks = {cfg.n_tasks}: must be at most {data.n_classes}: {cfg.dataset} has "
                           f"{data.n_classes} classes to share out")
    if is_split_domain(cfg) and (problem := split_domain_problem(cfg.dataset, data.n_classes, cfg.n_tasks)):
        raise DatasetError(f"scenario.n_tasks = {cfg.n_tasks}: {problem}")
    kind = cfg.domain if cfg.setting == "domain" and cfg.domain != "split" else None
    if kind == "rotated" and len(shape) != 3:
        raise DatasetError(f"scenario.domain = 'rotated': needs images; {cfg.dataset} has rows of {shape[0]} values")
    shift = DomainShift(kind, shape, cfg.n_tasks, cfg.seed)
    mean, std = (data.mean, data.std) if cfg.normalize else (None, None)
    groups = task_classes(data.n_classes, cfg)
    relabel = None
    if is_split_domain(cfg):  # each class's label becomes its place in its task
        relabel = np.zeros(data.n_classes, dtype=data.train_y.dtype)
        for classes in groups:
            relabel[classes] = np.arange(len(classes))
    pools = [Pool(torch.from_numpy(x), torch.from_numpy(y if relabel is None else relabel[y]), mean, std, shift)
             for x, y in ((data.train_x, data.train_y), (data.test_x, data.test_y))]
    n_labels = data.n_classes if relabel is None else len(groups[0])

    def samples(pool: Pool, index: torch.Tensor, k: int) -> Samples:
        return Samples(pool, index, torch.tensor(k).expand(len(index)))  # the domain: no per-sample copy

    tasks: list[TaskData] = []
    if cfg.setting == "domain" and not is_split_domain(cfg):
        every = [torch.arange(len(p.y)) for p in pools]  # shared by every task
        tasks = [TaskData(list(range(data.n_classes)), samples(pools[0], every[0], k), samples(pools[1], every[1], k))
                 for k in range(cfg.n_tasks)]
    else:
        for classes in groups:
            tr, te = (torch.from_numpy(np.flatnonzero(np.isin(y, classes))) for y in (data.train_y, data.test_y))
            labels = classes if relabel is None else list(range(n_labels))  # the labels the head sees
            tasks.append(TaskData(labels, samples(pools[0], tr, 0), samples(pools[1], te, 0)))
    if cfg.tasks is not None:  # a part of the sequence, e.g. one task for a single-task expert
        tasks = [tasks[t - 1] for t in cfg.tasks]
    scenario = Scenario(cfg.dataset, cfg.setting, n_labels, shape, tasks, None, info.augment)
    if cfg.setting == "task":
        scenario.class_mask = scenario.task_masks
    return scenario
