"""What a strategy is: a name, the settings it supports, its hyperparameters and one training step.

A strategy is one short file (like Mammoth's ``models/der.py``). It declares ``hparams``; the config
validator and the launch form are both built from that declaration.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch

from engine.augment import InputAugment
from engine.core.hparams import HParam

if TYPE_CHECKING:  # pragma: no cover
    from engine.module import ContinualModule
    from engine.scenarios import Scenario

SETTINGS = ("class", "task", "domain")


class Experience:
    """What is trained between two task boundaries: ``task`` is the newest task it includes (task ids
    start at 1). Its data are either tensors (``x``, ``y``, ``t``) or, as the scenario builds them,
    ``samples`` of the dataset's one stored copy (``engine.scenarios.Samples``); then ``x`` is
    materialised (normalised, a new tensor) on each access: a strategy that needs the whole task
    (EWC's Fisher, a buffer filled at the task's end) takes it once. Training iterates ``batches``."""

    def __init__(self, task: int, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                 t: torch.Tensor | None = None, label: str = "", extra: dict | None = None, samples=None):
        if samples is None and (x is None or y is None):
            raise ValueError("an experience needs tensors x and y, or samples")
        self.task, self.label, self.extra, self.samples = task, label, extra if extra is not None else {}, samples
        self._x, self._y = x, y
        # the task id (0-based) of every sample, for task-incremental masking
        self.t = t if t is not None else torch.full((len(self),), task - 1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples) if self.samples is not None else len(self._y)

    @property
    def x(self) -> torch.Tensor:
        return self._x if self._x is not None else self.samples.x()

    @property
    def y(self) -> torch.Tensor:
        return self._y if self._y is not None else self.samples.y

    def batches(self, batch_size: int, generator: torch.Generator, device=None, augment: tuple[str, ...] = ()):
        """Shuffled mini-batches (x, y, t) for one epoch, prepared on ``device`` (see engine.scenarios.Batches)."""
        from engine.scenarios import Batches

        return Batches(self, batch_size, generator, device, augment)

    @classmethod
    def join(cls, experiences: list["Experience"], label: str = "") -> "Experience":
        """One experience of several (joint training): their samples together, nothing copied when
        they come from the scenario; ``task`` is the last one's."""
        from engine.scenarios import Samples

        t = torch.cat([e.t for e in experiences])
        if all(e.samples is not None for e in experiences):
            return cls(experiences[-1].task, t=t, label=label, samples=Samples.cat([e.samples for e in experiences]))
        return cls(experiences[-1].task, torch.cat([e.x for e in experiences]), torch.cat([e.y for e in experiences]),
                   t, label)


