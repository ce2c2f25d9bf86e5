import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from engine.strategies.base import HParam, Strategy


class EWC(Strategy):
    """Elastic Weight Consolidation (Kirkpatrick et al., 2017): after each task, the diagonal of the
    empirical Fisher information at the task's optimum weighs a quadratic penalty that keeps important
    weights near their old values. ``separate`` keeps one penalty per task; ``online`` (Schwarz et al.,
    2018, "Progress & Compress") keeps one running Fisher, decayed by ``decay`` at each new task."""

    name = "ewc"
    title = "EWC"
    description = "Penalises changes to weights that the Fisher information marks as important for old tasks."
    hparams = {
        "ewc_lambda": HParam(float, 1000.0, "strength of the penalty", low=0.0, high=1e7, log=True),
        "mode": HParam(str, "separate", "separate: a penalty per task; online: one running Fisher",
                       choices=("separate", "online")),
        "decay": HParam(float, 1.0, "online mode: the old Fisher's weight at each new task", low=0.0, high=1.0),
        "fisher_batch": HParam(int, 32, "samples per vectorised Fisher chunk (memory against speed)", low=1, high=8192),
    }

    @classmethod
    def state_bytes(cls, hparams, weights, sample, n_tasks):
        kept = n_tasks if hparams.get("mode", "separate") == "separate" else 1
        # a Fisher and an optimum per penalty, and the per-sample gradients of one Fisher chunk
        return 2 * kept * weights + int(hparams.get("fisher_batch", 32)) * weights

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.penalties: list[tuple[dict, dict]] = []  # (fisher, optimal weights) per task or one online

    def training_loss(self, module, x, y, t):
        loss = module.loss(x, y, t)
        if self.penalties:
            penalty = 0.0
            params = dict(module.net.named_parameters())
            for fisher, optimum in self.penalties:
                for name, f in fisher.items():
                    penalty = penalty + (f * (params[name] - optimum[name]).pow(2)).sum()
            loss = loss + 0.5 * self.ewc_lambda * penalty
        return loss

    def after_task(self, module, experience):
        fisher = self.diagonal_fisher(module, experience.x, experience.y, experience.t)
        optimum = {n: p.detach().clone() for n, p in module.net.named_parameters()}
        if self.mode == "online" and self.penalties:
            old, _ = self.penalties[0]
            fisher = {n: self.decay * old[n] + f for n, f in fisher.items()}
            self.penalties = []
        self.penalties.append((fisher, optimum))

    def diagonal_fisher(self, module, x, y, t) -> dict[str, torch.Tensor]:
        """The mean over the task's samples of the squared per-sample gradient of the log-likelihood
        of the true label (the empirical Fisher), computed with vmap over chunks of samples."""
        params = {n: p.detach() for n, p in module.net.named_parameters()}

        def sample_loss(p, xi, yi, ti):
            logits = module.mask(functional_call(module.net, p, (xi.unsqueeze(0),)), ti.unsqueeze(0))
            return F.cross_entropy(logits, yi.unsqueeze(0))

        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0, 0))
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        for i in range(0, x.shape[0], self.fisher_batch):
            grads = per_sample(params, x[i:i + self.fisher_batch], y[i:i + self.fisher_batch], t[i:i + self.fisher_batch])
            for n, g in grads.items():
                fisher[n] += g.pow(2).sum(0)
        return {n: f / x.shape[0] for n, f in fisher.items()}
