"""What a model is: a ``features`` part and a linear ``head`` (as Mammoth's backbones), so a strategy
can freeze, distil or read the features. A model declares its hyperparameters like a strategy does
(``HParam``: type, default, range, help), from which the config check and the launch form are built."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from engine.core.hparams import HParam


class Backbone(nn.Module):
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    hparams: ClassVar[dict[str, HParam]] = {}
    kind: ClassVar[str] = "any"  # "any": flat or image input; "image": needs (C, H, W) input

    features: nn.Module
    head: nn.Linear

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions: (N, C, H, W) -> (N, C). Written as a mean rather than
    AdaptiveAvgPool2d, whose CUDA backward has no deterministic algorithm (``train.deterministic``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))
