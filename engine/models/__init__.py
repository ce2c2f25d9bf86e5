"""The model registry. Adding a model means adding its file and one line here."""

from __future__ import annotations

from engine.models.base import Backbone
from engine.models.cnn import CNN
from engine.models.mlp import MLP
from engine.models.resnet18 import ResNet18
from engine.models.resnet18_reduced import ResNet18Reduced

MODELS: dict[str, type[Backbone]] = {m.name: m for m in (MLP, CNN, ResNet18Reduced, ResNet18)}


def build_model(cfg, input_shape, n_classes: int) -> Backbone:
    """``cfg`` is the validated model section; ``input_shape`` one sample's shape (an int: a flat row)."""
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    params = {k: getattr(cfg, k) for k in MODELS[cfg.name].hparams}
    return MODELS[cfg.name](shape, n_classes, **params)


__all__ = ["MODELS", "Backbone", "build_model"]
