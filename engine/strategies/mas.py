import torch

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.regularization import quadratic_penalty, snapshot, sum_per_sample_grads


class MAS(Strategy):
    """Memory Aware Synapses (Aljundi et al., 2018): a weight's importance is how much the network's
    output moves when it moves, Omega = mean over the task's samples of |d ||f(x)||_2^2 / d theta| (per
    sample, as the paper; no labels needed), f the logits (task-incremental: the sample's own task's).
    Importances add up over tasks (the paper); the loss gets lambda x sum Omega (theta - theta*)^2."""

    name = "mas"
    title = "MAS"
    description = "Weighs a quadratic penalty by how sensitive the outputs are to each weight (unsupervised)."
    paper = "Aljundi et al., 2018: Memory Aware Synapses: Learning what (not) to forget"
    hparams = {
        "mas_lambda": HParam(float, 0.5, "strength of the penalty (the paper's lambda; loss + lambda sum Omega d^2). "
                             "Plain SGD diverges once lr x 2 lambda x max Omega passes 2: the paper's 1 did on 2 of 5 "
                             "seeds of Split-Digits at lr 0.05 (max Omega about 30); 0.5 finished all 5",
                             low=0.0, high=1e6, log=True),
        "chunk": HParam(int, 256, "samples per importance chunk (memory against speed; same result)",
                        low=1, high=8192),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.importance: dict[str, torch.Tensor] | None = None

    def training_loss(self, module, x, y, t):
        loss = module.loss(x, y, t)
        if self.importance is not None:
            loss = loss + self.mas_lambda * quadratic_penalty(module.net, [(self.importance, self.optimum)])
        return loss

    def after_task(self, module, experience):
        if self.is_last(experience):
            return
        new = self.output_sensitivity(module, experience.x, experience.t)
        self.importance = new if self.importance is None else {n: self.importance[n] + new[n] for n in new}
        self.optimum = snapshot(module.net)

    def output_sensitivity(self, module, x, t) -> dict[str, torch.Tensor]:
        def squared_norm(logits, _y, ti):
            if module.class_mask is not None:  # task-incremental: the outputs of the sample's task
                logits = logits * (module.class_mask[ti] == 0)
            return logits.pow(2).sum()

        total = sum_per_sample_grads(module, squared_norm, x, t, t, self.chunk, power=1)
        return {n: v / x.shape[0] for n, v in total.items()}