class Strategy:
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings: ClassVar[tuple[str, ...]] = SETTINGS
    models: ClassVar[tuple[str, ...] | None] = None  # the models it can train (None: any)
    hparams: ClassVar[dict[str, HParam]] = {}
    paper: ClassVar[str] = ""  # the source paper: authors, year, title

    def __init__(self, seed: int = 0, **hparams: Any):
        self.seed = seed
        for key, spec in self.hparams.items():
            setattr(self, key, hparams.get(key, spec.default))
        # the run's training augmentation, given by the training loop: a rehearsal memory stores raw
        # inputs (``unaugmented``) and applies it to the replayed ones each time they are drawn (Mammoth)
        self.augment = InputAugment()
        self._step_inputs: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, x before augmentation)

    @classmethod
    def state_bytes(cls, hparams: dict[str, Any], weights: int, sample: int, n_tasks: int,
                    task_classes: int = 0) -> int:
        """Memory the strategy holds beside the model at its peak, for the cost estimate made before a
        run is queued (``engine.training.cost``): ``weights`` is the model's size in bytes, ``sample`` one
        training sample's, ``task_classes`` the classes of all tasks counted per task (a memory per
        class). Default: a buffer of ``buffer_size`` samples, if the strategy declares one."""
        return int(hparams.get("buffer_size", 0)) * sample

    # The schedule: by default one experience a task. Joint overrides it.
    def experiences(self, scenario: "Scenario") -> list[Experience]:
        return [Experience(task=k + 1, samples=task.train) for k, task in enumerate(scenario.tasks)]

    def setup(self, module: "ContinualModule", scenario: "Scenario") -> None:
        """Called once before the first experience. Subclasses that override it call super()."""
        self.n_tasks = len(scenario.tasks)

    def is_last(self, experience: Experience) -> bool:
        """Whether ``experience`` is the run's last (what is consolidated after it is never used)."""
        return getattr(self, "n_tasks", None) is not None and experience.task >= self.n_tasks

    def before_task(self, module: "ContinualModule", experience: Experience) -> None:
        """Called before training an experience."""

    # ---- the training budget: the run's by default; a method with its own overrides these ------
    def epochs_per_experience(self, train_cfg) -> int | None:
        """Epochs the loop trains each experience for, where the strategy has a budget of its own (GDumb:
        epochs over its memory; Joint: to convergence); None: the run's (``train.epochs_per_task``, or
        ``train.iterations_per_task`` steps)."""
        return None

    def train_data(self, experience: Experience) -> Experience:
        """What the loop's epochs go over for ``experience`` (asked after ``before_task``): the experience
        itself by default; GDumb: its memory."""
        return experience

    def epoch_sizes(self, experiences: list[Experience]) -> list[int]:
        """Samples in one epoch of each experience's ``train_data``, known before training."""
        return [len(e) for e in experiences]

    def task_steps(self, train_cfg, batches_per_epoch: int) -> int:
        """The optimizer steps of one experience whose one pass is ``batches_per_epoch`` batches."""
        epochs = self.epochs_per_experience(train_cfg)
        if epochs is None:
            return train_cfg.task_steps(batches_per_epoch)
        return epochs * batches_per_epoch

    def planned_steps(self, experiences: list[Experience], train_cfg) -> int:
        """The run's optimizer steps (its progress, the cost estimate made before it is queued)."""
        return sum(self.task_steps(train_cfg, math.ceil(n / train_cfg.batch_size)) for n in self.epoch_sizes(experiences))

    # ---- the training step: a strategy may shape every part of it ------------------------------
    def parameter_groups(self, module: "ContinualModule") -> list[dict]:
        """The optimizer's parameter groups (a slower backbone: a group with its own ``lr``; frozen
        parts: left out). Default: every parameter that requires a gradient, one group."""
        return [{"params": [p for p in module.parameters() if p.requires_grad]}]

    def configure_optimizer(self, module: "ContinualModule", train_cfg) -> torch.optim.Optimizer:
        """The optimizer of one experience (a fresh one each task, as Lightning's Trainer makes).
        Default: ``train_cfg``'s optimizer over ``parameter_groups``."""
        from engine.module import build_optimizer

        return build_optimizer(self.parameter_groups(module), train_cfg)

    def training_loss(self, module: "ContinualModule", x: torch.Tensor, y: torch.Tensor,
                      t: torch.Tensor) -> torch.Tensor:
        """The loss of one training step; the default is plain fine-tuning."""
        return module.loss(x, y, t)

    def after_backward(self, module: "ContinualModule", batch: tuple) -> None:
        """The gradients are in ``p.grad``, the optimizer has not stepped: project or mask them,
        accumulate importance (A-GEM, GEM, SI, PackNet)."""

    def after_step(self, module: "ContinualModule", batch: tuple) -> None:
        """The optimizer has stepped: average weights, re-apply masks, fill a buffer (EMA, ER)."""

    def observe(self, module: "ContinualModule", batch: tuple, optimizer: torch.optim.Optimizer,
                backward: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """One whole training step on ``batch`` = (x, y, t); returns the loss (detached or not).
        ``backward(loss)`` is the loop's backward (precision plugins go through it). Override only
        where a method needs the step itself (Mammoth's ``observe``); the hooks above cover most."""
        x, y, t = batch
        self._step_inputs = (x, getattr(batch, "raw", x))
        loss = self.training_loss(module, x, y, t)
        optimizer.zero_grad(set_to_none=True)
        backward(loss)
        self.after_backward(module, batch)
        optimizer.step()
        self.after_step(module, batch)
        self._step_inputs = None  # no tensor of the step is kept (nor saved with a checkpoint)
        return loss

    def unaugmented(self, x: torch.Tensor) -> torch.Tensor:
        """``x``, this step's (augmented) inputs, as they were before augmentation: what a rehearsal
        memory stores (Mammoth's ``not_aug_inputs``). ``x`` itself outside ``observe``'s step."""
        step = getattr(self, "_step_inputs", None)  # a strategy restored from an older checkpoint has none
        return step[1] if step is not None and step[0] is x else x

    def eval_model(self, module: "ContinualModule") -> torch.nn.Module:
        """What continual evaluation measures: the trained module by default; a slow EMA copy, or a
        module with a nearest-mean or analytic head, for the methods that predict that way."""
        return module

    def after_task(self, module: "ContinualModule", experience: Experience) -> None:
        """Called after training an experience (consolidate, fill a buffer, keep a teacher)."""

    # ---- resume (engine/training/checkpoint.py) ---------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a run resumed after a task needs of this strategy. By default every attribute
        (tensors, networks such as a teacher, buffers, dicts and lists of them, random generators,
        plain values): the checkpoint pickles them as one graph, so shared objects stay shared and
        references to the run's module, network, parameters or data point at the resumed ones. An
        attribute that cannot be pickled is named in the checkpoint, and resuming refuses. Override
        both methods only for state that its attributes do not hold."""
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
