import copy

import torch

from engine.core.hparams import HParam
from engine.strategies.base import Experience, Strategy
from engine.strategies.buffers import GreedyClassBalancedBuffer


class GDumb(Strategy):
    """GDumb (Prabhu et al., 2020): a greedy class-balanced sampler stores the stream's samples, and the
    model is retrained from scratch on that memory alone. Here each task's samples go through the
    sampler when the task begins (the sampler never looks at the model), the network is reset to its
    initial weights, and it trains for ``epochs`` epochs over the memory alone (its own budget, not the
    run's ``train.epochs_per_task``, which counts passes over a task's stream): the model at each task's
    end depends on the memory and nothing else, and continual evaluation measures it. The paper
    retrains for many epochs (256 with SGDR on CIFAR); the default, 20, fits a memory of hundreds of
    samples (5-task Split-Digits, memory 200, 3 seeds: 5 epochs over the memory 0.678, 20 epochs 0.900)."""

    name = "gdumb"
    title = "GDumb"
    description = "Keeps a class-balanced memory and retrains the model from scratch on it at every task."
    paper = "Prabhu et al., 2020. GDumb: A Simple Approach that Questions Our Progress in Continual Learning"
    hparams = {
        "buffer_size": HParam(int, 200, "samples kept in the class-balanced memory", low=1, high=100_000, log=True),
        "epochs": HParam(int, 20, "epochs over the memory at each task, from scratch (GDumb's own budget; the paper "
                         "uses 256 on CIFAR)", low=1, high=10_000, log=True),
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

    def epochs_per_experience(self, train_cfg):
        return self.epochs

    def train_data(self, experience):
        return Experience(experience.task, self.memory.data["x"], self.memory.data["y"], self.memory.data["t"],
                          label="memory")

    def epoch_sizes(self, experiences):
        """The memory fills up to buffer_size (fewer only where a class has fewer samples than its share)."""
        seen = 0
        sizes = []
        for e in experiences:
            seen += len(e)
            sizes.append(min(self.buffer_size, seen))
        return sizes
