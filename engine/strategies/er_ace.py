import torch
import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.buffers import ReservoirBuffer


class ERACE(Strategy):
    """ER-ACE (Caccia et al., 2022, "New Insights on Reducing Abrupt Representation Change"): experience
    replay with an asymmetric cross-entropy. The incoming batch's loss only covers the classes present in
    that batch (the other logits are masked), so new classes do not push old ones' logits down; the
    replayed batch's loss covers every class. The two losses are summed (Mammoth's ``er_ace``; Avalanche
    averages them). Before the buffer holds anything the loss is plain cross-entropy, as in both.
    ``mask`` says which logits the incoming loss keeps: ``original`` (the default), its classes and every
    class not seen yet, as the authors' AML code and Mammoth's ``er_ace`` (they unmask each class from
    the largest index seen on: the same set when classes arrive in index order, but for that largest
    class itself); ``batch``, its classes only (CL Lab before issue 21)."""

    name = "er_ace"
    title = "ER-ACE"
    description = "Replay with an asymmetric loss: new data only competes among the classes in its batch."
    paper = "Caccia et al., 2022. New Insights on Reducing Abrupt Representation Change in Online Continual Learning"
    hparams = {
        "buffer_size": HParam(int, 200, "samples kept in the reservoir buffer", low=1, high=100_000, log=True),
        "replay_batch_size": HParam(int, 32, "buffer samples replayed each step (32: the batch size, as Mammoth)",
                                    low=1, high=4096),
        "mask": HParam(str, "original", "logits the incoming batch's loss keeps: original (its classes and those "
                       "not seen yet: the AML code and Mammoth, the default) or batch (its classes only)",
                       choices=("original", "batch")),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.buffer = ReservoirBuffer(self.buffer_size, self.generator)
        self.seen = None  # which classes an incoming batch has held so far

    def training_loss(self, module, x, y, t):
        logits = module.mask(module(x), t)
        present = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device).index_fill_(0, y, True)
        self.seen = present if self.seen is None else self.seen | present
        if len(self.buffer):
            kept = present | ~self.seen if self.mask == "original" else present
            logits = logits.masked_fill(~kept, torch.finfo(logits.dtype).min)
            bx, by, bt = self.buffer.sample(self.replay_batch_size, self.augment)
            loss = F.cross_entropy(logits, y) + module.loss(bx, by, bt)
        else:
            loss = F.cross_entropy(logits, y)
        self.buffer.add(self.unaugmented(x), y, t)
        return loss
