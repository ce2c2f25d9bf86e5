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
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import torch

from engine.training import checkpoint as checkpoints
from engine.augment import augmentations
from engine.config import RunConfig
from engine.core.devices import fabric_device
from engine.evaluation import ContinualEvaluation, MetricSink
from engine.models import build_model
from engine.module import ContinualModule, build_schedule, carry_optimizer_state, optimizer_state_by_name
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


def train_run(config: RunConfig, sink: MetricSink, should_stop: Callable[[], bool] | None = None,
              on_start: Callable[[int], None] | None = None, weights_dir: Path | None = None,
              checkpoint: Path | None = None, resume: Path | None = None,
              on_checkpoint: Callable[[], None] | None = None,
              scenario: Scenario | None = None, device: str | None = None) -> RunResult:
    """Train ``config`` and report every metric to ``sink``. ``on_start(total_steps)`` is called once
    the run is set up; ``should_stop`` is polled every step (cancellation). With ``weights_dir``, the
    network's weights are saved there as ``train.weights`` says: every (``after-task-0.pt`` before
    training, then ``after-task-1.pt``, ...), last (the latest task's file only) or none. With
    ``checkpoint`` (a path), what resuming needs is saved there after each task but the last; ``resume``
    (such a path) continues the run from it, at the same step numbering (engine/training/checkpoint.py);
    ``on_checkpoint()`` is called after each save (the owner promotes it once the metrics before it are in).

    ``scenario``: tasks already in memory (tests, benchmarks, notebooks: IN-MEMORY DATA, the config's
    scenario section then only names it); None builds the config's. ``device``: where to train instead
    of ``train.device`` (the run manager's GPU, seen as cuda:0 behind CUDA_VISIBLE_DEVICES)."""
    accelerator, devices = fabric_device(device or config.train.device)
    _determinism(config.train.deterministic, accelerator)
    L.seed_everything(config.seed, verbose=False)
    fabric = L.Fabric(accelerator=accelerator, devices=devices, precision=PRECISIONS[config.train.precision])
    scenario = scenario if scenario is not None else build_scenario(config.scenario)
    strategy = STRATEGIES[config.strategy["name"]](seed=config.seed, **config.strategy_hparams)
    scenario.to(fabric.device)  # the dataset's one copy moves once; tasks are index views of it
    with fabric.init_module():  # built on the device, not moved there
        net = build_model(config.model, scenario.input_shape, scenario.n_classes)
        module = ContinualModule(net, strategy, config.train, scenario.class_mask, scenario.n_classes)
    evaluation = ContinualEvaluation(
        [(task.test_x, task.test_y) for task in scenario.tasks], sink, every=config.eval.every,
        subset=config.eval.subset, seed=config.seed, class_mask=scenario.class_mask, should_stop=should_stop,
        batch_size=config.eval.batch_size, task_masks=scenario.task_masks,
    ).to(fabric.device)  # the held-out sets live on the device for the whole run
    evaluation.autocast = fabric.autocast
    experiences = strategy.experiences(scenario)
    if on_start:
        on_start(strategy.planned_steps(experiences, config.train))
    fabric.setup_module(module)  # moves it to the device; the steps call the module itself
    strategy.augment = scenario.augmenter(augmentations(config))  # what replayed inputs get at each draw
    strategy.setup(module, scenario)
    batches = torch.Generator().manual_seed(config.seed)
    data = {"scenario": scenario, "experiences": experiences}  # rebuilt alike: referred to, not saved
    done = 0 if resume is None else checkpoints.restore(resume, config, module, strategy, batches, evaluation, data)
    if weights_dir is not None and config.train.weights != "none":
        evaluation.on_task_end = _weights_saver(net, weights_dir, config.train.weights)
        if config.train.weights == "every" and not done:
            evaluation.on_task_end(0)
    after_experience = None
    if checkpoint is not None:
        def after_experience(k: int) -> None:  # k experiences are done
            if done + k < len(experiences):
                checkpoints.save(checkpoint, config, module, strategy, batches, evaluation, done + k, data)
                if on_checkpoint:
                    on_checkpoint()
    _fabric_loop(config, fabric, module, strategy, evaluation, experiences[done:], batches, after_experience)
    sink.flush()
    if evaluation.stop_reason == "diverged":
        return RunResult("diverged", evaluation.stop_step,
                         f"the training loss became non-finite at step {evaluation.stop_step}")
    if evaluation.stop_reason == "cancelled":
        return RunResult("cancelled", evaluation.step, f"cancelled at step {evaluation.step}")
    return RunResult("finished", evaluation.step)


