"""Continual evaluation (De Lange et al., ICLR 2023) as a Lightning callback, and the metric sinks.

``ContinualEvaluation`` evaluates every task's held-out set every ``every`` training iterations,
records the training loss every step and the step at which each task starts and ends, and runs a full
evaluation before training (row 0 of the accuracy matrix) and at the end of each task. It keeps its
own global step across fits. It works as a callback in any Lightning Trainer (one ``fit`` a task), and
the engine's Fabric loop calls the same methods directly.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Protocol, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F


class MetricSink(Protocol):
    def add(self, step: int, tasks: Sequence[int], metric: str, values: Sequence[float]) -> None: ...
    def task_start(self, task: int, step: int) -> None: ...
    def task_end(self, task: int, step: int) -> None: ...
    def flush(self) -> None: ...


class BufferedSink:
    """Buffers metric rows as columns and hands them on as one batch every ``max_rows`` rows or
    ``max_seconds``, so the store inserts batches, never single rows. Subclasses say where a batch goes."""

    def __init__(self, run_id: int, max_rows: int = 5000, max_seconds: float = 0.25):
        self.run_id = run_id
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.rows_sent = 0  # handed on; the owner counts them committed before it calls a run finished
        self._reset()

    def _reset(self) -> None:
        self.steps: list[int] = []
        self.tasks: list[int] = []
        self.metrics: list[str] = []
        self.values: list[float] = []
        self._since = time.monotonic()

    def add(self, step, tasks, metric, values) -> None:
        n = len(values)
        self.steps.extend([step] * n)
        self.tasks.extend(tasks)
        self.metrics.extend([metric] * n)
        self.values.extend(values)
        if len(self.values) >= self.max_rows or time.monotonic() - self._since >= self.max_seconds:
            self.flush()

    def batch(self) -> dict:
        n = len(self.values)
        return {
            "run_id": np.full(n, self.run_id, dtype=np.int32),
            "step": np.asarray(self.steps, dtype=np.int64),
            "task": np.asarray(self.tasks, dtype=np.int16),
            "metric": self.metrics,
            "value": np.asarray(self.values, dtype=np.float64),
        }

    def flush(self) -> None:
        if self.values:
            self.emit(self.batch())
            self.rows_sent += len(self.values)
        self._reset()

    def emit(self, batch: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def task_start(self, task: int, step: int) -> None:
        self.flush()

    def task_end(self, task: int, step: int) -> None:
        self.flush()


class StoreSink(BufferedSink):
    """Writes straight into a ``store.Store`` of this process (a user's own Trainer, notebooks)."""

    def __init__(self, store, run_id: int, **kw):
        super().__init__(run_id, **kw)
        self.store = store

    def emit(self, batch: dict) -> None:
        self.store.add_metrics(batch)

    def task_start(self, task: int, step: int) -> None:
        super().task_start(task, step)
        self.store.start_task(self.run_id, task, step)

    def task_end(self, task: int, step: int) -> None:
        super().task_end(task, step)
        self.store.end_task(self.run_id, task, step)


class ContinualEvaluation(L.Callback):
    """Evaluate every task's held-out set every ``every`` training iterations.

    eval_sets: one ``(x, y)`` pair a task (tensors), in task order.
    subset: if set, a fixed random subset of that many samples per task for the periodic evaluations
        (drawn once with ``seed``); the evaluations before training and at task ends use all samples.
    class_mask: (n_tasks, n_classes) additive logit mask for task-incremental evaluation, or None.
    should_stop: polled every step; when it returns True the run stops after this step (cancelled).
    batch_size: samples per forward pass of an evaluation (None: all at once); changes memory, not results.
    task_masks: for a class-incremental run, each task's (n_tasks, n_classes) mask of its own classes: the
        full evaluations also record ``boundary_masked_acc``, the accuracy with the logits masked to the
        sample's task at test time (Mammoth's Task-IL figure of a class-IL run), from the same forward pass.

    On an accelerator the training losses stay on the device and are read back every ``every`` steps
    (and at each task's end), so a step never waits for the GPU; a non-finite loss still stops the run
    and is reported at the step where it happened.
    """

    LOSS_READ_EVERY = 64  # at most this many losses wait on the device

    def __init__(self, eval_sets: Sequence[tuple[torch.Tensor, torch.Tensor]], sink: MetricSink, every: int = 10,
                 subset: int | None = None, seed: int = 0, class_mask: torch.Tensor | None = None,
                 should_stop: Callable[[], bool] | None = None, batch_size: int | None = None,
                 task_masks: torch.Tensor | None = None):
        self.sink = sink
        self.every = every
        self.batch_size = batch_size
        self.autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # mixed precision
        self._pending: list[tuple[int, torch.Tensor]] = []  # (step, loss) not yet read from the device
        self.should_stop = should_stop or (lambda: False)
        self.n_tasks = len(eval_sets)
        self.task_ids = list(range(1, self.n_tasks + 1))
        self.full = self._stack(eval_sets, class_mask)
        # each full-evaluation sample's task mask (test-time masking); None: not recorded
        self.full_task_mask = None if task_masks is None or class_mask is not None else task_masks[self.full[2]]
        if subset is None:
            self.periodic = self.full
        else:
            g = torch.Generator().manual_seed(seed)
            picked = [(x[idx], y[idx]) for x, y in eval_sets
                      for idx in [torch.randperm(len(y), generator=g)[:subset]]]
            self.periodic = self._stack(picked, class_mask)
        self.step = 0
        self.task = 0  # the task being trained (1-based); 0 before the first
        self.stop_reason: str | None = None  # "diverged" or "cancelled"
        self.stop_step: int | None = None
        self.on_task_end: Callable[[int], None] | None = None  # called with the task that ended
        self._initial_done = False
        self._periodic_step: int | None = None  # the step of the last periodic evaluation

    def _stack(self, sets, class_mask):
        x = torch.cat([x for x, _ in sets])
        y = torch.cat([y for _, y in sets])
        t = torch.cat([torch.full((len(y),), k, dtype=torch.long) for k, (_, y) in enumerate(sets)])
        mask = None if class_mask is None else class_mask[t]
        counts = torch.bincount(t, minlength=self.n_tasks).clamp(min=1).double()
        return x, y, t, mask, counts

    def to(self, device) -> "ContinualEvaluation":
        move = lambda s: tuple(v.to(device) if v is not None else None for v in s)  # noqa: E731
        self.full, self.periodic = move(self.full), move(self.periodic)
        if self.full_task_mask is not None:
            self.full_task_mask = self.full_task_mask.to(device)
        return self

    # ---- the core, shared by the Trainer hooks and the engine's Fabric loop ----------------------
    def evaluate(self, model: torch.nn.Module, full: bool = False) -> tuple[list[float], list[float]]:
        """Accuracy and mean loss on every task: all tasks' samples together, ``batch_size`` at a time,
        summed per task on the device and read back once."""
        x, y, t, mask, counts = self.full if full else self.periodic
        was_training = model.training
        model.eval()
        step = self.batch_size or len(y) or 1
        correct = torch.zeros(self.n_tasks, dtype=torch.float64, device=x.device)
        loss_sum = torch.zeros(self.n_tasks, dtype=torch.float64, device=x.device)
        task_mask = self.full_task_mask if full else None
        masked_correct = torch.zeros_like(correct) if task_mask is not None else None
        takes_task_ids = getattr(model, "takes_task_ids", False)  # a network that depends on the task
        with torch.inference_mode(), self.autocast():                # (PackNet, HAT, CLR) gets each sample's
            for i in range(0, len(y), step):                         # task id
                xi, yi, ti = x[i:i + step], y[i:i + step], t[i:i + step]
                logits = (model(xi, ti) if takes_task_ids else model(xi)).float()
                if mask is not None:
                    logits = logits + mask[i:i + step]
                loss_sum.index_add_(0, ti, F.cross_entropy(logits, yi, reduction="none").double())
                correct.index_add_(0, ti, (logits.argmax(1) == yi).double())
                if masked_correct is not None:
                    masked_correct.index_add_(0, ti, ((logits + task_mask[i:i + step]).argmax(1) == yi).double())
        acc = (correct / counts).tolist()
        mean_loss = (loss_sum / counts).tolist()
        model.train(was_training)
        prefix = "boundary_" if full else ""
        if not full:
            self._periodic_step = self.step
        self.sink.add(self.step, self.task_ids, prefix + "acc", acc)
        self.sink.add(self.step, self.task_ids, prefix + "loss", mean_loss)
        if masked_correct is not None:
            self.sink.add(self.step, self.task_ids, "boundary_masked_acc", (masked_correct / counts).tolist())
        return acc, mean_loss

    def start_task(self, model: torch.nn.Module, task: int | None = None) -> None:
        if not self._initial_done:  # row 0 of the accuracy matrix: the model before any training
            self.evaluate(model, full=True)
            self.sink.flush()  # the first metric reaches the store at once
            self._initial_done = True
        self.task = task if task is not None else self.task + 1
        self.sink.task_start(self.task, self.step)

    def resume_at(self, step: int, task: int) -> None:
        """Continue a run resumed after ``task`` ended at ``step`` (engine/training/checkpoint.py)."""
        self.step, self.task, self._initial_done = step, task, True

    def end_batch(self, model: torch.nn.Module, loss: float | torch.Tensor) -> bool:
        """Record one training step; returns False when the run must stop (diverged or cancelled)."""
        self.step += 1
        if isinstance(loss, torch.Tensor) and loss.device.type != "cpu":
            self._pending.append((self.step, loss.detach()))
            due = self.step % self.every == 0 or len(self._pending) >= self.LOSS_READ_EVERY
            if due and not self.read_losses():
                return False
        else:
            loss = float(loss)
            self.sink.add(self.step, (self.task,), "train_loss", (loss,))
            if not math.isfinite(loss):
                self.stop_reason, self.stop_step = "diverged", self.step
                return False
        if self.step % self.every == 0:
            self.evaluate(model)
        if self.should_stop():
            self.stop_reason, self.stop_step = "cancelled", self.step
            return False
        return True

    def read_losses(self) -> bool:
        """Record the losses waiting on the device (one transfer); False if one was not finite."""
        if not self._pending:
            return True
        steps = [step for step, _ in self._pending]
        values = torch.stack([loss.float() for _, loss in self._pending]).tolist()
        self._pending = []
        for step, value in zip(steps, values):
            self.sink.add(step, (self.task,), "train_loss", (value,))
            if not math.isfinite(value):
                self.stop_reason, self.stop_step = "diverged", step
                return False
        return True

    def end_task(self, model: torch.nn.Module) -> None:
        if self.stop_reason is None:
            self.read_losses()
        if self.stop_reason is None:  # a stopped task did not end: no accuracy-matrix row for it
            self.evaluate(model, full=True)
            if self.periodic is not self.full and self._periodic_step != self.step:
                # The series holds each task's last step (and so the run's) on its own samples: else,
                # when ``every`` does not divide a task's length, its worst case (min-ACC) could lie above
                # the final value it is compared with. (Without a subset the store's series takes the
                # boundary evaluation at that step.)
                self.evaluate(model)
            self.sink.task_end(self.task, self.step)
            if self.on_task_end:
                self.on_task_end(self.task)
        self.sink.flush()

    # ---- Lightning Trainer hooks: one fit() a task ----------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self.start_task(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not self.end_batch(pl_module, float(loss)):
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self.end_task(pl_module)
