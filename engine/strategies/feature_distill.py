import copy

import torch

from engine.core.hparams import HParam
from engine.strategies.base import Strategy


class FeatureDistill(Strategy):
    """Feature distillation, as the rehearsal-free baseline of Smith et al. (2023): the model as it was
    after the previous task is a frozen teacher, and the loss gets lambda x the mean over the batch of
    the squared L2 distance between the new and the teacher's features (``module.features``, the
    head's input) on the current task's data."""

    name = "feature_distill"
    title = "Feature distillation"
    description = "Keeps the features of the current data close to the previous model's (an L2 penalty); no stored data."
    paper = "Smith et al., 2023: A Closer Look at Rehearsal-Free Continual Learning"
    hparams = {
        "fd_lambda": HParam(float, 1.0, "weight of the penalty (loss + lambda mean_batch ||f(x) - f_old(x)||^2, the "
                            "squared distance summed over feature dimensions)", low=0.0, high=1e4, log=True),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.teacher = None

    def training_loss(self, module, x, y, t):
        if self.teacher is None:
            return module.loss(x, y, t)
        features = module.features(x)
        loss = torch.nn.functional.cross_entropy(module.mask(module.head(features), t), y)
        return loss + self.fd_lambda * self.distance(module, x, features)

    def distance(self, module, x, features=None) -> torch.Tensor:
        """mean over the batch of ||f(x) - f_old(x)||^2."""
        with torch.no_grad():
            old = self.teacher.features(x)
        features = module.features(x) if features is None else features
        return (features - old).pow(2).sum(1).mean()

    def after_task(self, module, experience):
        if not self.is_last(experience):
            self.teacher = copy.deepcopy(module.net).eval().requires_grad_(False)
