"""Train one continual run: build the scenario, model and strategy from a validated config, then
train its experiences in order with continual evaluation.

One loop, on Lightning Fabric, drives the LightningModule: each step is the strategy's ``observe``
(its loss, hooks after backward and after the optimizer step, or a whole step of its own), so a
method shapes its step without a loop of its own. The continual-evaluation callback is called
directly; it still works as a callback in a user's own Lightning Trainer. A Trainer loop was dropped:
it cannot follow a strategy's hooks between backward and the optimizer step, and its per-step
overhead cost about a third of the speed of a plain PyTorch loop on the default workload.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import torch

from engine.config import RunConfig
from engine.devices import fabric_device
from engine.evaluation import ContinualEvaluation, MetricSink
from engine.models import build_model
from engine.module import ContinualModule, build_schedule
from engine.scenarios import Scenario, build_scenario
from engine.strategies import STRATEGIES

for _name in ("lightning", "lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="lightning")
warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()` before `optimizer.step()`")

PRECISIONS = {"32": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}  # config -> Fabric


@dataclass
class RunResult:
    status: str  # finished, diverged or cancelled
    step: int  # the last step trained
    error: str | None = None


class TensorBatches:
    """Shuffled mini-batches straight from tensors (a DataLoader's per-sample collate would cost more
    than the step itself at this size). One pass is one epoch; ``len`` is the batches per epoch."""

    def __init__(self, x, y, t, batch_size: int, generator: torch.Generator):
        self.x, self.y, self.t = x, y, t
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.generator).to(self.x.device)
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx], self.t[idx]


def total_steps(config: RunConfig, experiences) -> int:
    return sum(config.train.epochs_per_task * math.ceil(len(e.y) / config.train.batch_size) for e in experiences)


def train_run(config: RunConfig, sink: MetricSink, should_stop: Callable[[], bool] | None = None,
              on_start: Callable[[int], None] | None = None, weights_dir: Path | None = None,
              scenario: Scenario | None = None, device: str | None = None) -> RunResult:
    """Train ``config`` and report every metric to ``sink``. ``on_start(total_steps)`` is called once
    the run is set up; ``should_stop`` is polled every step (cancellation). With ``weights_dir`` (and
    ``train.save_weights``), the network's weights are saved there before training and after each
    task: ``after-task-0.pt``, ``after-task-1.pt``, ...

    ``scenario``: tasks already in memory (tests, benchmarks, notebooks: IN-MEMORY DATA, the config's
    scenario section then only names it); None builds the config's. ``device``: where to train instead
    of ``train.device`` (the run manager's GPU, seen as cuda:0 behind CUDA_VISIBLE_DEVICES)."""
    accelerator, devices = fabric_device(device or config.train.device)
    _determinism(config.train.deterministic, accelerator)
    L.seed_everything(config.seed, verbose=False)
    fabric = L.Fabric(accelerator=accelerator, devices=devices, precision=PRECISIONS[config.train.precision])
    scenario = scenario if scenario is not None else build_scenario(config.scenario)
    strategy = STRATEGIES[config.strategy["name"]](seed=config.seed, **config.strategy_hparams)
    with fabric.init_module():  # built on the device, not moved there
        net = build_model(config.model, scenario.input_dim, scenario.n_classes)
        module = ContinualModule(net, strategy, config.train, scenario.class_mask, scenario.n_classes)
    evaluation = ContinualEvaluation(
        [(task.test_x, task.test_y) for task in scenario.tasks], sink, every=config.eval.every,
        subset=config.eval.subset, seed=config.seed, class_mask=scenario.class_mask, should_stop=should_stop,
        batch_size=config.eval.batch_size,
    ).to(fabric.device)  # the held-out sets live on the device for the whole run
    evaluation.autocast = fabric.autocast
    experiences = strategy.experiences(scenario)
    if on_start:
        on_start(total_steps(config, experiences))
    fabric.setup_module(module)  # moves it to the device; the steps call the module itself
    strategy.setup(module, scenario)
    batches = torch.Generator().manual_seed(config.seed)
    if weights_dir is not None and config.train.save_weights:
        weights_dir.mkdir(parents=True, exist_ok=True)
        save = lambda task: torch.save(net.state_dict(), weights_dir / f"after-task-{task}.pt")  # noqa: E731
        save(0)
        evaluation.on_task_end = save
    _fabric_loop(config, fabric, module, strategy, evaluation, experiences, batches)
    sink.flush()
    if evaluation.stop_reason == "diverged":
        return RunResult("diverged", evaluation.stop_step,
                         f"the training loss became non-finite at step {evaluation.stop_step}")
    if evaluation.stop_reason == "cancelled":
        return RunResult("cancelled", evaluation.step, f"cancelled at step {evaluation.step}")
    return RunResult("finished", evaluation.step)


def _determinism(deterministic: bool, accelerator: str) -> None:
    """Seeds are always fixed; ``train.deterministic`` also asks for deterministic algorithms (where
    torch has one: an op without one warns rather than failing the run). Set for every run: a worker
    serves many. Without it, cuDNN picks its fastest algorithms (benchmark) on a GPU."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = accelerator == "cuda" and not deterministic


def _on_device(experience, device: torch.device):
    """A task's training data moved to the device once, before the strategy sees it."""
    move = lambda v: v.to(device, non_blocking=True)  # noqa: E731
    return dataclasses.replace(experience, x=move(experience.x), y=move(experience.y), t=move(experience.t))


def _fabric_loop(config, fabric, module, strategy, evaluation, experiences, batches) -> None:
    def backward(loss: torch.Tensor) -> None:
        # the step runs under autocast (so every forward a strategy makes is mixed precision); the
        # backward pass itself must not
        with torch.autocast(fabric.device.type, enabled=False):
            fabric.backward(loss)

    autocast = fabric.autocast if config.train.precision != "32" else contextlib.nullcontext
    for experience in experiences:
        experience = _on_device(experience, fabric.device)
        strategy.before_task(module, experience)
        evaluation.start_task(module, experience.task)
        data = TensorBatches(experience.x, experience.y, experience.t, config.train.batch_size, batches)
        raw = module.configure_optimizers()  # fresh a task, as the Trainer's
        schedule = build_schedule(raw, config.train, len(data))  # restarts with it
        optimizer = fabric.setup_optimizers(raw)
        running = True
        for _epoch in range(config.train.epochs_per_task):
            for batch in data:
                with autocast():
                    loss = strategy.observe(module, batch, optimizer, backward)
                schedule.step()
                if not evaluation.end_batch(strategy.eval_model(module), loss.detach()):
                    running = False
                    break
            if not running:
                break
        evaluation.end_task(strategy.eval_model(module))
        if not running or evaluation.stop_reason:
            return
        strategy.after_task(module, experience)
