"""Models. A model builder takes its config, the input size and the number of classes."""

from __future__ import annotations

from torch import nn


def mlp(input_dim: int, n_classes: int, hidden: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    width = input_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def build_model(cfg, input_dim: int, n_classes: int) -> nn.Module:
    if cfg.name == "mlp":
        return mlp(input_dim, n_classes, cfg.hidden)
    raise ValueError(f"unknown model {cfg.name!r}")
