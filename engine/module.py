"""The LightningModule of a continual run: a network, a strategy, and the task-incremental mask."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F


class ContinualModule(L.LightningModule):
    def __init__(self, net: torch.nn.Module, strategy, train_cfg, class_mask: torch.Tensor | None = None,
                 n_classes: int = 10):
        super().__init__()
        self.net = net
        self.strategy = strategy
        self.train_cfg = train_cfg
        self.n_classes = n_classes
        self.register_buffer("class_mask", class_mask, persistent=False)
        self.optimizer_carry: dict[str, dict] | None = None  # train.optimizer_state keep: the last task's state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The network's features part (its head's input)."""
        return self.net.features(x)

    @property
    def head(self) -> torch.nn.Linear:
        return self.net.head

    def mask(self, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Task-incremental: keep each sample's own task's classes. Other settings: unchanged."""
        return logits if self.class_mask is None else logits + self.class_mask[t]

    def loss(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.mask(self.net(x), t), y)

    def training_step(self, batch, batch_idx: int = 0) -> torch.Tensor:
        x, y, t = batch
        return self.strategy.training_loss(self, x, y, t)

    def configure_optimizers(self):
        return self.strategy.configure_optimizer(self, self.train_cfg)


def build_optimizer(params, cfg) -> torch.optim.Optimizer:
    """``cfg``'s optimizer (sgd, adam or adamw) over ``params`` (tensors or parameter groups)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def optimizer_state_by_name(optimizer: torch.optim.Optimizer, module: torch.nn.Module) -> dict[str, dict]:
    """The per-parameter state of ``optimizer`` (momentum buffers, Adam's moments and step), keyed by
    the parameters' names in ``module``: what ``train.optimizer_state: keep`` carries to the next task's
    optimizer, and saves in a checkpoint (names survive a rebuilt module; tensors' identities do not)."""
    names = {id(p): n for n, p in module.named_parameters()}
    return {names[id(p)]: {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()}
            for p, state in optimizer.state.items() if id(p) in names}


def carry_optimizer_state(optimizer: torch.optim.Optimizer, module: torch.nn.Module, state: dict[str, dict]) -> None:
    """Give a fresh ``optimizer`` the state ``optimizer_state_by_name`` kept, for every parameter it
    optimises that had one (a parameter new with this task starts fresh)."""
    params = dict(module.named_parameters())
    for name, saved in state.items():
        p = params.get(name)
        if p is not None and any(p is q for group in optimizer.param_groups for q in group["params"]):
            optimizer.state[p] = {k: v.to(p.device) if torch.is_tensor(v) and v.dim() else v for k, v in saved.items()}


def lr_factor(step: int, cfg, steps_per_epoch: int, total_steps: int) -> float:
    """The learning-rate multiplier at ``step`` (0-based) of a task: a linear warm-up over
    ``cfg.warmup_steps`` steps (from 1/warmup_steps of the lr up to the lr), then ``cfg.schedule``
    over the rest of the task: constant; step (times ``lr_gamma`` every ``lr_step_every`` epochs,
    counted from the task's start); cosine (from the lr down to 0 at the task's end)."""
    warmup = cfg.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "step":
        return cfg.lr_gamma ** (step // (cfg.lr_step_every * steps_per_epoch))
    if cfg.schedule == "cosine":
        span = max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))
    return 1.0


def build_schedule(optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int,
                   total: int | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """``cfg``'s schedule for one task of ``total`` steps (default ``cfg.task_steps``), stepped once per
    training step. LambdaLR multiplies each parameter group's own lr, so a group a strategy gave a
    smaller lr keeps its ratio to the others."""
    total = cfg.task_steps(steps_per_epoch) if total is None else total
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, steps_per_epoch, total))
