import torch
import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.regularization import per_sample_grads, snapshot


class EWCRank1(Strategy):
    """Rank-1 EWC (Wang, Gupta, Dong & MacLellan, 2025): the empirical Fisher F = mean_i g_i g_i^T
    (g_i the per-sample gradients) approximated by a rank-one matrix u u^T, which keeps the dominant
    curvature direction across weights that a diagonal drops. The penalty is
    0.5 x lambda x sum over past tasks of (u . (theta - theta*))^2: a dot product a task, no P x P matrix,
    and EWC's per_sample penalty 0.5 x lambda x d^T F d with F replaced by u u^T, so lambda means what
    EWC's does. ``direction`` picks u:
    ``optimal_mean`` (default, the paper's estimator; the authors' ``rank1_opt``): u u^T = c* mu mu^T
    with mu the mean per-sample gradient and c* = E[(mu . g)^2] / ||mu||^4, the scale that brings
    c mu mu^T closest to F (Frobenius); ``mean_gradient``: u = mu, c = 1 (the authors' ``rank1``);
    ``leading``: u = sqrt(lambda_1) v_1, F's top eigenpair (the best rank-one approximation of all),
    from the N x N Gram matrix of the task's per-sample gradients (CL Lab's default before issue 21)."""

    name = "ewc_rank1"
    title = "Rank-1 EWC"
    description = "EWC with the Fisher approximated by its leading rank-one part: a penalty along one direction a task."
    paper = "Wang, Gupta, Dong & MacLellan, 2025: Avoid Catastrophic Forgetting with Rank-1 Fisher from Diffusion Models"
    hparams = {
        "ewc_lambda": HParam(float, 10.0, "strength of the penalty, on EWC's scale (0.5 x lambda x d^T F d, "
                             "EWC's per_sample convention, F its rank-one part); all the curvature lies along u "
                             "(lambda x ||u||^2, up to lambda x the Fisher's top eigenvalue), so keep lambda below "
                             "about 2 / (lr x ||u||^2): on the default workload (lr 0.05) 10 trains (default), "
                             "100 breaks down, where EWC's diagonal takes 100", low=0.0, high=1e7, log=True),
        "direction": HParam(str, "optimal_mean", "optimal_mean: the mean gradient mu scaled by c* = "
                            "E[(mu.g)^2]/||mu||^4 (the paper's estimator, the authors' rank1_opt; default); "
                            "mean_gradient: mu unscaled (their rank1); leading: the Fisher's top eigenvector "
                            "x sqrt(eigenvalue)", choices=("optimal_mean", "mean_gradient", "leading")),
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
        elif self.direction == "optimal_mean":
            mu = G.mean(0)
            norm2 = mu.dot(mu)
            # u = sqrt(c*) mu, so u u^T = c* mu mu^T; with mu = 0 the best scale is 0
            c_star = (G @ mu).pow(2).mean() / norm2.pow(2) if norm2 > 0 else torch.zeros((), dtype=G.dtype)
            flat = c_star.sqrt() * mu
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
