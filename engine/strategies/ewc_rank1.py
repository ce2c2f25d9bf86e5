import torch
import torch.nn.functional as F

from engine.strategies.base import HParam, Strategy
from engine.strategies.regularization import per_sample_grads, snapshot


class EWCRank1(Strategy):
    """Rank-1 EWC (Wang, Gupta, Dong & MacLellan, 2025): the empirical Fisher F = mean_i g_i g_i^T
    (g_i the per-sample gradients) approximated by a rank-one matrix u u^T, which keeps the dominant
    curvature direction across weights that a diagonal drops. The penalty is
    0.5 x lambda x sum over past tasks of (u . (theta - theta*))^2: a dot product a task, no P x P matrix.
    ``leading`` (default): u = sqrt(lambda_1) v_1, the top eigenpair of F (the best rank-one
    approximation), from the N x N Gram matrix of the task's per-sample gradients; ``mean_gradient``:
    u = the mean gradient, the direction the paper shows the per-sample gradients line up with."""

    name = "ewc_rank1"
    title = "Rank-1 EWC"
    description = "EWC with the Fisher approximated by its leading rank-one part: a penalty along one direction a task."
    paper = "Wang, Gupta, Dong & MacLellan, 2025: Avoid Catastrophic Forgetting with Rank-1 Fisher from Diffusion Models"
    hparams = {
        "ewc_lambda": HParam(float, 1.0, "strength of the penalty (x 0.5, EWC's per_sample convention); the "
                             "curvature along u is lambda x the Fisher's top eigenvalue, so keep it below about "
                             "2 / (lr x that eigenvalue)", low=0.0, high=1e7, log=True),
        "direction": HParam(str, "leading", "leading: the Fisher's top eigenvector x sqrt(eigenvalue) (default); "
                            "mean_gradient: the mean per-sample gradient", choices=("leading", "mean_gradient")),
        "fisher_batch": HParam(int, 128, "samples per vectorised gradient chunk (memory against speed; same result)",
                               low=1, high=8192),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.penalties: list[tuple[dict, dict]] = []  # (u, optimal weights) per task

    def training_loss(self, module, x, y, t):
        loss = module.loss(x, y, t)
        if self.penalties:
            params = dict(module.net.named_parameters())
            penalty = 0.0
            for u, optimum in self.penalties:
                dot = sum((u[n] * (params[n] - optimum[n])).sum() for n in u)
                penalty = penalty + dot.pow(2)
            loss = loss + 0.5 * self.ewc_lambda * penalty
        return loss

    def after_task(self, module, experience):
        if not self.is_last(experience):
            self.penalties.append((self.rank1_direction(module, experience.x, experience.y, experience.t),
                                   snapshot(module.net)))

    def rank1_direction(self, module, x, y, t) -> dict[str, torch.Tensor]:
        """u with u u^T the chosen rank-one approximation of the empirical Fisher of (x, y)."""
        loss = lambda logits, yi, ti: F.cross_entropy(module.mask(logits, ti), yi, reduction="sum")  # noqa: E731
        names = [n for n, _ in module.net.named_parameters()]
        # G: one row of flattened per-sample gradients a sample (N x P; F = G^T G / N)
        G = torch.cat([torch.cat([g[n].flatten(1) for n in names], 1)
                       for g in per_sample_grads(module, loss, x, y, t, self.fisher_batch)])
        n = G.shape[0]
        if self.direction == "mean_gradient":
            flat = G.mean(0)
        else:
            # F's top eigenvector v = G^T a / ||G^T a|| for a the top eigenvector of K = G G^T / N, and
            # ||G^T a||^2 = N lambda_1, so u = sqrt(lambda_1) v = G^T a / sqrt(N)
            _, vectors = torch.linalg.eigh(G @ G.T / n)
            flat = G.T @ vectors[:, -1] / n ** 0.5
        out, i = {}, 0
        for name, p in module.net.named_parameters():
            out[name] = flat[i:i + p.numel()].view_as(p).clone()
            i += p.numel()
        return out
