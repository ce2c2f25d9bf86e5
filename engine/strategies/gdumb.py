import copy

import torch

from engine.strategies.base import HParam, Strategy
from engine.strategies.buffers import GreedyClassBalancedBuffer


class GDumb(Strategy):
    """GDumb (Prabhu et al., 2020): a greedy class-balanced sampler stores the stream's samples, and the
    model is retrained from scratch on that memory alone. Here each task's samples go through the
    sampler when the task begins (the sampler never looks at the model), the network is reset to its
    initial weights, and the task's training steps are spent on batches drawn from the memory only:
    the model at each task's end depends on the memory and nothing else, and continual evaluation
    measures it. The paper retrains for many epochs (256 on CIFAR); here the budget is the run's steps."""

    name = "gdumb"
    title = "GDumb"
    description = "Keeps a class-balanced memory and retrains the model from scratch on it at every task."
    paper = "Prabhu et al., 2020. GDumb: A Simple Approach that Questions Our Progress in Continual Learning"
    hparams = {
        "buffer_size": HParam(int, 200, "samples kept in the class-balanced memory", low=1, high=100_000, log=True),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.memory = GreedyClassBalancedBuffer(self.buffer_size, self.generator)

    def setup(self, module, scenario):
        self.initial = copy.deepcopy(module.net.state_dict())

    def before_task(self, module, experience):
        self.memory.update(experience.x, experience.y, experience.t)
        module.net.load_state_dict(self.initial)  # from scratch; the task's optimizer is built after this

    def training_loss(self, module, x, y, t):
        return module.loss(*self.memory.sample(len(y)))  # the stream's batch only sets the batch size
