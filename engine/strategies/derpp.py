import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.der import DER


class DERpp(DER):
    """DER++ (Buzzega et al., 2020): DER's logit matching plus ``beta`` x cross-entropy on another batch
    of buffer samples with their labels (Mammoth's ``models/derpp.py``)."""

    name = "derpp"
    title = "DER++"
    description = "DER plus a cross-entropy on other replayed samples with their stored labels."
    hparams = {
        **DER.hparams,
        "alpha": HParam(float, 0.1, "weight of the logit-matching MSE (0.1: the paper's choice for "
                        "Seq-CIFAR-10 with 200 samples)", low=0.0, high=100.0),
        "beta": HParam(float, 0.5, "weight of the cross-entropy on replayed labels (0.5: the paper's choice "
                       "for Seq-CIFAR-10 with 200 samples)", low=0.0, high=100.0),
    }

    def replay_loss(self, module):
        bx, by, bt, _ = self.buffer.sample(self.replay_batch_size, self.augment)
        return super().replay_loss(module) + self.beta * F.cross_entropy(module.mask(module(bx), bt), by)
