import torch

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.buffers import MEMORY_PER_CLASS, BalancedBuffer, PerClassMemoryCost, ReservoirBuffer

__all__ = ["Replay", "ReservoirBuffer"]


class Replay(PerClassMemoryCost, Strategy):
    """Experience replay (Chaudhry et al., 2019, "On tiny episodic memories"): each step trains on the
    batch joined with a batch drawn from a memory of past samples. ``policy`` says how the memory is kept:
    ``reservoir`` is fed every step (every sample of the stream, epochs' repeats included, equally likely
    to be held; Mammoth's ER); ``class_balanced`` and ``experience_balanced`` are filled at each task's
    end with the memory split equally by class or by experience (Avalanche's ``Replay`` uses
    ``experience_balanced``); ``per_class`` keeps ``memory_per_class`` random samples of every class of
    every task, so the memory grows with the classes seen (van de Ven et al., 2022, whose Split MNIST
    budget is 100 a class). On the default workload the reservoir forgets about 0.04 more than
    Avalanche's balanced ``Replay``: a difference of buffer policy, which a balanced policy closes.

    ``weighting`` says how the two batches share the loss: ``joined``, one cross-entropy over the batch
    joined with the replayed samples, each sample alike (Mammoth's ER, Avalanche); ``one_over_k``, the
    current batch's mean loss times 1/k plus the replayed batch's times 1 - 1/k, k the tasks seen
    (van de Ven's ``train_a_batch``, ``rnt = 1/context``): on the first task nothing is replayed;
    ``new_weight``, the current batch's mean loss times ``new_weight`` plus the replayed batch's times
    1 - ``new_weight`` (De Lange et al., 2023, ``Lw_new`` in their ``ERStrategy``; as their code, the
    current loss is scaled by it also while the memory is empty, on the first task)."""

    name = "replay"
    title = "Experience Replay"
    description = "Keeps a memory of past samples and mixes a batch of them into every step."
    paper = "Chaudhry et al., 2019: On Tiny Episodic Memories in Continual Learning"
    hparams = {
        "buffer_size": HParam(int, 200, "samples kept in memory, a fixed total (200: Avalanche's Replay default; "
                              "not used by policy per_class)", low=1, high=100_000, log=True),
        "replay_batch_size": HParam(int, 32, "memory samples added to each training batch (32: the batch size, "
                                    "as Avalanche's default)", low=1, high=4096),
        "policy": HParam(str, "reservoir", "reservoir: fed every step (Mammoth's ER, the default); class_balanced / "
                         "experience_balanced: filled at each task's end, split by class / experience (Avalanche); "
                         "per_class: memory_per_class samples of each class seen, filled at each task's end, the "
                         "total growing with the classes (van de Ven et al., 2022)",
                         choices=("reservoir", "class_balanced", "experience_balanced", "per_class")),
        "memory_per_class": MEMORY_PER_CLASS,
        "weighting": HParam(str, "joined", "joined: one loss over the batch joined with the replayed samples, each "
                            "sample alike (Mammoth's ER, Avalanche; the default); one_over_k: the current batch's loss "
                            "x 1/k + the replayed batch's x (1 - 1/k), k = tasks seen (van de Ven et al., 2022); "
                            "new_weight: the current batch's loss x new_weight + the replayed batch's x (1 - new_weight) "
                            "(De Lange et al., 2023's Lw_new)",
                            choices=("joined", "one_over_k", "new_weight")),
        "new_weight": HParam(float, 0.5, "weighting new_weight: the current batch's share of the loss (De Lange et "
                             "al.'s Lw_new: 0.5 their code's default, 0.3 their Split-MNIST ER; their code scales the "
                             "current loss by it also before anything is replayed)", low=0.0, high=1.0),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.tasks_seen = 1
        if self.policy == "reservoir":
            self.replay_buffer = ReservoirBuffer(self.buffer_size, self.generator)
        elif self.policy == "per_class":
            self.replay_buffer = BalancedBuffer(0, "task_class", self.generator, per_group=self.memory_per_class)
        else:
            self.replay_buffer = BalancedBuffer(self.buffer_size, self.policy.split("_")[0], self.generator)

    def before_task(self, module, experience):
        self.tasks_seen = experience.task

    def training_loss(self, module, x, y, t):
        # the current batch's share of the loss; None: joined, each sample alike
        current = {"one_over_k": 1 / self.tasks_seen, "new_weight": self.new_weight}.get(self.weighting)
        if len(self.replay_buffer) and current != 1:
            bx, by, bt = self.replay_buffer.sample(self.replay_batch_size, self.augment)
            if current is None:
                loss = module.loss(torch.cat([x, bx]), torch.cat([y, by]), torch.cat([t, bt]))
            else:
                loss = current * module.loss(x, y, t) + (1 - current) * module.loss(bx, by, bt)
        elif self.weighting == "new_weight":  # De Lange's ERStrategy: Lw_new x the new loss, memory or not
            loss = self.new_weight * module.loss(x, y, t)
        else:
            loss = module.loss(x, y, t)
        if self.policy == "reservoir":
            self.replay_buffer.add(self.unaugmented(x), y, t)
        return loss

    def after_task(self, module, experience):
        if self.policy != "reservoir":
            self.replay_buffer.update(experience.x, experience.y, experience.t)