def _weights_saver(net, weights_dir: Path, policy: str) -> Callable[[int], None]:
    """Saves ``after-task-<task>.pt`` (written then renamed: a crash leaves no half file); with policy
    last, the previous task's file goes once the new one is in place, also one left by the run this one
    resumes."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    previous: list[Path] = sorted(weights_dir.glob("after-task-*.pt")) if policy == "last" else []

    def save(task: int) -> None:
        path = weights_dir / f"after-task-{task}.pt"
        try:
            torch.save(net.state_dict(), path.with_suffix(".tmp"))
        except BaseException:  # a full disk: no half file left taking space
            path.with_suffix(".tmp").unlink(missing_ok=True)
            raise
        path.with_suffix(".tmp").replace(path)
        if policy == "last":
            for old in previous:
                if old != path:
                    old.unlink(missing_ok=True)
            previous[:] = [path]

    return save


def _determinism(deterministic: bool, accelerator: str) -> None:
    """Seeds are always fixed; ``train.deterministic`` also asks for deterministic algorithms (where
    torch has one: an op without one warns rather than failing the run). Set for every run: a worker
    serves many. Without it, cuDNN picks its fastest algorithms (benchmark) on a GPU."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = accelerator == "cuda" and not deterministic


def _fabric_loop(config, fabric, module, strategy, evaluation, experiences, batches, after_experience=None) -> None:
    def backward(loss: torch.Tensor) -> None:
        # the step runs under autocast (so every forward a strategy makes is mixed precision); the
        # backward pass itself must not
        with torch.autocast(fabric.device.type, enabled=False):
            fabric.backward(loss)

    autocast = fabric.autocast if config.train.precision != "32" else contextlib.nullcontext
    for k, experience in enumerate(experiences, 1):
        strategy.before_task(module, experience)
        evaluation.start_task(module, experience.task)
        data = strategy.train_data(experience).batches(config.train.batch_size, batches, fabric.device,
                                                       augmentations(config))
        # whole passes (the run's epochs or the strategy's own), or a fixed number of steps
        steps_left = strategy.task_steps(config.train, len(data))
        raw = module.configure_optimizers()  # fresh a task, as the Trainer's
        if config.train.optimizer_state == "keep" and module.optimizer_carry:
            carry_optimizer_state(raw, module, module.optimizer_carry)
        schedule = build_schedule(raw, config.train, len(data), steps_left)  # restarts with it
        optimizer = fabric.setup_optimizers(raw)
        running = True
        while steps_left > 0 and running:
            for batch in data:  # one pass, reshuffled each time
                with autocast():
                    loss = strategy.observe(module, batch, optimizer, backward)
                schedule.step()
                steps_left -= 1
                if not evaluation.end_batch(strategy.eval_model(module), loss.detach()):
                    running = False
                if not running or steps_left == 0:
                    break
        # The task's consolidation (exemplars chosen, a buffer filled) comes before its end-of-task
        # evaluation, as in Mammoth (end_task, then evaluate) and Avalanche (after_training_exp, then
        # eval): iCaRL's nearest-mean classifier is its exemplars'. A diverged or stopped task has none.
        if running and evaluation.read_losses():
            strategy.after_task(module, experience)
        evaluation.end_task(strategy.eval_model(module))
        if not running or evaluation.stop_reason:
            return
        if config.train.optimizer_state == "keep":
            module.optimizer_carry = optimizer_state_by_name(raw, module)
        if after_experience:
            after_experience(k)
