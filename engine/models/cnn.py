from __future__ import annotations

from torch import nn

from engine.models.base import Backbone, GlobalAvgPool
from engine.core.hparams import HParam


class CNN(Backbone):
    """A small CNN: blocks of 3x3 convolution, ReLU and 2x2 max-pooling, then global average pooling
    (so any image size works) and a linear head. Optional batch norm (off by default: its running
    statistics drift towards the newest task, a known effect in continual learning)."""

    name = "cnn"
    title = "Small CNN"
    kind = "image"
    hparams = {
        "channels": HParam(list, [32, 64], "output channels of each conv block, e.g. [32, 64]", low=1, high=4096),
        "batch_norm": HParam(bool, False, "batch normalisation after each convolution"),
    }

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, channels: list[int] = (32, 64),
                 batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_shape[0]
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(c)] if batch_norm else []
            layers += [nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]  # ceil: a 1x1 map stays 1x1
            width = c
        self.features = nn.Sequential(*layers, GlobalAvgPool())
        self.head = nn.Linear(width, n_classes)
