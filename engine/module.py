"""The LightningModule of a continual run: a network, a strategy, and the task-incremental mask."""

from __future__ import annotations

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
