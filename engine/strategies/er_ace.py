import torch
import torch.nn.functional as F

from engine.strategies.base import HParam, Strategy
from engine.strategies.buffers import ReservoirBuffer


class ERACE(Strategy):
    """ER-ACE (Caccia et al., 2022, "New Insights on Reducing Abrupt Representation Change"): experience
    replay with an asymmetric cross-entropy. The incoming batch's loss only covers the classes present in
    that batch (the other logits are masked), so new classes do not push old ones' logits down; the
    replayed batch's loss covers every class. The two losses are summed (Mammoth's ``er_ace``; Avalanche
    averages them). Before the buffer holds anything the loss is plain cross-entropy, as in both."""

    name = "er_ace"
    title = "ER-ACE"
    description = "Replay with an asymmetric loss: new data only competes among the classes in its batch."
    paper = "Caccia et al., 2022. New Insights on Reducing Abrupt Representation Change in Online Continual Learning"
    hparams = {
        "buffer_size": HParam(int, 200, "samples kept in the reservoir buffer", low=1, high=100_000, log=True),
        "replay_batch_size": HParam(int, 32, "buffer samples replayed each step (32: the batch size, as Mammoth)",
                                    low=1, high=4096),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.buffer = ReservoirBuffer(self.buffer_size, self.generator)

    def training_loss(self, module, x, y, t):
        logits = module.mask(module(x), t)
        if len(self.buffer):
            present = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device).index_fill_(0, y, True)
            logits = logits.masked_fill(~present, torch.finfo(logits.dtype).min)
            bx, by, bt = self.buffer.sample(self.replay_batch_size, self.augment)
            loss = F.cross_entropy(logits, y) + module.loss(bx, by, bt)
        else:
            loss = F.cross_entropy(logits, y)
        self.buffer.add(self.unaugmented(x), y, t)
        return loss
