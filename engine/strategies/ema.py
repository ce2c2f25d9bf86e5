import copy

import torch
import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.buffers import ReservoirBuffer
from engine.strategies.steps import steps_in_task


class EMA(Strategy):
    """A slow learner: an exponential moving average of the weights, updated after every step, is the
    model continual evaluation measures and a teacher whose logits the fast model is pulled towards
    (MSE, on the whole training batch); optionally with reservoir replay. The idea behind I-LoRA's
    interpolated slow learner (Ren et al., 2024) and CoIN's EMA (Chen et al., 2024); a mean teacher.
    The decay ramps up as mean teacher's does, min(decay, 1 - 1/(n+1)) at update n = 0, 1, ..., so the
    average starts as the plain mean of the weights after each step, not weighed down by the initial ones.

    The decay follows the task's length: by default (``decay`` 0) it is derived at each task from
    ``half_life``, a fraction of the task's steps, decay = 0.5 ** (1 / (half_life x steps)), so the
    average forgets half of its past in that many steps whatever the task's length. A fixed decay
    spanning more steps than a task (0.99: a half-life of 69 steps, against 45 steps a task on
    Split-Digits) lags a task behind and shows that lag as positive backward transfer (0.726 ACC,
    +0.545 BWT there); with half-life 0.1 of a task it measures the task's own model (0.201, -0.982,
    as naive: the EMA alone does not prevent forgetting, its gain was the lag)."""

    name = "ema"
    title = "EMA slow learner"
    description = "Evaluates a slow moving average of the weights and distils from it; replay optional."
    paper = "Tarvainen & Valpola, 2017. Mean teachers are better role models (the EMA teacher)"
    hparams = {
        "decay": HParam(float, 0.0, "a fixed EMA decay per step; 0 (default): derived from half_life and each task's "
                        "steps (mean teacher's 0.999 fits tasks of thousands of steps)", low=0.0, high=0.99999),
        "half_life": HParam(float, 0.1, "with decay 0: the average's half-life as a fraction of a task's steps",
                            low=0.001, high=10.0, log=True),
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
        self.task_decay = self.decay or 0.5 ** (1.0 / max(1.0, self.half_life * steps_in_task(module, experience)))

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
        decay = min(self.task_decay, 1.0 - 1.0 / (self.updates + 1))  # 0 at the first update: the weights themselves
        self.updates += 1
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.parameters()), list(module.net.parameters()), 1.0 - decay)
            for mine, theirs in zip(self.ema.buffers(), module.net.buffers()):  # e.g. batch-norm statistics
                mine.copy_(theirs)

    def eval_model(self, module):
        return self.ema
