import torch
import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.buffers import ReservoirBuffer


class DER(Strategy):
    """Dark Experience Replay (Buzzega et al., 2020): a reservoir buffer keeps each sample with the
    logits the model gave it at the step it was seen, and a penalty ``alpha`` x MSE keeps the current
    logits on replayed samples close to those stored ones (Mammoth's ``models/der.py``)."""

    name = "der"
    title = "DER"
    description = "Replays past samples with the logits they had when seen, matched by an MSE penalty."
    paper = "Buzzega et al., 2020. Dark Experience for General Continual Learning: a Strong, Simple Baseline"
    hparams = {
        "buffer_size": HParam(int, 200, "samples (with their logits) kept in the reservoir buffer", low=1,
                              high=100_000, log=True),
        "replay_batch_size": HParam(int, 32, "buffer samples replayed each step (32: the batch size, as Mammoth)",
                                    low=1, high=4096),
        "alpha": HParam(float, 1.0, "weight of the logit-matching MSE (1: Mammoth's best args for Seq-MNIST with 500 "
                        "samples and Perm/Rot-MNIST with 200; 0.2 for Seq-MNIST-200 at batch 10; 0.3 for Seq-CIFAR-10, "
                        "which on Split-Digits made DER worse than ER: 0.636 against 0.858)", low=0.0, high=100.0),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.buffer = ReservoirBuffer(self.buffer_size, self.generator)

    def training_loss(self, module, x, y, t):
        logits = module(x)
        loss = F.cross_entropy(module.mask(logits, t), y)
        if len(self.buffer):
            loss = loss + self.replay_loss(module)
        self.buffer.add(self.unaugmented(x), y, t, logits=logits.detach())
        return loss

    def replay_loss(self, module) -> torch.Tensor:
        bx, _, _, stored = self.buffer.sample(self.replay_batch_size, self.augment)
        return self.alpha * F.mse_loss(module(bx), stored)
