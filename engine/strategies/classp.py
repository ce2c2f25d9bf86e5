import torch

from engine.core.hparams import HParam
from engine.strategies.base import Strategy


class CLASSP(Strategy):
    """CLASSP (Ludwig, 2024): continual learning by adjustment suppression and sparsity promotion.
    Each weight's step is lr x g / (epsilon + sum_k |g_k|^p)^(1/p), the sum over the gradients of its
    past updates, every task (an AdaGrad generalisation: p = 2 and threshold 0 is AdaGrad), so weights
    that were adjusted much learn slowly; and a weight is updated only when g^2 > threshold (sparse
    updates leave weights free for later tasks). As the authors' code, the sum includes the current
    gradient (AdaGrad's form); it grows only where a weight is updated. CLASSP is its own optimizer:
    plain SGD at train.lr applies the scaled step (momentum and weight decay are not used; weight decay
    would move the weights under the threshold).

    The threshold (``gate``): ``weight`` (default, the paper's rule as CL Lab always had): each weight
    moves only where its own g^2 > threshold; ``tensor`` (as the authors' code applies it,
    ``if (grad ** 2).any() > threshold``: ``any()`` is a boolean, so a whole parameter tensor moves, every
    weight of it accumulating, when any of its gradients is non-zero and the threshold is below 1, and
    none ever does at a threshold of 1 or more; their default 0.5 is therefore no sparsity at all). The
    authors' code also adds |g| to the sum whatever p is (the same at their default p = 1)."""

    name = "classp"
    title = "CLASSP"
    description = "Per-weight AdaGrad-like decay of the step, and only weights with a large enough gradient move."
    paper = ("Ludwig, 2024: CLASSP: a Biologically-Inspired Approach to Continual Learning through "
             "Adjustment Suppression and Sparsity Promotion")
    hparams = {
        "threshold": HParam(float, 1e-8, "a weight is updated only if its squared gradient exceeds this (the "
                            "authors' code defaults to 0.5 at lr 0.2 on its own models, applied per tensor: see gate)",
                            low=0.0, high=1e3),
        "gate": HParam(str, "weight", "where the threshold applies: weight (default, the paper: each weight's own "
                       "g^2) or tensor (the authors' code: a whole tensor moves if any of its g is non-zero and the "
                       "threshold is below 1)", choices=("weight", "tensor")),
        "epsilon": HParam(float, 1e-5, "added to the accumulated gradients before the root (the authors' default)",
                          low=1e-12, high=1.0, log=True),
        "power": HParam(float, 1.0, "p: the accumulated sum of |g|^p and its p-th root (the authors' default 1; "
                        "2 is AdaGrad)", low=0.5, high=4.0),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.accumulated: dict[str, torch.Tensor] = {}

    def configure_optimizer(self, module, train_cfg):
        return torch.optim.SGD(self.parameter_groups(module)[0]["params"], lr=train_cfg.lr)

    @torch.no_grad()
    def after_backward(self, module, batch):
        for name, p in module.net.named_parameters():
            if p.grad is None:
                continue
            g = p.grad
            if self.gate == "tensor":  # a boolean against the threshold, as theirs
                passes = torch.full_like(g, float(bool(g.pow(2).any())) > self.threshold, dtype=torch.bool)
            else:
                passes = g.pow(2) > self.threshold
            acc = self.accumulated.setdefault(name, torch.zeros_like(p))
            acc += passes * g.abs().pow(self.power)
            p.grad = torch.where(passes, g / (self.epsilon + acc).pow(1.0 / self.power), torch.zeros_like(g))
