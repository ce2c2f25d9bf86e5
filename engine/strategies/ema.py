import copy

import torch
import torch.nn.functional as F

from engine.strategies.base import HParam, Strategy
from engine.strategies.buffers import ReservoirBuffer


class EMA(Strategy):
    """A slow learner: an exponential moving average of the weights, updated after every step, is the
    model continual evaluation measures and a teacher whose logits the fast model is pulled towards
    (MSE, on the whole training batch); optionally with reservoir replay. The idea behind I-LoRA's
    interpolated slow learner (Ren et al., 2024) and CoIN's EMA (Chen et al., 2024); a mean teacher.
    The decay ramps up as mean teacher's does, min(decay, 1 - 1/(n+1)) at update n = 0, 1, ..., so the
    average starts as the plain mean of the weights after each step, not weighed down by the initial ones."""

    name = "ema"
    title = "EMA slow learner"
    description = "Evaluates a slow moving average of the weights and distils from it; replay optional."
    paper = "Tarvainen & Valpola, 2017. Mean teachers are better role models (the EMA teacher)"
    hparams = {
        "decay": HParam(float, 0.99, "EMA decay per step (0.99 suits runs of hundreds of steps; mean teacher "
                        "uses 0.999 for long runs)", low=0.0, high=0.99999),
        "distill_weight": HParam(float, 0.1, "weight of the MSE between the model's and the EMA's logits "
                                 "(0.1: of the order of CLS-ER's consistency weight)", low=0.0, high=100.0),
        "buffer_size": HParam(int, 0, "reservoir replay buffer; 0: no replay", low=0, high=100_000),
        "replay_batch_size": HParam(int, 32, "buffer samples added to each batch when replaying", low=1, high=4096),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.buffer = ReservoirBuffer(self.buffer_size, self.generator) if self.buffer_size else None
        self.updates = 0

    def before_task(self, module, experience):
        if not hasattr(self, "ema"):  # here, not in setup: the module is on its device by now
            self.ema = copy.deepcopy(module.net).requires_grad_(False)

    def training_loss(self, module, x, y, t):
        batch = (x, y, t)
        if self.buffer is not None:
            if len(self.buffer):
                bx, by, bt = self.buffer.sample(self.replay_batch_size)
                batch = (torch.cat([x, bx]), torch.cat([y, by]), torch.cat([t, bt]))
            self.buffer.add(x, y, t)
        logits = module(batch[0])
        loss = F.cross_entropy(module.mask(logits, batch[2]), batch[1])
        if self.distill_weight:
            with torch.no_grad():
                teacher = self.ema(batch[0])
            loss = loss + self.distill_weight * F.mse_loss(logits, teacher)
        return loss

    def after_step(self, module, batch):
        decay = min(self.decay, 1.0 - 1.0 / (self.updates + 1))  # 0 at the first update: the weights themselves
        self.updates += 1
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.parameters()), list(module.net.parameters()), 1.0 - decay)
            for mine, theirs in zip(self.ema.buffers(), module.net.buffers()):  # e.g. batch-norm statistics
                mine.copy_(theirs)

    def eval_model(self, module):
        return self.ema
