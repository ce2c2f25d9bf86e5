"""A network whose forward pass depends on the task (PackNet's masks, HAT's gates, CLR's adapters):
continual evaluation gives it each sample's task id (``takes_task_ids``) and it runs each task's
samples through that task's network."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class TaskRouted(nn.Module):
    takes_task_ids = True

    def __init__(self, module: nn.Module, forward_task: Callable[[torch.Tensor, int], torch.Tensor]):
        super().__init__()
        self.module = module  # a submodule, so that eval() and train() reach it
        self.forward_task = forward_task  # (x of one task, its 0-based task id) -> logits

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return forward_by_task(self.forward_task, x, t)


def forward_by_task(forward_task, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``forward_task`` on each task's samples of the batch, put back in the batch's order."""
    tasks = t.unique().tolist()
    if len(tasks) == 1:
        return forward_task(x, tasks[0])
    out = None
    for task in tasks:
        idx = (t == task).nonzero().squeeze(1)
        logits = forward_task(x[idx], task)
        if out is None:
            out = logits.new_empty((x.shape[0], logits.shape[1]))
        out[idx] = logits
    return out
