from __future__ import annotations

import math

from torch import nn

from engine.models.base import Backbone
from engine.core.hparams import HParam


class MLP(Backbone):
    """A multilayer perceptron: flattened input, ReLU hidden layers, a linear head."""

    name = "mlp"
    title = "MLP"
    hparams = {"hidden": HParam(list, [256, 256], "hidden layer widths, e.g. [256, 256]; [] is a linear model",
                             low=1, high=16384),
               "init": HParam(str, "default", "the initial weights of every linear layer: default (PyTorch's: "
                              "uniform, Kaiming with a = sqrt(5), biases uniform too) or xavier (Glorot uniform "
                              "weights and zero biases, as Mammoth's MNIST MLP)", choices=("default", "xavier"))}

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, hidden: list[int] = (256, 256),
                 init: str = "default"):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)
        if init == "xavier":
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)  # U(-a, a), a = sqrt(6 / (fan_in + fan_out))
                    nn.init.zeros_(layer.bias)
